"""SGD and the cyclic learning rate (the EI recipe) beside the default AdamW + cosine."""

from __future__ import annotations

import itertools
import pickle
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from polymodal.training.config import TrainConfig
from polymodal.training.module import PolymodalModule, resolve_monitor, warmup_cosine


def configure(cfg: TrainConfig, steps_per_epoch: int = 5, total: int = 200) -> dict:
    torch.manual_seed(0)
    module = PolymodalModule(nn.Linear(3, 2), {}, cfg, steps_per_epoch=steps_per_epoch)
    module.trainer = SimpleNamespace(estimated_stepping_batches=total)
    return module.configure_optimizers()


def lr_trajectory(configured: dict, steps: int) -> list[float]:
    optimizer = configured["optimizer"]
    scheduler = configured["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_sgd_has_the_momentum_and_the_decay_split() -> None:
    configured = configure(TrainConfig(optimizer="sgd", momentum=0.95, weight_decay=1e-4))
    optimizer = configured["optimizer"]
    assert type(optimizer) is torch.optim.SGD
    decayed, plain = optimizer.param_groups
    assert decayed["momentum"] == plain["momentum"] == 0.95
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0.0
    assert [p.shape for p in plain["params"]] == [torch.Size([2])]


def test_cyclic_lr_goes_base_max_base_and_each_cycle_is_0_8_of_the_last() -> None:
    cfg = TrainConfig(
        optimizer="sgd", schedule="cyclic", lr=1e-3, cyclic_base_lr=1e-5, cyclic_step_epochs=4
    )
    configured = configure(cfg, steps_per_epoch=5)
    assert configured["lr_scheduler"]["interval"] == "step"  # stepped every iteration
    lrs = lr_trajectory(configured, 81)
    up = 4 * 5  # step_size_up: 4 epochs of 5 iterations
    amplitude = 1e-3 - 1e-5
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[up // 2] == pytest.approx(1e-5 + amplitude / 2)
    assert lrs[up] == pytest.approx(1e-3)  # first peak: the full amplitude
    assert lrs[2 * up] == pytest.approx(1e-5)  # back to the base
    assert lrs[3 * up] == pytest.approx(1e-5 + 0.8 * amplitude)  # second peak: × 0.8
    assert lrs[4 * up] == pytest.approx(1e-5)
    assert max(lrs[: 2 * up]) == pytest.approx(1e-3)
    assert min(lrs) == pytest.approx(1e-5)
    # Linear in between: equal steps up, then equal steps down.
    steps = [b - a for a, b in itertools.pairwise(lrs[: 2 * up + 1])]
    assert steps == pytest.approx([amplitude / up] * up + [-amplitude / up] * up)
    # Momentum stays as configured unless cycle_momentum asks for torch's 0.8-0.9 cycling.
    assert configured["optimizer"].param_groups[0]["momentum"] == cfg.momentum


def test_cyclic_momentum_cycles_inversely_when_asked() -> None:
    cfg = TrainConfig(optimizer="sgd", schedule="cyclic", cycle_momentum=True)
    configured = configure(cfg, steps_per_epoch=1)
    optimizer = configured["optimizer"]
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)  # at the base lr
    lr_trajectory(configured, 4)  # to the lr peak
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)


def test_the_cyclic_schedule_survives_a_checkpoint() -> None:
    cfg = TrainConfig(optimizer="sgd", schedule="cyclic", cyclic_decay=0.5)
    scheduler = configure(cfg, steps_per_epoch=1)["lr_scheduler"]["scheduler"]
    state = pickle.loads(pickle.dumps(scheduler.state_dict()))
    assert state["_scale_fn_custom"] == {"decay": 0.5}
    fresh = configure(TrainConfig(optimizer="sgd", schedule="cyclic", cyclic_decay=0.9))
    fresh["lr_scheduler"]["scheduler"].load_state_dict(state)
    assert fresh["lr_scheduler"]["scheduler"].scale_fn(3) == pytest.approx(0.25)


def test_the_default_is_still_adamw_with_warmup_cosine() -> None:
    cfg = TrainConfig(lr=2e-3, weight_decay=0.05)
    assert (cfg.optimizer, cfg.schedule) == ("adamw", "cosine")
    configured = configure(cfg, steps_per_epoch=5, total=20)
    assert type(configured["optimizer"]) is torch.optim.AdamW
    expected = [
        2e-3 * warmup_cosine(s, warmup_steps=5, total_steps=20, min_ratio=0.01) for s in range(20)
    ]
    assert lr_trajectory(configured, 20) == expected  # bit for bit


def test_a_bare_metric_name_monitors_the_first_target() -> None:
    targets = {"dx": {"kind": "multiclass"}, "label": {"kind": "binary"}}
    assert resolve_monitor(TrainConfig(monitor="auprc_macro"), targets) == (
        "val/dx/auprc_macro",
        "max",
    )
    assert resolve_monitor(TrainConfig(monitor="brier"), targets) == ("val/dx/brier", "min")


def test_the_gpu_fine_tuning_recipe_loads_with_every_recipe_key() -> None:
    from pathlib import Path

    from polymodal.training.run_config import load_run_config

    recipe = Path(__file__).parents[2] / "configs" / "finetune_gpu.yaml"
    run = load_run_config(recipe)
    train = run.train
    assert (train.layer_decay, run.ema.decay, train.label_smoothing) == (0.75, 0.999, 0.1)
    assert (train.mixup, train.cutmix, train.mix_prob) == (0.2, 1.0, 0.5)
    assert (train.optimizer, train.precision, train.warmup_epochs) == ("adamw", "bf16-mixed", 2.0)
    default = TrainConfig()  # earlier recipes are unchanged: everything off
    assert (default.layer_decay, default.mixup, default.cutmix) == (None, 0.0, 0.0)
    assert load_run_config(None).ema is None


def test_adamw_takes_one_fused_pass_and_steps_as_the_per_tensor_loop_does() -> None:
    fused = configure(TrainConfig(lr=1e-2))["optimizer"]
    assert fused.defaults["fused"] is True
    # torch's per-tensor AdamW over copies of the same groups (decay, lr) takes the same steps.
    copies = {
        id(p): p.detach().clone().requires_grad_() for g in fused.param_groups for p in g["params"]
    }
    loop = torch.optim.AdamW(
        [
            {**g, "params": [copies[id(p)] for p in g["params"]], "fused": None, "foreach": False}
            for g in fused.param_groups
        ]
    )
    start = {key: copy.detach().clone() for key, copy in copies.items()}
    inputs = torch.randn(8, 3)
    for _ in range(3):
        for optimizer in (fused, loop):
            weight, bias = sorted(
                (p for g in optimizer.param_groups for p in g["params"]), key=lambda p: -p.ndim
            )
            (inputs @ weight.T + bias).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for group, copied in zip(fused.param_groups, loop.param_groups, strict=True):
        for param, copy in zip(group["params"], copied["params"], strict=True):
            assert not torch.equal(param, start[id(param)])  # it did step
            torch.testing.assert_close(param, copy)


def test_mixed_precision_with_clipping_keeps_torchs_own_adamw() -> None:
    # Lightning refuses to clip a fused optimizer's gradients under mixed precision.
    configured = configure(TrainConfig(precision="bf16-mixed", gradient_clip=1.0))
    assert not configured["optimizer"].defaults["fused"]
