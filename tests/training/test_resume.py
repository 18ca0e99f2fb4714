"""``fit --resume``: last.ckpt every epoch, the same result as an uninterrupted run, same config."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from polymodal.cli import main
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError
from polymodal.training.epoch_seeds import EpochShuffle
from polymodal.training.fit import fit
from polymodal.training.module import PolymodalModule
from polymodal.training.resume import MAY_CHANGE_ON_RESUME, config_differences
from polymodal.training.sampling import EpochWeightedSampler
from training.killed_fit import kill_in_the_second_epoch

from .conftest import TINY_MODEL, tiny_config

# Deterministic kernels; a resumed run must match bit for bit.
EXACT = ("train.deterministic=true",)


def _fit(spec_path: Path, out: Path, *overrides: str, resume: bool = False):
    run = tiny_config(*EXACT, *overrides)
    return fit(
        load_spec(spec_path),
        out,
        run,
        resume=resume,
        progress=False,
    )


@pytest.fixture()
def deterministic_restored(monkeypatch: pytest.MonkeyPatch):
    """`deterministic=True` switches torch globally; give the next test the usual setting back."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(False)


def _validation_metrics(out: Path) -> pd.DataFrame:
    """Per-epoch validation metrics (epoch, step and every val/ column) from metrics.csv."""
    metrics = pd.read_csv(out / "logs" / "metrics.csv").dropna(subset=["val/loss"])
    scores = sorted(c for c in metrics.columns if c.startswith("val/") and "seconds" not in c)
    return metrics[["epoch", "step", *scores]].reset_index(drop=True)


def _fit_killed_in_the_second_epoch(
    spec_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str
) -> None:
    """A fit into ``out`` that dies at the second batch of its second epoch."""
    kill_in_the_second_epoch(monkeypatch, lambda: _fit(spec_path, out, *overrides))


@pytest.fixture(scope="module")
def augmented_spec_path(tmp_path_factory: pytest.TempPathFactory, cohort_spec_path: Path) -> Path:
    """The tiny cohort with random augmentation of its lesion images."""
    folder = tmp_path_factory.getbasetemp() / "resume_augmented_cohort"
    if not folder.is_dir():
        shutil.copytree(cohort_spec_path.parent, folder)
        spec = yaml.safe_load((folder / "spec.yaml").read_text())
        spec["modalities"]["lesion"]["augment"] = True
        (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder / "spec.yaml"


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_after_a_kill_gives_the_uninterrupted_runs_weights_and_metrics(
    augmented_spec_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deterministic_restored,
    workers: int,
) -> None:
    # Shuffling, image augmentation (in the loader's worker process with workers=1), modality
    # dropout (0.25) and dropout: all must be drawn again as the uninterrupted run drew them.
    settings = ("train.max_epochs=2", f"train.num_workers={workers}")
    whole = _fit(augmented_spec_path, tmp_path / "whole", *settings)

    out = tmp_path / "killed"
    _fit_killed_in_the_second_epoch(augmented_spec_path, out, monkeypatch, *settings)
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0  # the end of the first epoch: what a kill leaves behind

    resumed = _fit(augmented_spec_path, out, *settings, resume=True)
    assert resumed.epochs_run == whole.epochs_run == 2
    # The weights of the last epoch (last.ckpt) and of the exported best one.
    for name in ("last.ckpt", "best.ckpt"):
        first, again = (
            torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
            for run in (tmp_path / "whole", out)
        )
        differing = [
            k
            for k in first["state_dict"]
            if not torch.equal(first["state_dict"][k], again["state_dict"][k])
        ]
        assert differing == [], name
    exported = [load_file(str(r.model_dir / "model.safetensors")) for r in (whole, resumed)]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])
    pd.testing.assert_frame_equal(_validation_metrics(out), _validation_metrics(tmp_path / "whole"))
    assert resumed.best_score == whole.best_score


