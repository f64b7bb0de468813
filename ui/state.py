"""The shared selection (model, dataset, budgets) in ``st.session_state`` and the sidebar that edits it.

Canonical values live under plain keys (``sel_model``, ``sel_dataset``, ``budgets``) that no widget owns,
so they survive page switches, and a page run on its own (AppTest) reads the same defaults. Widgets copy
their value into them in ``on_change`` callbacks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from core.config import AUTO_LENGTH, DataConfig
from core.data.ref import DatasetRef
from core.data.registry import DATASETS, DEFAULT_DATASET
from core.data.truncation import default_max_length
from core.data.upload_store import list_uploads, upload_info
from core.models.registry import DEFAULT_MODEL, MODELS
from core.pruning.config import PruneConfig
from core.train import DistillConfig

MODEL_KEY = "sel_model"
DATASET_KEY = "sel_dataset"
BUDGETS_KEY = "budgets"
CUSTOM_MODELS_KEY = "custom_models"
CUSTOM_DATASETS_KEY = "custom_datasets"

#: budget fields and their meaning (Setup page labels); values default to the engine's configs
BUDGET_HELP = {
    "train_cap": "Training rows (teacher fine-tuning and each step's fine-tuning)",
    "val_cap": "Validation rows (the oracle and the accuracy floor)",
    "test_cap": "Test rows (reported accuracy)",
    "max_length": "Max sequence length in tokens (the paper uses 32)",
    "length_mode": "Sequence length: the dataset's default (auto for uploads and hub datasets, the number for "
                   "embedded ones), always auto (chosen from the data), or always the number",
    "max_auto_length": "Longest length auto may choose (a cost budget)",
    "truncation": "What of a longer text is kept",
    "layers_to_remove": "Layers to remove, one per step",
    "step_epochs": "Fine-tuning epochs after each removal",
    "calibration_size": "Calibration examples for the signals",
    "distill": "Distil from the unpruned teacher at the end",
    "kd_epochs": "Distillation epochs",
    "accuracy_floor": "Stop early when validation accuracy falls below (0 = never)",
    "seed": "Random seed (splits, training, random baseline)",
    "precision": "Precision of training and evaluation",
}


#: the Home page's instant demo: the tiny random BERT on the synthetic keywords task, sized to finish in
#: a minute or two on two CPU cores. Texts are cut to 10 tokens, so the deciding keyword is sometimes lost:
#: the task stops being trivially perfect and the choice of layer shows in the accuracy. The tests use the
#: same data sizes, so they share the demo's cached teacher.
TINY_DEMO: dict[str, Any] = {"model": "tiny-bert", "dataset": "keywords", "train_cap": 160, "val_cap": 48,
                             "test_cap": 48, "max_length": 10, "layers_to_remove": 4, "step_epochs": 1.0,
                             "kd_epochs": 1.0, "calibration_size": 48}


def default_budgets() -> dict[str, Any]:
    """The engine's own defaults (``DataConfig``, ``PruneConfig``, ``DistillConfig``)."""
    data, kd = DataConfig(), DistillConfig()
    fields = {f.name: f.default for f in dataclasses.fields(PruneConfig)
              if f.default is not dataclasses.MISSING}
    return {"train_cap": data.train_cap, "val_cap": data.val_cap, "test_cap": data.test_cap,
            "max_length": data.max_length, "length_mode": "default", "max_auto_length": data.max_auto_length,
            "truncation": data.truncation, "layers_to_remove": fields["layers_to_remove"],
            "step_epochs": float(fields["step_epochs"]), "calibration_size": fields["calibration_size"],
            "distill": bool(fields["distill"]), "kd_epochs": float(kd.epochs),
            "accuracy_floor": float(fields["accuracy_floor"]), "seed": fields["seed"],
            "precision": str(fields["precision"])}


def init() -> None:
    """Fill missing session keys with defaults (safe to call on every run of every page)."""
    ss = st.session_state
    if MODEL_KEY not in ss:
        ss[MODEL_KEY] = DEFAULT_MODEL
    if DATASET_KEY not in ss:
        ss[DATASET_KEY] = DEFAULT_DATASET
    if BUDGETS_KEY not in ss:
        ss[BUDGETS_KEY] = default_budgets()
    ss.setdefault(CUSTOM_MODELS_KEY, [])
    ss.setdefault(CUSTOM_DATASETS_KEY, [])


def model() -> str:
    init()
    return str(st.session_state[MODEL_KEY])


def dataset() -> str:
    init()
    return str(st.session_state[DATASET_KEY])


def budgets() -> dict[str, Any]:
    init()
    merged = dict(default_budgets())
    merged.update(st.session_state[BUDGETS_KEY] or {})
    return merged


def set_model(key: str) -> None:
    st.session_state[MODEL_KEY] = key


def set_dataset(key: str) -> None:
    st.session_state[DATASET_KEY] = key


def set_budgets(values: dict[str, Any]) -> None:
    st.session_state[BUDGETS_KEY] = dict(values)


def model_options() -> list[str]:
    init()
    keys = list(MODELS)
    for extra in [*st.session_state[CUSTOM_MODELS_KEY], st.session_state[MODEL_KEY]]:
        if extra not in keys:
            keys.append(extra)
    return keys


