"""The embedded e5-small's tokenizer, rebuilt with ``tokenizers`` from the vocabulary and the normalisation table
in its packed file (read by :mod:`core.models.e5convert`).

The engine's tokenizer (``tok_content``): a per-codepoint replacement table, then runs of spaces collapsed, then
the SentencePiece metaspace, then a Viterbi over the unigram pieces. :func:`build_normalizer` and
:func:`build_pre_tokenizer` say how that maps onto ``tokenizers`` and where the two can differ.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

if TYPE_CHECKING:  # annotations only (transformers stays lazy at run time)
    from tokenizers.normalizers import Normalizer
    from tokenizers.pre_tokenizers import PreTokenizer
    from transformers import PreTrainedTokenizerFast

METASPACE = "\u2581"


@dataclass(frozen=True, eq=False)
class E5Vocab:
    """The SentencePiece unigram vocabulary: pieces (id = index), log-probability scores, special ids."""

    pieces: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@lru_cache(maxsize=1)
def nfkc_changes() -> dict[int, str]:
    """Every codepoint that ``tokenizers``' own NFKC changes, with its image (one pass over Unicode).

    Computed from the installed library rather than Python's ``unicodedata`` because the two ship
    different Unicode versions. Newline separates the codepoints: it is a starter that never composes.
    Cached per process; treat the result as read-only.
    """
    nfkc = normalizers.NFKC()
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF and c != 0x0A]
    images = nfkc.normalize_str("\n".join(map(chr, cps))).split("\n")
    if len(images) != len(cps) or nfkc.normalize_str("\n") != "\n":
        raise RuntimeError("NFKC scan could not be aligned codepoint by codepoint")
    return {c: img for c, img in zip(cps, images) if img != chr(c)}


def _char_class(chars: Iterable[str], negate: bool = False) -> str:
    """A regex character class of ``chars`` written as ``\\x{...}`` ranges."""
    cps = sorted({ord(c) for c in chars})
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


#: escape codepoint used for placeholders (the last Plane-16 private-use codepoint; NFKC leaves it alone)
_ESC = "\U0010FFFD"


def build_normalizer(norm_map: dict[int, str], nfkc_images: dict[int, str] | None = None) -> Normalizer:
    """A ``tokenizers`` normaliser equal to the engine's per-codepoint table on every single codepoint.

    The table is NFKC applied codepoint by codepoint, except for a few codepoints (control characters
    removed, tabs and newlines to spaces, and characters the table leaves alone but ``tokenizers``' NFKC
    changes). Applying thousands of ``Replace`` steps costs milliseconds per text, so instead every
    codepoint where the table and NFKC disagree is hidden behind a placeholder (escape codepoint plus
    fixed-width ASCII digits, which NFKC leaves intact), NFKC runs, and the placeholders become the
    table's output. A literal escape codepoint in the input is itself escaped (tag ``000``), so the
    mapping is exact for every codepoint. Then runs of spaces collapse into one, as in the engine. Both
    packaged tables differ from ``tokenizers``' NFKC on 47 codepoints with 4 distinct outputs (controls
    removed, whitespace to space, U+FF5E and U+1F23B kept), so the whole normaliser is a dozen steps.

    Unlike the engine, NFKC composes across codepoints: a decomposed ``e`` + U+0301 becomes ``é`` here
    (as in the original XLM-R SentencePiece normaliser) but stays two codepoints in the engine.
    """
    images = nfkc_changes() if nfkc_images is None else nfkc_images
    fixes = {cp: out for cp, out in norm_map.items() if out != images.get(cp, chr(cp))}
    fixes.update({cp: chr(cp) for cp in images if cp not in norm_map})
    groups: dict[str, list[str]] = defaultdict(list)
    for cp, out in sorted(fixes.items()):
        groups[out].append(chr(cp))
    if ord(_ESC) in fixes or any(_ESC in out for out in groups) or \
            any(c.isascii() and c.isdigit() for chars in groups.values() for c in chars):
        raise ValueError("normalisation table cannot be expressed with the placeholder scheme")
    width = max(3, len(str(len(groups))))  # fixed-width tags: a match can only start at its own escape
    tags = {out: f"{_ESC}{i:0{width}d}" for i, out in enumerate(groups, start=1)}
    literal = f"{_ESC}{0:0{width}d}"
    steps: list[normalizers.Normalizer] = [normalizers.Replace(_ESC, literal)]
    steps += [normalizers.Replace(Regex(_char_class(chars)), tags[out]) for out, chars in groups.items()]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(tag, out) for out, tag in tags.items()]
    steps += [normalizers.Replace(literal, _ESC), normalizers.Replace(Regex(" {2,}"), " ")]
    return normalizers.Sequence(steps)


def build_pre_tokenizer(pieces: Iterable[str]) -> PreTokenizer:
    """Metaspace (prepend ``▁``, spaces to ``▁``, no word split) plus splits that keep ``<unk>`` faithful.

    The engine runs its Viterbi over the whole text and emits one ``<unk>`` per unknown character;
    ``tokenizers``' Unigram fuses consecutive unknowns into one ``<unk>``. Splitting the text where no
    piece can cross restores one ``<unk>`` per character without changing any segmentation: around every
    character that occurs in no piece, and between two adjacent characters that have no single-character
    piece (so could each become ``<unk>``) when that pair occurs in no piece. Only a pair that does occur
    in some piece but is unknown in context still fuses (the English+Portuguese vocabulary keeps a few
    foreign-script pieces whose characters have no piece of their own).
    """
    pieces = list(pieces)
    known = set("".join(pieces))
    single = {p for p in pieces if len(p) == 1}
    loose = known - single  # characters that can become <unk> although some piece contains them
    followers: dict[str, set[str]] = defaultdict(set)
    for p in pieces:
        for a, b in zip(p, p[1:]):
            if a in loose and b in loose:
                followers[a].add(b)
    steps = [pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False),
             pre_tokenizers.Split(Regex(_char_class(known, negate=True)), behavior="isolated")]
    if loose:
        free = [c for c in loose if c not in followers]
        alts = ([_char_class(free)] if free else []) + [
            f"{_char_class(c)}(?!{_char_class(followers[c])})" for c in sorted(followers)]
        pattern = f"(?:{'|'.join(alts)})(?={_char_class(loose)})"
        steps.append(pre_tokenizers.Split(Regex(pattern), behavior="merged_with_previous"))
    return pre_tokenizers.Sequence(steps)


def build_tokenizer(vocab: E5Vocab, norm_map: dict[int, str], max_length: int) -> PreTrainedTokenizerFast:
    """The engine's tokenizer as a ``PreTrainedTokenizerFast`` (Unigram, ``<s> A </s>``)."""
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415 deferred: cost (transformers)

    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores)],
                                   unk_id=vocab.unk_id, byte_fallback=False))
    tok.normalizer = build_normalizer(norm_map)
    tok.pre_tokenizer = build_pre_tokenizer(vocab.pieces)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos_id), (eos, vocab.eos_id)])
    mask = "<mask>" if "<mask>" in vocab.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        pad_token=vocab.pieces[vocab.pad_id], unk_token=vocab.pieces[vocab.unk_id], mask_token=mask,
        model_max_length=max_length)
