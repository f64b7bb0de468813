"""The tiny model: a randomly initialised 12-layer BERT (hidden 32, 4 heads) with a word-level tokenizer over a
fixed ~200-word English vocabulary, built from a config (no download). Unit tests and instant demos use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from core.paths import atomic_dir, cache_dir

if TYPE_CHECKING:
    from transformers import BertConfig, PreTrainedTokenizerFast

TINY_WORDS = (
    "the a an and or but of to in on at for with from by is are was were be been it this that these those "
    "i you he she we they me him her us them my your his our their good great excellent wonderful happy "
    "love best fine nice superb bad terrible awful poor sad hate worst boring ugly horrible movie film "
    "food service place product price book game music team match player election vote government policy "
    "market stock shares company profit bank science computer software data model space research health "
    "doctor medicine sport football tennis news world city country year day time people very not no yes "
    "really quite so too more most less much many some any all every one two three first last new old big "
    "small long short high low fast slow hot cold red blue green question answer what who where when why how"
).split()


def tiny_config(num_layers: int = 12, hidden: int = 32, heads: int = 4, vocab_size: int | None = None
                ) -> BertConfig:
    from transformers import BertConfig  # noqa: PLC0415 deferred: cost (transformers)

    vocab = vocab_size or (len(TINY_WORDS) + 5)
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=num_layers,
                      num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=128,
                      type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      pad_token_id=0)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A lowercase word-level tokenizer over a fixed vocabulary of ~200 English words."""
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415 deferred: cost (transformers)

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {tok: i for i, tok in enumerate(specials + list(TINY_WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=128)


def ensure_tiny_model(seed: int = 0) -> Path:
    """Build (once) the tiny random 12-layer BERT as a standard HF folder in the cache."""
    from transformers import BertModel  # noqa: PLC0415 deferred: cost (transformers)

    folder = cache_dir() / "models" / f"tiny-bert-seed{seed}"
    marker = folder / "model.safetensors"
    if marker.exists() and (folder / "tokenizer.json").exists():
        return folder
    with atomic_dir(folder, replace=False) as tmp:  # another process may finish first: keep theirs
        torch.manual_seed(seed)
        BertModel(tiny_config(), add_pooling_layer=True).save_pretrained(tmp, safe_serialization=True)
        tiny_tokenizer().save_pretrained(tmp)
        (tmp / "registry.json").write_text(json.dumps({"key": "tiny-bert", "seed": seed}))
    return folder
