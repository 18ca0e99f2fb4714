"""fit(): the run folder, checkpoints and logs, resume, seeding, early stopping, the monitor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError
from polymodal.training.fit import fit
from polymodal.training.module import warmup_cosine

from .conftest import TINY_EPOCHS, tiny_config

MONITOR = "val/label/auroc"


def _fit(spec_path: Path, out: Path, *overrides: str, resume: bool = False):
    run = tiny_config(*overrides)
    spec = load_spec(spec_path)
    return fit(spec, out, run, resume=resume, progress=False)


def _validation_rows(out: Path) -> pd.DataFrame:
    """One row per validation epoch of metrics.csv."""
    metrics = pd.read_csv(out / "logs" / "metrics.csv")
    return metrics.dropna(subset=["val/loss"]).reset_index(drop=True)


@pytest.fixture()
def deterministic_restored(monkeypatch: pytest.MonkeyPatch):
    """`deterministic=True` switches torch globally; give the next test the usual setting back."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(False)


def test_fit_writes_model_checkpoints_and_logs(run_dir: Path) -> None:
    model = run_dir / "model"
    for name in ("model.safetensors", "config.json", "preprocessing.json", "spec.yaml"):
        assert (model / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "run.json").is_file() and (run_dir / "preprocessing.json").is_file()

    rows = _validation_rows(run_dir)
    assert rows["epoch"].tolist() == list(range(TINY_EPOCHS))
    assert rows["val/loss"].notna().all() and rows[MONITOR].between(0, 1).all()
    # The model folder records the monitored metric and its best epoch value.
    config = json.loads((model / "config.json").read_text())
    assert config["monitor"] == MONITOR
    assert config["best_score"] == pytest.approx(rows[MONITOR].max())

    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    assert {"val/loss", MONITOR, "train/loss"} <= set(accumulator.Tags()["scalars"])
    assert len(accumulator.Scalars("val/loss")) == TINY_EPOCHS


def test_learning_rate_warms_up_over_the_first_epoch(run_dir: Path, cohort_spec_path: Path) -> None:
    # 65 training rows in batches of 16: four steps; the last batch of one sample is dropped
    # (BatchNorm cannot train on a single sample with test_resnet's 1×1 feature map).
    assert len(load_cohort(load_spec(cohort_spec_path)).indices("train")) == 65
    steps = 4
    rows = _validation_rows(run_dir)
    assert rows["step"].tolist() == [steps - 1, 2 * steps - 1]
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    lrs = metrics.dropna(subset=["lr-AdamW/pg1"])
    peak = tiny_config().train.lr
    expected = [
        peak * warmup_cosine(s, warmup_steps=steps, total_steps=TINY_EPOCHS * steps, min_ratio=0.01)
        for s in (0, steps)
    ]
    assert lrs["lr-AdamW/pg1"].tolist() == pytest.approx(expected)
    assert expected[0] == pytest.approx(peak / steps)


def test_resume_continues_from_the_last_checkpoint_with_the_saved_preprocessing(
    cohort_spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="no checkpoint at .*last.ckpt; starting from scratch"):
        first = _fit(cohort_spec_path, out, "train.max_epochs=1", resume=True)
    assert first.epochs_run == 1
    epoch0 = _validation_rows(out)
    state = (out / "preprocessing.json").read_text()

    def refit(*args, **kwargs):
        raise AssertionError("resume fitted the preprocessing again")

    monkeypatch.setattr(Preprocessor, "fit", refit)
    resumed = _fit(cohort_spec_path, out, "train.max_epochs=2", resume=True)
    assert resumed.epochs_run == 2
    rows = _validation_rows(out)
    assert rows["epoch"].tolist() == [0, 1]
    # Epoch 0 is the first run's own row (kept), epoch 1 continues its step count.
    pd.testing.assert_frame_equal(rows.iloc[:1], epoch0)
    assert rows["step"].tolist() == [3, 7]
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 8
    assert (out / "preprocessing.json").read_text() == state
    assert (out / "model" / "preprocessing.json").read_text() == state


