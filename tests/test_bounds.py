"""Config bounds are declared once (``BOUNDS`` on each config class): validation and the pages' number widgets
read the same numbers, so a page cannot cap a value the engine allows (Live used to stop "layers to remove" at 11
while Setup allowed 47)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from core.config import Bound, ConfigError, DataConfig, TrainConfig, check_bounds
from core.deploy.bench import DeployBenchConfig
from core.merging.config import MergeConfig
from core.pruning.config import PruneConfig
from core.studies.config import StudyConfig
from core.train import DistillConfig
from ui.bounds import removable_layers, widget_range

ROOT = Path(__file__).resolve().parents[1]

FACTORIES = {
    DataConfig: DataConfig, TrainConfig: TrainConfig, DistillConfig: DistillConfig,
    DeployBenchConfig: DeployBenchConfig,
    PruneConfig: lambda **kw: PruneConfig(model="tiny-bert", dataset="keywords", **kw),
    MergeConfig: lambda **kw: MergeConfig(model="tiny-bert", dataset="keywords", **kw),
    StudyConfig: lambda **kw: StudyConfig(name="s", models=("tiny-bert",), datasets=("keywords",),
                                          strategies=("random",), **kw),
}
CASES = [(cls, name, bound) for cls in FACTORIES for name, bound in cls.BOUNDS.items()]


def _outside(bound: Bound) -> list:
    step = 1 if bound.kind == "int" else 1e-3
    out = []
    if bound.lo is not None:
        out.append(bound.lo if bound.lo_open else bound.lo - step)
    if bound.hi is not None:
        out.append(bound.hi + step)
    return [int(v) if bound.kind == "int" else float(v) for v in out]


@pytest.mark.parametrize("cls, name, bound", CASES, ids=[f"{c.__name__}.{n}" for c, n, _ in CASES])
def test_every_declared_bound_is_what_the_config_enforces(cls, name, bound):
    assert name in {f.name for f in dataclasses.fields(cls)}, f"{cls.__name__}.BOUNDS names no field {name!r}"
    make = FACTORIES[cls]
    for edge in (bound.lo, bound.hi):  # the ends are accepted (an open lower end is not)
        if edge is not None and not (edge == bound.lo and bound.lo_open):
            make(**{name: int(edge) if bound.kind == "int" else float(edge)})
    for bad in _outside(bound):
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name} must be"):
            make(**{name: bad})
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name} must be"):
        make(**{name: "seven"})


def test_allowed_non_numbers_pass_and_a_wrong_word_names_them():
    assert DataConfig(max_length="auto").max_length == "auto"
    with pytest.raises(ConfigError, match="DataConfig.max_length must be an integer or 'auto', got 'long'"):
        DataConfig(max_length="long")
    assert MergeConfig(model="tiny-bert", dataset="keywords", auto_k=None, lr=None).auto_k is None
    with pytest.raises(ConfigError, match="MergeConfig.auto_k must be >= 2, got 1"):
        MergeConfig(model="tiny-bert", dataset="keywords", auto_k=1)
    with pytest.raises(ConfigError, match="Bound.kind"):
        Bound("decimal", 0, 1)


def test_check_bounds_checks_only_the_named_fields():
    class Loose:
        BOUNDS = {"a": Bound("int", 0, 3), "b": Bound("float", 0.0, 1.0)}
        a, b = 2, 5.0

    check_bounds(Loose(), ("a",))
    with pytest.raises(ConfigError, match="Loose.b must be <= 1.0, got 5.0"):
        check_bounds(Loose())


def test_study_bounds_are_the_pruning_and_distillation_bounds():
    assert StudyConfig.BOUNDS["layers_to_remove"] is PruneConfig.BOUNDS["layers_to_remove"]
    assert StudyConfig.BOUNDS["kd_epochs"] is DistillConfig.BOUNDS["epochs"]


def test_widget_range_is_the_declared_range_capped_by_the_models_depth():
    layers = PruneConfig.BOUNDS["layers_to_remove"]
    assert widget_range(layers) == (1, 47)
    assert widget_range(layers, hi=removable_layers("tiny-bert")) == (1, 11)
    assert widget_range(layers, hi=0) == (1, 1)  # a one-layer model: nothing below the declared minimum
    assert widget_range(PruneConfig.BOUNDS["step_epochs"]) == (0.0, 50.0)
    assert all(isinstance(v, float) for v in widget_range(PruneConfig.BOUNDS["step_epochs"]))
    assert removable_layers("no/such-hub-model") is None


def _literal_ranges(path: Path) -> list[str]:
    """``number_input(label, <number>, <number>, ...)`` calls in a page: a range typed in the page."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "number_input"
                and getattr(node.func.value, "id", "") != "bounds"):  # streamlit's own: label, min, max, ...
            args = node.args[1:3] + [k.value for k in node.keywords if k.arg in ("min_value", "max_value")]
            if any(isinstance(a, (ast.Constant, ast.BinOp, ast.UnaryOp)) for a in args):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_page_types_a_number_range_of_its_own():
    offenders = [hit for page in sorted((ROOT / "pages").glob("*.py")) for hit in _literal_ranges(page)]
    assert offenders == [], f"read the range from the config's BOUNDS (ui.bounds.number_input): {offenders}"


def test_live_and_setup_offer_the_same_layers_to_remove_range(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PRUNE_STORE_DIR", str(tmp_path / "store"))

    def page(name: str) -> AppTest:
        at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=120)
        at.session_state["sel_model"] = "tiny-bert"
        at.session_state["sel_dataset"] = "keywords"
        return at.run()

    live = page("live").number_input(key="live_layers")
    assert (live.min, live.max) == (1, 11)  # tiny-bert has 12 layers: all but one may go
    setup = page("setup")
    [layers] = [w for w in setup.number_input if "layers" in w.label.lower()]
    assert (layers.min, layers.max) == (1, 47)  # budgets apply to any model: the config's own bound
    epochs = page("live").number_input(key="live_epochs")
    assert epochs.max == PruneConfig.BOUNDS["step_epochs"].hi
