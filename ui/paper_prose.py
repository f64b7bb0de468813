"""The Paper check in words: the lines Home shows on first open (the bank and the claims) and the page's
explanations. Reads :mod:`ui.paper_data`; no streamlit."""

from __future__ import annotations

from typing import Any

from core.studies.paper import seeds_text

from .paper_data import Label, Reference

#: the claims Home shows on first open, in this order (one-step from the shipped bank; full path where measured)
HOME_CLAIMS = ("rf_first", "rf_first_full", "choice_matters_full", "rf_beats_lr", "no_universal_signal",
               "boundary_layers", "kd_beats_teacher")


def first_open_lines(bank: Any | None, bank_problem: str | None, ref: Reference | None,
                     ref_problem: str | None, label: Label) -> list[str]:
    """Markdown bullets for Home: what the shipped bank holds (fusion learns from it before the first run) and
    the paper's claims next to ours (one-step, and the full path where measured), each with its measurement, seed
    and dataset count (and a full-path claim with its budget: it is smaller than the app's)."""
    lines = []
    if bank is not None:
        cov = bank.coverage()
        names = ", ".join(label(d) for d in sorted(cov["dataset"].unique()))
        seeds = sorted(int(s) for s in bank.rows["seed"].unique())
        m = bank.manifest
        made = (f"{m.get('precision', 'fp32')}, " + ("leak-free splits" if m.get("split_version", 1) >= 2 else
                                                     "splits from before the leak fix")
                + (", per-example oracle outcomes" if m.get("outcomes") else ""))
        lines.append(f"**Profile bank** ({made}): {len(bank.rows):,} layer-steps of "
                     f"{', '.join(sorted(cov['model'].unique()))} on {cov['dataset'].nunique()} dataset(s) ({names}), "
                     f"seed(s) {', '.join(map(str, seeds))}. The fusion rankers train on it from your first step, "
                     "never on the dataset being pruned.")
    else:
        lines.append(f"**No profile bank** ({bank_problem}): the fusion rankers start from the signal vote.")
    if ref is None:
        lines.append(f"**Paper check**: {ref_problem}")
        return lines
    shown: set[str] = set()
    for claim in sorted((c for c in ref.claims if c.get("key") in HOME_CLAIMS),
                        key=lambda c: HOME_CLAIMS.index(c["key"])):
        full = claim.get("measure") == "full path"
        where = (f"{claim.get('measure', '?')}, {seeds_text(claim.get('seeds', 0), claim.get('seeds_max'))}, "
                 f"{claim.get('datasets', '?')} "
                 f"dataset(s)" + (f"; {str(claim.get('budget')).split(';')[0]}" if full and claim.get("seeds") else ""))
        paper = "" if claim["paper"] in shown else f"*Paper:* {claim['paper']}  \n"
        shown.add(claim["paper"])
        lines.append(f"{paper}*Here* ({where}): {claim['ours']}")
    return lines