def dataset_options() -> list[str]:
    """Registry datasets (offline first), the store's uploads, and hub names the user typed."""
    init()
    keys = sorted(DATASETS, key=lambda k: (not DATASETS[k].offline, k != DEFAULT_DATASET))
    try:
        from .cached_store import store  # noqa: PLC0415 deferred: cost (shap: app.py imports ui.state first)

        keys += [str(u.ref) for u in list_uploads(store())]
    except Exception:  # no uploads folder yet, or the store is unreadable: the Setup page says so
        pass
    for extra in [*st.session_state[CUSTOM_DATASETS_KEY], st.session_state[DATASET_KEY]]:
        if extra not in keys:
            keys.append(extra)
    return keys


def model_label(key: str) -> str:
    spec = MODELS.get(key)
    return spec.display_name if spec is not None else f"{key} (hub)"


def model_short(key: str) -> str:
    """A sidebar-sized model label: the key and its depth."""
    spec = MODELS.get(key)
    if spec is None:
        return f"{key} (hub)"
    return f"{key} · {spec.num_layers} layers" + ("" if spec.offline else " (hub)")


def dataset_label(key: str) -> str:
    try:
        ref = DatasetRef.parse(key)
    except ValueError:  # a malformed reference is shown as written
        return key
    if ref.is_upload:
        try:
            from .cached_store import store  # noqa: PLC0415 deferred: cost (shap: app.py imports ui.state first)

            info = upload_info(store(), ref)
            if info is not None:
                return f"{info.name} (uploaded, {info.rows} rows)"
        except Exception:
            pass
        return ref.short
    spec = DATASETS.get(key)
    return spec.display_name if spec is not None else key


def _copy(src: str, dst: str) -> None:
    st.session_state[dst] = st.session_state[src]


def sidebar() -> None:
    """The shared selectors, drawn by app.py on every page."""
    init()
    models, datasets = model_options(), dataset_options()
    st.session_state["_w_model"] = model()
    st.session_state["_w_dataset"] = dataset() if dataset() in datasets else datasets[0]
    with st.sidebar:
        st.markdown("#### Working on")
        st.selectbox("Model", models, key="_w_model", format_func=model_short, on_change=_copy,
                     args=("_w_model", MODEL_KEY), help="Change or add models on the Setup page.")
        st.selectbox("Dataset", datasets, key="_w_dataset", format_func=dataset_label, on_change=_copy,
                     args=("_w_dataset", DATASET_KEY), help="Upload your own CSV on the Setup page.")
        b = budgets()
        st.caption(f"Budget: {b['train_cap']:,} train rows · length {length_label(b, dataset())} · remove "
                   f"{b['layers_to_remove']} layers · {b['step_epochs']:g} epoch(s)/step"
                   + (" · then KD" if b["distill"] else "") + f" · precision {b['precision']}")


#: the choices of the ``length_mode`` budget
LENGTH_MODES = ("default", "auto", "fixed")


def max_length_for(dataset_key: str, b: dict[str, Any]) -> int | str:
    """``DataConfig.max_length`` for ``dataset_key`` under budgets ``b``: ``length_mode`` "auto" -> "auto",
    "fixed" -> ``max_length``, "default" -> auto for uploads, files and hub datasets, ``max_length`` for the
    embedded ones (:func:`core.data.truncation.default_max_length`)."""
    mode = b.get("length_mode", "default")
    if mode == "auto" or (mode == "default" and default_max_length(dataset_key) == AUTO_LENGTH):
        return AUTO_LENGTH
    return int(b["max_length"])


def data_config(dataset_key: str, b: dict[str, Any] | None = None) -> DataConfig:
    """The data config of the current budgets for ``dataset_key`` (raises ConfigError naming a bad field)."""
    b = b or budgets()
    return DataConfig(train_cap=int(b["train_cap"]), val_cap=int(b["val_cap"]), test_cap=int(b["test_cap"]),
                      max_length=max_length_for(dataset_key, b), seed=int(b["seed"]),
                      max_auto_length=int(b.get("max_auto_length", DataConfig().max_auto_length)),
                      truncation=str(b.get("truncation", "head")))


def length_label(b: dict[str, Any], dataset_key: str) -> str:
    """``auto (≤128)`` or ``32``, plus ``head+tail`` when chosen: the sidebar's length."""
    length = max_length_for(dataset_key, b)
    text = f"auto (≤{b.get('max_auto_length', 128)})" if length == "auto" else str(length)
    return text + (" head+tail" if b.get("truncation") == "head+tail" else "")


def prune_config(strategy: str, model_key: str | None = None, dataset_key: str | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """A validated ``PruneConfig`` dict for ``strategy`` from the current selection and budgets.

    Raises :class:`~core.config.ConfigError` with a message naming the bad field.
    """
    b = {**budgets(), **overrides}
    data = data_config(dataset_key or dataset(), b)
    kd = dataclasses.replace(DistillConfig(), epochs=float(b["kd_epochs"]))
    cfg = PruneConfig(model=model_key or model(), dataset=dataset_key or dataset(), strategy=strategy,
                      layers_to_remove=int(b["layers_to_remove"]), step_epochs=float(b["step_epochs"]),
                      calibration_size=int(b["calibration_size"]), distill=bool(b["distill"]), kd=kd, data=data,
                      accuracy_floor=float(b["accuracy_floor"]), seed=int(b["seed"]), precision=str(b["precision"]))
    return cfg.to_dict()