def test_a_fresh_run_into_an_earlier_runs_folder_replaces_its_metrics_and_checkpoints(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    _fit(cohort_spec_path, out, "train.max_epochs=2")
    with pytest.warns(UserWarning, match="holds an earlier run: its metrics and checkpoints"):
        _fit(cohort_spec_path, out, "train.max_epochs=1")
    # One run's rows, not the first run's two epochs followed by the second's one.
    assert _validation_rows(out)["epoch"].tolist() == [0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_frozen_cached_backbone_keeps_its_features_on_disk_for_the_next_run(
    cohort_spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polymodal.encoders.image import FrozenFeatureCache

    frozen = (
        "model.encoders.lesion={name: image_timm, options: {backbone: test_resnet, "
        "freeze: all, feature_cache: true}}"
    )
    # The in-model cache is the path without the feature store (tests/test_frozen_features.py).
    settings = (
        frozen,
        "train.max_epochs=1",
        f"train.cache_dir={tmp_path / 'cache'}",
        "train.frozen_feature_store=false",
    )
    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})
    _fit(cohort_spec_path, tmp_path / "first", *settings)
    files = list((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert files  # one per lesion image the first run saw

    monkeypatch.setattr(FrozenFeatureCache, "_caches", {})  # as in a new process
    _fit(cohort_spec_path, tmp_path / "second", *settings)
    # The training run's cache (the one with a folder); evaluation passes after training
    # (model card) use the model as loaded, without the folder.
    (cache,) = [c for c in FrozenFeatureCache._caches.values() if c.folder is not None]
    assert cache.disk_hits > 0 and cache.misses == 0  # the backbone never ran
    assert len(list((tmp_path / "cache" / "features").rglob("*.safetensors"))) == len(files)


def test_the_same_seed_gives_the_same_weights(
    cohort_spec_path: Path, tmp_path: Path, deterministic_restored
) -> None:
    settings = ("train.max_epochs=1", "train.deterministic=true")

    def weights(seed: int, name: str) -> dict[str, torch.Tensor]:
        result = _fit(cohort_spec_path, tmp_path / name, *settings, f"train.seed={seed}")
        return load_file(str(result.model_dir / "model.safetensors"))

    first, again, other = weights(3, "a"), weights(3, "b"), weights(4, "c")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_early_stopping_ends_before_max_epochs_when_nothing_improves(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = _fit(
        cohort_spec_path,
        out,
        "train.max_epochs=6",
        "train.lr=1e-12",
        "train.warmup_epochs=0",
        "train.early_stopping_patience=1",
    )
    assert result.epochs_run < 6
    auroc = _validation_rows(out)[MONITOR].tolist()
    assert len(auroc) == result.epochs_run
    # Patience 1: the last epoch did not beat the best one before it.
    assert auroc[-1] <= max(auroc[:-1])


@pytest.mark.parametrize("patience", ["1", "null"])
def test_unknown_monitor_lists_the_logged_metrics(
    cohort_spec_path: Path, tmp_path: Path, patience: str
) -> None:
    # EarlyStopping (patience 1) and ModelCheckpoint (no early stopping) both check the name.
    with pytest.raises(PolymodalError) as err:
        _fit(
            cohort_spec_path,
            tmp_path / "run",
            "train.max_epochs=1",
            "train.monitor=val/label/aucroc",
            f"train.early_stopping_patience={patience}",
        )
    message = str(err.value)
    assert "'val/label/aucroc' was not logged" in message
    assert "val/label/auroc" in message and "val/loss" in message
    assert "Set train.monitor to one of them" in message


def test_mixed_precision_trains_and_exports_float32_weights(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = _fit(cohort_spec_path, out, "train.max_epochs=1", "train.precision=bf16-mixed")
    assert result.epochs_run == 1
    assert _validation_rows(out)["val/loss"].notna().all()
    weights = load_file(str(result.model_dir / "model.safetensors"))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_no_validation_rows_is_a_clear_error(cohort_spec_path: Path, tmp_path: Path) -> None:
    cohort_dir = Path(shutil.copytree(cohort_spec_path.parent, tmp_path / "cohort"))
    manifest = pd.read_csv(cohort_dir / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["split"] = manifest["split"].replace("val", "train")
    manifest.to_csv(cohort_dir / "manifest.csv", index=False)
    with pytest.raises(PolymodalError, match="the validation split has no rows"):
        _fit(cohort_dir / "spec.yaml", tmp_path / "run", "train.max_epochs=1")
