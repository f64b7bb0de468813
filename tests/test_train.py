"""The training loop: fine-tuning learns, is deterministic and stops between batches; the distillation
loss is the documented formula."""

from __future__ import annotations

import torch

from core.config import TrainConfig
from core.train import distillation_loss, evaluate, fine_tune, run_to_end


def test_fine_tune_learns_and_is_deterministic(keyword_batches):
    from core.models.registry import load_classifier
    from core.teacher import default_train_config

    cfg = default_train_config("tiny-bert")
    results = []
    for _ in range(2):
        model = load_classifier("tiny-bert", 2, seed=0)
        before = evaluate(model, keyword_batches["val"], precision="fp32")
        last = run_to_end(fine_tune(model, keyword_batches["train"], cfg))
        results.append((last.loss, evaluate(model, keyword_batches["val"], precision="fp32")))
    assert results[0] == results[1]
    assert results[0][1]["accuracy"] >= 0.9
    assert before["accuracy"] < results[0][1]["accuracy"]


def test_fine_tune_can_be_stopped_between_batches(keyword_batches, tiny_model):
    gen = fine_tune(tiny_model, keyword_batches["train"], TrainConfig(epochs=3, batch_size=16))
    first = next(gen)
    gen.close()
    assert first.step == 1 and first.total_steps == 30
    assert not tiny_model.training


def test_distillation_loss_matches_definition():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 1, 0])
    T, alpha = 2.0, 0.3
    p_t = torch.softmax(t / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, -1))).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(s, y)
    expected = alpha * T * T * kl + (1 - alpha) * ce
    assert torch.allclose(distillation_loss(s, t, y, T, alpha), expected, atol=1e-6)
    assert torch.allclose(distillation_loss(t, t, y, T, 1.0), torch.tensor(0.0), atol=1e-6)