def test_last_checkpoint_is_written_after_every_epoch_even_without_improvement(
    cohort_spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def constant_auroc(self) -> None:
        self.log("val/label/auroc", 0.5)  # never improves after the first epoch

    monkeypatch.setattr(PolymodalModule, "on_validation_epoch_end", constant_auroc)
    out = tmp_path / "run"
    _fit(cohort_spec_path, out, "train.max_epochs=2")
    checkpoints = out / "checkpoints"
    best = torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 0 and last["epoch"] == 1
    # last.ckpt still knows which checkpoint is the best one.
    states = [s for s in last["callbacks"].values() if s.get("monitor") == "val/label/auroc"]
    assert [Path(s["best_model_path"]).name for s in states] == ["best.ckpt"]


@pytest.fixture()
def one_epoch_run(tmp_path_factory: pytest.TempPathFactory, cohort_spec_path: Path) -> Path:
    """A finished one-epoch run (shared by this module's tests; copy it before changing it)."""
    out = tmp_path_factory.getbasetemp() / "resume_one_epoch_run"
    if not (out / "model" / "config.json").is_file():
        _fit(cohort_spec_path, out, "train.max_epochs=1")
    return out


def test_resume_with_another_model_width_is_refused_naming_the_key(
    one_epoch_run: Path, cohort_spec_path: Path, tmp_path: Path
) -> None:
    out = Path(shutil.copytree(one_epoch_run, tmp_path / "run"))
    before = (out / "run.json").read_text()
    with pytest.raises(PolymodalError) as err:
        _fit(
            cohort_spec_path,
            out,
            "train.max_epochs=2",
            "model.dim=32",
            "train.lr=0.01",
            resume=True,
        )
    message = str(err.value)
    assert "model.dim: 16 → 32" in message and "train.lr: 0.001 → 0.01" in message
    assert "max_epochs" not in message.split("Resume with")[0]  # allowed to change
    assert (out / "run.json").read_text() == before  # refused before anything changed


def test_resume_with_another_model_width_exits_2_from_the_command_line(
    one_epoch_run: Path,
    cohort_spec_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = Path(shutil.copytree(one_epoch_run, tmp_path / "run"))
    settings = [arg for item in [*TINY_MODEL, *EXACT, "model.dim=24"] for arg in ("--set", item)]
    monkeypatch.setattr(
        sys, "argv", ["polymodal", "fit", str(cohort_spec_path), "--out", str(out), "--resume"]
    )
    sys.argv += settings
    with pytest.raises(SystemExit) as exit_info:
        main()
    printed = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "model.dim: 16 → 24" in printed.out + printed.err
    assert "Traceback" not in printed.out + printed.err


def test_config_differences_ignore_the_keys_that_may_change_and_name_the_rest() -> None:
    saved = {"model": {"dim": 16, "encoders": {"a": {"depth": 1}}}, "train": {"max_epochs": 2}}
    new = {
        "model": {"dim": 16, "encoders": {"a": {"depth": 2}}},
        "train": {"max_epochs": 9, "num_workers": 4},
        "distill": {"teacher": "t"},
    }
    assert config_differences(saved, new) == [
        'distill.teacher: (absent) → "t"',
        "model.encoders.a.depth: 1 → 2",
    ]
    assert {"train.max_epochs", "train.num_workers"} <= MAY_CHANGE_ON_RESUME


def test_a_key_added_since_the_run_was_saved_counts_as_its_default() -> None:
    """A run saved before ``train.layer_decay`` existed resumes when the key keeps its default,
    and is refused when the new config sets it."""
    saved = {"train": {"lr": 0.001}}
    assert config_differences(saved, {"train": {"lr": 0.001, "layer_decay": None}}) == []
    assert config_differences(saved, {"train": {"lr": 0.001, "layer_decay": 0.75}}) == [
        "train.layer_decay: null → 0.75"
    ]


@pytest.mark.parametrize("kind", ["shuffle", "weighted"])
def test_an_epochs_draws_depend_on_seed_and_epoch_only(kind: str) -> None:
    def sampler():
        if kind == "shuffle":
            return EpochShuffle(50, seed=7)
        return EpochWeightedSampler(torch.linspace(0.1, 1.0, 50, dtype=torch.float64), seed=7)

    uninterrupted = sampler()
    draws = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        draws.append(list(uninterrupted))
    resumed = sampler()  # a new process that starts with epoch 2
    resumed.set_epoch(2)
    assert list(resumed) == draws[2]
    assert draws[0] != draws[1] != draws[2]
