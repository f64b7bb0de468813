"""A report to hand out (issue 31): one self-contained HTML file for a finished pruning run or a comparison of
runs. It opens from a file with no network and no server: Plotly's JavaScript is embedded once (in the first
figure), the figures are the dashboard's own (:mod:`ui.plots`, :mod:`ui.report_plots`), and every number comes
with its 95 % interval (:mod:`core.runs.handout`, :mod:`core.runs.noise`). Every text from the store is escaped.

A run that has not finished is refused (:class:`core.runs.handout.ReportRefused`, with the reason), never half
reported. Runs & export and Compare offer it with :func:`download_button`; from a shell::

    python -m ui.report RUN_ID [RUN_ID ...] --out report.html

The command lives here and not in ``python -m core``: the report draws with the dashboard's figures, and the
import contract (``.importlinter``, ``core-is-ui-free``) forbids every module of core, its CLI included, to
import ``ui``. Moving the figures into core would put Plotly layout code below the UI, so the entry point sits
with the figures instead.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.data.registry import DATASETS
from core.models.registry import MODELS
from core.runs import noise
from core.runs.handout import ReportFacts, ReportRefused, RunFacts, check_finished, compression_points, report_facts
from core.runs.store import RunStore
from core.version import code_version

from . import plots, tables, theme
from .report_plots import compression_bubbles, megabytes

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}
MIME = "text/html"

CSS = """
body { font-family: 'Source Sans 3', 'Source Sans Pro', 'Segoe UI', Helvetica, Arial, sans-serif; color: #1B1F24;
       max-width: 1180px; margin: 2rem auto; padding: 0 1.2rem; line-height: 1.45; }
