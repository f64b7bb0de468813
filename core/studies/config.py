"""A study: a grid of pruning runs (models x datasets x strategies x seeds at one budget), and its cells.

A :class:`StudyConfig` is frozen and validated; it expands into :class:`Cell` objects, one per pruning run.
A cell's id is the hash of everything that determines its result (the full :class:`PruneConfig`, the
profile snapshot its fusion ranker trains on, and :data:`CELL_VERSION`), so a restarted study recognises
what it has already finished. Cells of the same model, dataset, seed and budget form a *group*: they are
pruned together as one tree (:mod:`core.pruning.tree`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from core.config import PRECISIONS, SEED, Bound, ConfigError, DataConfig, check_bounds, check_choice, from_dict, to_dict
from core.models.registry import get_model_spec
from core.precision import resolve
from core.pruning.config import FUSION, PruneConfig, strategy_keys
from core.pruning.tree import group_key
from core.train import DistillConfig

#: bump when a change to the method makes earlier finished cells stale (2: leak-free splits, 3: texts de-duplicated
#: case-insensitively; see core.data.splits)
CELL_VERSION = 3


def _tuple_of_str(owner: str, name: str, value: Any, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{owner}.{name} must be a non-empty list, got {value!r}")
    out = []
    for v in value:
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{owner}.{name} must hold non-empty strings, got {v!r}")
        if allowed is not None and v not in allowed:
            raise ConfigError(f"{owner}.{name} has an unknown entry {v!r}; choose from {', '.join(allowed)}")
        out.append(v)
    if len(set(out)) != len(out):
        raise ConfigError(f"{owner}.{name} lists an entry twice: {out!r}")
    return tuple(out)


@dataclass(frozen=True)
class StudyConfig:
    """A grid of pruning runs. Budgets default to the app's default pruning run (our defaults)."""

    name: str = "study"
    models: tuple[str, ...] = ("e5-small",)
    datasets: tuple[str, ...] = ("trec",)
    strategies: tuple[str, ...] = field(default_factory=strategy_keys)
    seeds: tuple[int, ...] = (0,)
    layers_to_remove: int = 6
    step_epochs: float = 1.0
    distill: bool = True
    kd_epochs: float = 2.0
    calibration_size: int = 256
    data: DataConfig = field(default_factory=DataConfig)
    #: every cell's precision (core.precision; our default auto); a cell's id holds the *resolved* one
    precision: str = "auto"

    #: the bounds of the PruneConfig and DistillConfig fields each cell gets
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "layers_to_remove": PruneConfig.BOUNDS["layers_to_remove"], "step_epochs": PruneConfig.BOUNDS["step_epochs"],
        "kd_epochs": DistillConfig.BOUNDS["epochs"], "calibration_size": PruneConfig.BOUNDS["calibration_size"]}

    def __post_init__(self) -> None:
        o = "StudyConfig"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"{o}.name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "models", _tuple_of_str(o, "models", self.models))
        object.__setattr__(self, "datasets", _tuple_of_str(o, "datasets", self.datasets))
        object.__setattr__(self, "strategies", _tuple_of_str(o, "strategies", self.strategies, strategy_keys()))
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ConfigError(f"{o}.seeds must be a non-empty list of integers, got {self.seeds!r}")
        for s in self.seeds:
            SEED.check(o, "seeds", s)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{o}.seeds lists a seed twice: {list(self.seeds)!r}")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not isinstance(self.distill, bool):
            raise ConfigError(f"{o}.distill must be true or false, got {self.distill!r}")
        check_choice(o, "precision", self.precision, PRECISIONS)
        check_bounds(self)
        if not isinstance(self.data, DataConfig):
            raise ConfigError(f"{o}.data must be a DataConfig, got {self.data!r}")
        for m in self.models:  # every combination must make a valid PruneConfig (names the bad field)
            for d in self.datasets:
                for strategy in self.strategies:
                    self.prune_config(m, d, strategy, self.seeds[0])

    # ------------------------------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d["data"].pop("seed", None)  # each cell's data seed is its seed
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyConfig:
        d = dict(d)
        unknown = sorted(set(d) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ConfigError(f"StudyConfig has no field(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        if isinstance(d.get("data"), Mapping):
            data = dict(d["data"])
            bad = sorted(set(data) - set(DataConfig.__dataclass_fields__))
            if bad:
                raise ConfigError(f"StudyConfig.data has no field(s) {bad}; known: "
                                  f"{sorted(DataConfig.__dataclass_fields__)}")
            d["data"] = from_dict(DataConfig, data)
        for key in ("models", "datasets", "strategies", "seeds"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return from_dict(cls, d)

    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        """Read a study from a TOML or JSON file."""
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"study file {str(p)!r} does not exist")
        text = p.read_text()
        try:
            raw = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"study file {str(p)!r} is not valid {p.suffix.lstrip('.').upper()}: {exc}") from exc
        return cls.from_dict(raw.get("study", raw))

    # ------------------------------------------------------------------------------------------ cells
    def prune_config(self, model: str, dataset: str, strategy: str, seed: int) -> PruneConfig:
        data = DataConfig(**{**to_dict(self.data), "seed": seed})
        return PruneConfig(model=model, dataset=dataset, strategy=strategy, layers_to_remove=self.layers_to_remove,
                           step_epochs=self.step_epochs, distill=self.distill, calibration_size=self.calibration_size,
                           kd=DistillConfig(epochs=self.kd_epochs), data=data, seed=seed, precision=self.precision)

    def cells(self, snapshot: str) -> list[Cell]:
        """Every cell of the grid, in a stable order (model, dataset, seed, strategy). ``snapshot`` is the digest of
        the profile snapshot the fusion cells train on."""
        return [Cell.of(self.prune_config(m, d, s, seed), snapshot)
                for m in self.models for d in self.datasets for seed in self.seeds for s in self.strategies]

    @property
    def n_cells(self) -> int:
        return len(self.models) * len(self.datasets) * len(self.strategies) * len(self.seeds)


@dataclass(frozen=True)
class Cell:
    """One run of a study: its pruning config, the snapshot its fusion trains on (fusion only), and its id."""

    cfg: PruneConfig
    snapshot: str
    cell_id: str
    group: str

    @classmethod
    def of(cls, cfg: PruneConfig, snapshot: str) -> Cell:
        snap = snapshot if cfg.strategy in FUSION else ""
        config = cfg.to_dict()
        # what runs here: auto is bf16 on one machine, fp32 on another (and fp32 for a narrow model everywhere)
        config["precision"] = resolve(cfg.precision, None, get_model_spec(cfg.model).hidden_size)
        ident = json.dumps({"config": config, "profile_snapshot": snap, "version": CELL_VERSION}, sort_keys=True)
        cell_id = hashlib.sha256(ident.encode()).hexdigest()[:16]
        group = hashlib.sha256(group_key(cfg).encode()).hexdigest()[:12]
        return cls(cfg, snap, cell_id, group)

    def label(self) -> str:
        c = self.cfg
        return f"{c.strategy} · {c.model} · {c.dataset} · seed {c.seed}"


def groups(cells: list[Cell]) -> dict[str, list[Cell]]:
    """Cells by tree group (same model, dataset, seed and budget), in first-seen order."""
    out: dict[str, list[Cell]] = {}
    for c in cells:
        out.setdefault(c.group, []).append(c)
    return out
