"""Configuration dataclasses: frozen, and every bad value rejected with a message naming the field
and the value."""

from __future__ import annotations

import dataclasses

import pytest

from core.config import ConfigError, DataConfig, TrainConfig
from core.train import DistillConfig


@pytest.mark.parametrize("kwargs, field", [
    ({"max_length": 4}, "DataConfig.max_length"),
    ({"train_cap": "many"}, "DataConfig.train_cap"),
    ({"val_fraction": 0.9}, "DataConfig.val_fraction"),
    ({"seed": -1}, "DataConfig.seed"),
])
def test_data_config_errors_name_field_and_value(kwargs, field):
    with pytest.raises(ConfigError) as err:
        DataConfig(**kwargs)
    assert field in str(err.value) and repr(list(kwargs.values())[0]) in str(err.value)


def test_train_and_distill_config_errors():
    with pytest.raises(ConfigError, match=r"TrainConfig.lr .* 0"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="DistillConfig.alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="TrainConfig.batch_size"):
        TrainConfig(batch_size=True)


def test_configs_are_frozen():
    cfg = DataConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
