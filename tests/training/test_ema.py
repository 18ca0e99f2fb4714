"""train.ema_decay: validation, selection and export use the moving average; resume is exact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polymodal.training.ema import EMAUpdate

from .test_resume import (  # noqa: F401
    _fit,
    _fit_killed_in_the_second_epoch,
    _validation_metrics,
    deterministic_restored,
)

EMA = ("train.ema_decay=0.9",)
# The rest of the fine-tuning recipe (configs/finetune_gpu.yaml), which must resume as exactly.
RECIPE = (
    "train.layer_decay=0.75",
    "train.label_smoothing=0.1",
    "train.mixup=0.2",
    "train.cutmix=1.0",
    "train.mix_prob=0.5",
)


def _checkpoint(run: Path, name: str) -> dict:
    return torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)


def test_the_update_warms_up_and_is_a_lerp() -> None:
    update = EMAUpdate(0.999)
    assert update.rate(0) == pytest.approx(0.1)  # the first updates follow the weights
    assert update.rate(90) == pytest.approx(0.91)
    assert update.rate(100_000) == 0.999
    average, current = torch.tensor([1.0, 3.0]), torch.tensor([3.0, 3.0])
    update([average], [current], torch.tensor(0))
    # 1 + 0.9·(3 − 1); a value equal to its target (a frozen weight) stays bit for bit.
    assert average.tolist() == pytest.approx([2.8, 3.0])
    assert average[1].item() == 3.0
    counter = torch.tensor(5)
    update([counter], [torch.tensor(7)], torch.tensor(3))
    assert counter.item() == 7  # integer buffers (BatchNorm's batch count) are copied


def test_the_exported_model_holds_the_average_not_the_raw_weights(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    result = _fit(cohort_spec_path, tmp_path / "run", "train.max_epochs=2", *EMA)
    best = _checkpoint(tmp_path / "run", "best.ckpt")
    average, raw = best["state_dict"], best["current_model_state"]
    exported = load_file(str(result.model_dir / "model.safetensors"))
    trained = [k for k in exported if not torch.equal(average[f"model.{k}"], raw[f"model.{k}"])]
    assert trained, "the average should differ from the raw weights after training"
    assert all(torch.equal(exported[k], average[f"model.{k}"]) for k in exported)
    # Validation ran on the average: the logged val/loss is the average's.
    assert best["averaging_state"]["n_averaged"] > 0


def test_resume_of_the_fine_tuning_recipe_gives_the_uninterrupted_runs_average_and_weights(
    cohort_spec_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deterministic_restored,  # noqa: F811
) -> None:
    settings = ("train.max_epochs=2", *EMA, *RECIPE)
    whole = _fit(cohort_spec_path, tmp_path / "whole", *settings)
    out = tmp_path / "killed"
    _fit_killed_in_the_second_epoch(cohort_spec_path, out, monkeypatch, *settings)
    resumed = _fit(cohort_spec_path, out, *settings, resume=True)
    for name in ("last.ckpt", "best.ckpt"):
        first, again = _checkpoint(tmp_path / "whole", name), _checkpoint(out, name)
        for part in ("state_dict", "current_model_state", "averaging_state"):
            differing = [k for k in first[part] if not torch.equal(first[part][k], again[part][k])]
            assert differing == [], (name, part)
    exported = [load_file(str(r.model_dir / "model.safetensors")) for r in (whole, resumed)]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])
    pd.testing.assert_frame_equal(_validation_metrics(out), _validation_metrics(tmp_path / "whole"))


def test_a_frozen_backbones_weights_and_statistics_pass_through_the_average_unchanged(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    frozen = (
        "model.encoders.lesion={name: image_timm, options: {backbone: test_resnet, freeze: all}}"
    )
    result = _fit(cohort_spec_path, tmp_path / "run", "train.max_epochs=1", frozen, *EMA)
    raw = _checkpoint(tmp_path / "run", "best.ckpt")["current_model_state"]
    exported = load_file(str(result.model_dir / "model.safetensors"))
    backbone = [k for k in exported if k.startswith("encoders.lesion.backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(exported[k], raw[f"model.{k}"]) for k in backbone)
    # The trained parts are averaged, so they differ from the raw weights.
    assert not torch.equal(
        exported["heads.label.proj.weight"], raw["model.heads.label.proj.weight"]
    )
