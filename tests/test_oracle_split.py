"""The oracle is measured on the validation split, never the test split (issue 15, bug 6).

A test-set oracle would flatter every strategy that learns from it (the ``oracle`` strategy, the fusion
target) and comparing accuracies cannot see it on a task where both splits score alike. So the check is by
identity: during a small pruning run, every data object the oracle receives *is* the prepared task's
validation split.
"""

from __future__ import annotations

import sys

from core.config import DataConfig
from core.pruning.config import PruneConfig
from core.pruning.loop import prune_events

SMALL = DataConfig(train_cap=150, val_cap=45, test_cap=45)


def _patch_everywhere(monkeypatch, name: str, original, replacement) -> int:
    """Replace ``original`` under ``name`` in every loaded ``core`` module that holds it (wherever the
    engine imports it from); returns how many places were patched."""
    patched = 0
    for mod_name, module in list(sys.modules.items()):
        if mod_name.startswith("core") and getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, replacement)
            patched += 1
    return patched


def test_the_oracle_receives_the_validation_split(monkeypatch):
    import core.oracle as oracle_module
    from core import teacher_phase

    received: list[object] = []
    tasks: list[object] = []
    # the pruning tree measures the oracle with core.oracle.oracle_with_logits (the table and the logits its
    # per-example outcomes come from); compute_oracle is a thin wrapper over it, so spying here sees every oracle
    oracle_with_logits, prepare_and_teach = oracle_module.oracle_with_logits, teacher_phase.prepare_and_teach

    def spy_oracle(model, data, *args, **kwargs):
        received.append(data)
        return oracle_with_logits(model, data, *args, **kwargs)

    def spy_prepare(*args, **kwargs):
        result = yield from prepare_and_teach(*args, **kwargs)
        tasks.append(result[0])
        return result

    assert _patch_everywhere(monkeypatch, "oracle_with_logits", oracle_with_logits, spy_oracle) >= 1
    assert _patch_everywhere(monkeypatch, "prepare_and_teach", prepare_and_teach, spy_prepare) >= 1

    cfg = PruneConfig(model="tiny-bert", dataset="keywords", strategy="oracle", layers_to_remove=2,
                      step_epochs=0.5, data=SMALL, calibration_size=32, distill=False)
    stages = [event.stage for event in prune_events(cfg, run_id="split-check")]
    assert stages[-1] == "done"

    assert len(tasks) == 1
    task = tasks[0]
    assert len(received) == 2  # one oracle per step
    names = [next((k for k, v in task.encoded.items() if v is data), "another object") for data in received]
    assert names == ["val", "val"]

