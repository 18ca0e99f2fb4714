"""AdamW with linear warm-up then cosine decay, and which metric early stopping watches."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from polymodal.training.config import TrainConfig
from polymodal.training.module import PolymodalModule, resolve_monitor, warmup_cosine


def test_warmup_rises_linearly_to_the_peak() -> None:
    values = [warmup_cosine(s, warmup_steps=4, total_steps=20, min_ratio=0.1) for s in range(4)]
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_cosine_decays_from_the_peak_to_the_floor() -> None:
    def at(step: int) -> float:
        return warmup_cosine(step, warmup_steps=4, total_steps=24, min_ratio=0.1)

    assert at(4) == pytest.approx(1.0)
    # Half-way through the decay the cosine is at its midpoint between peak and floor.
    assert at(14) == pytest.approx(0.1 + 0.9 * 0.5)
    assert at(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert at(24) == pytest.approx(0.1)
    # Past the planned end (e.g. a resumed run with more steps) it stays at the floor.
    assert at(100) == pytest.approx(0.1)
    decay = [at(s) for s in range(4, 25)]
    assert all(a > b for a, b in itertools.pairwise(decay))


def test_no_warmup_starts_at_the_peak() -> None:
    assert warmup_cosine(0, warmup_steps=0, total_steps=10, min_ratio=0.0) == pytest.approx(1.0)
    assert warmup_cosine(10, warmup_steps=0, total_steps=10, min_ratio=0.0) == pytest.approx(0.0)


def test_optimizer_is_adamw_and_follows_the_schedule() -> None:
    cfg = TrainConfig(lr=2e-3, weight_decay=0.05, warmup_epochs=1.0, min_lr_ratio=0.1)
    module = PolymodalModule(nn.Linear(3, 2), {}, cfg, steps_per_epoch=5)
    module.trainer = SimpleNamespace(estimated_stepping_batches=20)
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"]
    scheduler = configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert configured["lr_scheduler"]["interval"] == "step"
    # The weight matrix is decayed; the bias is not.
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [torch.Size([2, 3])]
    assert decayed["weight_decay"] == 0.05
    assert [p.shape for p in plain["params"]] == [torch.Size([2])]
    assert plain["weight_decay"] == 0.0
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [
        2e-3 * warmup_cosine(s, warmup_steps=5, total_steps=20, min_ratio=0.1) for s in range(20)
    ]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == pytest.approx(2e-3 / 5)
    assert max(lrs) == pytest.approx(2e-3)


BINARY = {"label": {"kind": "binary"}}


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (BINARY, ("val/label/auroc", "max")),
        (
            {"dx": {"kind": "multiclass"}, "label": {"kind": "binary"}},
            ("val/dx/auroc_macro", "max"),
        ),
        ({"findings": {"kind": "multilabel"}}, ("val/findings/auroc_macro", "max")),
        ({"age": {"kind": "regression"}}, ("val/age/rmse", "min")),
        ({"survival": {"kind": "time_to_event"}}, ("val/survival/c_index", "max")),
    ],
)
def test_auto_monitor_is_the_first_targets_main_metric(targets, expected) -> None:
    assert resolve_monitor(TrainConfig(monitor="auto"), targets) == expected


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("val/loss", "min"),
        ("val/label/brier", "min"),
        ("val/label/ece", "min"),
        ("val/age/mae", "min"),
        ("val/age/rmse", "min"),
        ("val/label/auprc", "max"),
        ("val/label/balanced_accuracy", "max"),
        ("val/age/r2", "max"),
    ],
)
def test_explicit_monitor_keeps_its_name_and_picks_the_direction(name, mode) -> None:
    assert resolve_monitor(TrainConfig(monitor=name), BINARY) == (name, mode)