h1 { font-size: 1.9rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.4rem; border-bottom: 2px solid #E3E6EA; }
.meta, .note, figcaption { color: #4B5563; font-size: 0.95rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #E3E6EA; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #F3F4F6; } td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; } figure { margin: 1rem 0 1.6rem 0; }
ol.steps li { margin-bottom: 0.5rem; } .refused { color: #B91C1C; }
"""


def _md(text: str) -> str:
    """``text`` escaped, with the ``**bold**`` of the core's sentences as <b>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(str(text)))


def dataset_label(key: str) -> str:
    spec = DATASETS.get(key)
    return spec.display_name if spec is not None else key


def model_label(key: str) -> str:
    spec = MODELS.get(key)
    return spec.display_name if spec is not None else key


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "<td></td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.3f}</td>'
    return f'<td class="num">{html.escape(str(value))}</td>' if isinstance(value, int) \
        else f"<td>{_md(str(value))}</td>"


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


class _Figures:
    """Figures rendered in order; Plotly's JavaScript goes inline into the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig: go.Figure, caption: str = "") -> str:
        div = fig.to_html(full_html=False, include_plotlyjs=self.count == 0, config=PLOTLY_CONFIG,
                          div_id=f"figure-{self.count}", default_width="100%")
        self.count += 1
        cap = f"<figcaption>{_md(caption)}</figcaption>" if caption else ""
        return f'<figure class="chart">{div}{cap}</figure>'


def _summary_table(facts: ReportFacts) -> pd.DataFrame:
    table = facts.table.drop(columns=[c for c in ("status", "model") if c in facts.table])
    table = table.assign(strategy=[theme.strategy_label(s) for s in table["strategy"]],
                         dataset=[dataset_label(d) for d in table["dataset"]])
    names = {c: f"{c[4:]} layers" for c in table.columns if c.startswith("acc@")}
    names.update({"run_id": "run", "best": "best over depth", "best_layers": "best at (layers)",
                  "after_kd": "after distillation", "ratio": "accuracy-to-size ratio"})
    if "best_layers" in table:
        table["best_layers"] = [None if pd.isna(v) else int(v) for v in table["best_layers"]]
    return table.rename(columns=names)


def _size(row: pd.Series) -> str:
    return megabytes(float(row["safetensors_bytes"])) if pd.notna(row.get("safetensors_bytes")) else ""


def _ms(row: pd.Series) -> str:
    return f"{float(row['latency_ms']):.1f}" if pd.notna(row.get("latency_ms")) else ""


def _step_table(run: RunFacts) -> pd.DataFrame:
    """One row per step (the teacher first), every accuracy with its interval."""
    by_step = {int(s["step"]): s for _, s in run.steps.iterrows()}
    rows = []
    if 0 in by_step:
        t = by_step[0]
        rows.append({"step": 0, "layers": int(t["n_layers"]), "removed": "", "chosen by": "(the teacher)",
                     "oracle's pick (KL)": "", "most accurate": "", "regret (val)": "", "val before tuning": "",
                     "val after tuning": "", "test": t.get("test_ci"), "test − teacher": "", "size": _size(t),
                     "latency (ms)": _ms(t)})
    for story in run.stories:
        s = by_step[story.step]

        def text(m: noise.Measured | None) -> str:
            return m.text() if m is not None else ""

        rows.append({"step": story.step, "layers": story.n_layers, "removed": f"L{story.removed}",
                     "chosen by": story.chooser,
                     "oracle's pick (KL)": "" if story.oracle_best is None else f"L{story.oracle_best}",
                     "most accurate": "" if story.best_layer is None else f"L{story.best_layer}",
                     "regret (val)": story.regret_cell(), "val before tuning": text(story.chosen_val),
                     "val after tuning": text(story.val_after), "test": text(story.test_after),
                     "test − teacher": story.vs_teacher.signed() if story.vs_teacher else "", "size": _size(s),
                     "latency (ms)": _ms(s)})
    return pd.DataFrame(rows)


def _budget_table(run: RunFacts) -> pd.DataFrame:
    return pd.DataFrame({"budget": list(run.budget), "value": [str(v) for v in run.budget.values()]})


def _run_section(run: RunFacts, figs: _Figures) -> str:
    r = run.run
    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.finished_at)) if r.finished_at else "unknown"
    parts = [f'<section class="run" id="run-{html.escape(r.id)}">',
             f"<h2>{html.escape(theme.strategy_label(r.strategy))} on {html.escape(dataset_label(r.dataset))} "
             f"· run {html.escape(r.id)}</h2>",
             f'<p class="meta">Model {html.escape(model_label(r.model))}; finished {html.escape(finished)}; code '
             f"version {html.escape(run.code_version)}; seed {run.seed if run.seed is not None else 'not recorded'}."
             + (" The teacher did not beat the majority-class baseline and the run pruned anyway: its numbers "
                "may be noise." if run.summary.weak_teacher else "") + "</p>",
             html_table(_budget_table(run))]
    max_removed = int(r.config.get("layers_to_remove", 0)) or None
    parts.append(figs.html(plots.accuracy_curve(run.steps, r.strategy, max_removed),
                           "Test accuracy after each step's fine-tuning (error bars: 95 % Wilson intervals over the "
                           "test rows), and the oracle's view of each step: validation accuracy of the best "
                           "possible removal and of this strategy's, before fine-tuning."))
    parts += ["<h3>Step by step</h3>", html_table(_step_table(run)),
              '<ol class="steps">' + "".join(f"<li>{_md(s.caption())}</li>" for s in run.stories) + "</ol>",
              "<h3>What distillation won back</h3>",
              "<p>" + " ".join(_md(line) for line in run.kd_lines()) + "</p>", "</section>"]
    return "\n".join(parts)


def _charts(facts: ReportFacts, figs: _Figures) -> str:
    parts = []
    runs = [f.run for f in facts.runs]
    if len(runs) > 1:
        frames = [f.steps.assign(run_id=f.run.id, strategy=f.run.strategy, dataset=f.run.dataset) for f in facts.runs]
        steps = pd.concat(frames, ignore_index=True)
        for ds, g in steps.groupby("dataset", sort=True):
            parts.append(figs.html(plots.curves_by_strategy(g, title=f"{dataset_label(str(ds))}: test accuracy"),
                                   "One line per run; error bars: 95 % Wilson intervals over the test rows."))
    summaries = {f.run.id: f.summary for f in facts.runs}
    kd = tables.kd_frame(runs, summaries, {f.run.id: f.intervals for f in facts.runs})
    if not kd.empty:
        parts.append(figs.html(plots.kd_bars(kd), "Test accuracy of the final pruned model before and after "
                                                  "distillation from the teacher; error bars: 95 % intervals."))
    points = pd.concat([compression_points(f, theme.strategy_label) for f in facts.runs], ignore_index=True)
    parts.append(figs.html(compression_bubbles(points),
                           "One bubble per model a run produced, from the teacher to the distilled student: test "
                           "accuracy (95 % interval) against the CPU latency of one fixed batch, measured while the "
                           "run trained (a busy machine shows in it; no interval is stored for it), bubble area the "
                           "model's size on disk. Up and to the left is better."))
    return "\n".join(parts)


def render(facts: ReportFacts, generated: str | None = None) -> str:
    """The report of ``facts`` as one HTML document."""
    figs = _Figures()
    runs = facts.runs
    if len(runs) == 1:
        r = runs[0].run
        title = (f"Layer pruning: {theme.strategy_label(r.strategy)} on {dataset_label(r.dataset)} "
                 f"({model_label(r.model)})")
    else:
        title = f"Layer pruning: {len(runs)} runs compared"
    versions = sorted({f.code_version for f in runs})
    when = generated or time.strftime("%Y-%m-%d %H:%M")
    head = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{_md(facts.seed_line())} Runs made by code version{"s" if len(versions) > 1 else ""} '
            f"{html.escape(', '.join(versions))}; report written {html.escape(when)} by code version "
            f"{html.escape(code_version())}.</p>"]
    body = ["<h2>At a glance</h2>", html_table(_summary_table(facts)),
            '<p class="note">Test accuracy after removing layers down to N and fine-tuning. <b>best over depth</b> '
            "is the maximum over depths picked on the same test rows, so it is optimistic; the accuracy-to-size "
            "ratio is (accuracy / teacher accuracy) / (parameters / teacher parameters), our definition.</p>"]
    for ranking in facts.rankings:
        first, *places = ranking.lines()
        body.append(f"<p><b>{html.escape(dataset_label(ranking.dataset))}</b>, {html.escape(first.lower())}:</p>"
                    "<ul>" + "".join(f"<li>{_md(line)}</li>" for line in places) + "</ul>")
    body += ["<h2>Charts</h2>", _charts(facts, figs)]
    body += [_run_section(f, figs) for f in runs]
    foot = (f'<footer class="note"><p>{_md(noise.METHOD_NOTE)} The regret of a step is the validation accuracy '
            "of the most accurate single removal minus the chosen one's, both before fine-tuning (paired bootstrap "
            "over the validation rows); the most accurate is picked on the same rows, so the regret leans high. The "
            "oracle's own pick is the removal that changes the current model's predictions least (lowest KL), which "
            "need not be the most accurate one.</p></footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>\n" + "\n".join([*head, *body, foot]) + "\n</body></html>\n")


def build_report(store: RunStore, run_ids: Sequence[str], generated: str | None = None) -> str:
    """The HTML report of ``run_ids`` (one run, or several compared); :class:`ReportRefused` unless every one is a
    finished pruning run."""
    return render(report_facts(store, run_ids, theme.strategy_label), generated)


def file_name(run_ids: Sequence[str]) -> str:
    ids = list(dict.fromkeys(run_ids))
    return f"{ids[0]}-report.html" if len(ids) == 1 else f"compare-{len(ids)}-runs-report.html"


def download_button(store: RunStore, run_ids: Sequence[str], key: str, label: str = "Report (HTML)",
                    width: str = "stretch") -> None:
    """A download button for the report of ``run_ids``, built when clicked; when the runs cannot make one, the
    button is disabled and the reason shown under it."""
    import streamlit as st  # noqa: PLC0415 deferred: cost (streamlit: python -m ui.report draws no page)

    try:
        check_finished(store, run_ids)
    except ReportRefused as exc:
        st.button(label, disabled=True, key=f"{key}_refused", width=width)
        st.caption(str(exc))
        return
    ids = list(run_ids)
    st.download_button(label, lambda: build_report(store, ids).encode(), file_name(ids), MIME, key=key,
                       width=width, help="One HTML file with the figures, tables and step captions; opens "
                                             "offline, in any browser.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui.report", description="Write the HTML report of finished "
                                     "pruning runs (one run, or several compared) to one self-contained file.")
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    parser.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    args = parser.parse_args(argv)
    try:
        text = build_report(RunStore(), args.run_ids)
    except ReportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode()) / 1e6:.2f} MB, {len(args.run_ids)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
