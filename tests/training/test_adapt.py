"""``polymodal adapt``: a trained model fine-tuned to a new task, with a choice of what trains."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from polymodal.cli import main
from polymodal.data.spec import load_spec
from polymodal.errors import ModelError
from polymodal.model_folder import load_model_folder
from polymodal.training.adapt import adapt
from polymodal.training.config import TrainConfig
from polymodal.training.run_config import RunConfig
from training.conftest import tiny_cohort, tiny_run

NEW_TASK = {"older": {"kind": "binary", "column": "older", "prompts": ["Is the patient over 65?"]}}


def new_task_spec(base: Path, folder: Path, *, change: dict | None = None) -> Path:
    """A copy of the tiny cohort whose only target is a new task (age over 65)."""
    source = tiny_cohort(base).parent
    shutil.copytree(source, folder)
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    age = pd.to_numeric(manifest["age"], errors="coerce")
    manifest["older"] = ["" if pd.isna(a) else str(int(a > 65)) for a in age]
    manifest.to_csv(folder / "manifest.csv", index=False)
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    spec["targets"] = NEW_TASK
    for modality, update in (change or {}).items():
        spec["modalities"][modality].update(update)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder / "spec.yaml"


def _state(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


@pytest.mark.parametrize("train", ["head", "core"])
def test_adapt_trains_what_it_is_told_and_predicts_the_new_task(tmp_path: Path, train: str) -> None:
    base = tmp_path.parent.parent
    trained = load_model_folder(tiny_run(base) / "model").model
    spec = load_spec(new_task_spec(base, tmp_path / "cohort"))
    result, started = adapt(
        tiny_run(base) / "model",
        spec,
        tmp_path / "run",
        RunConfig(train=TrainConfig(max_epochs=2, batch_size=16, early_stopping_patience=None)),
        train=train,
        progress=False,
    )
    assert started.new == ["heads.older.proj.weight", "heads.older.proj.bias"]
    adapted = load_model_folder(result.model_dir)
    assert list(adapted.target_infos) == ["older"]
    # Frozen encoders come out bit-identical to the trained ones (batch-norm statistics too).
    for key, value in _state(trained, "encoders.").items():
        assert torch.equal(adapted.model.state_dict()[key], value), key
    core_same = all(
        torch.equal(adapted.model.state_dict()[k], v) for k, v in _state(trained, "core.").items()
    )
    assert core_same == (train == "head")
    assert not any(n.startswith("encoders.") for n in started.trainable)


def test_a_spec_with_other_modality_settings_is_refused(tmp_path: Path) -> None:
    base = tmp_path.parent.parent
    spec = load_spec(
        new_task_spec(base, tmp_path / "cohort", change={"lesion": {"size": [48, 48]}})
    )
    with pytest.raises(ModelError, match=r"modality 'lesion' differs .* \['size'\]"):
        adapt(
            tiny_run(base) / "model",
            spec,
            tmp_path / "run",
            RunConfig(train=TrainConfig(max_epochs=1)),
            progress=False,
        )


def test_cli_refuses_model_overrides_and_unknown_train_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    base = tmp_path.parent.parent
    model_dir = str(tiny_run(base) / "model")
    spec = str(new_task_spec(base, tmp_path / "cohort"))
    for extra, message in (
        (["--set", "model.dim=8"], "--set accepts train.* and training plugin sections"),
        (["--train", "encoders"], "--train must be one of head, core, all"),
    ):
        argv = ["polymodal", "adapt", model_dir, spec, "-o", str(tmp_path / "r"), *extra]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        assert exit_info.value.code == 2 and message in captured.out + captured.err


def test_frozen_parts_stay_frozen_however_modes_are_set(tmp_path: Path) -> None:
    """A trainer may set modes submodule by submodule (Lightning restores flags by assignment):
    the frozen encoders still compute in eval mode, so their BatchNorm statistics never move."""
    from polymodal.data.collate import collate_samples
    from polymodal.data.dataset import CohortDataset
    from polymodal.data.manifest import load_cohort
    from polymodal.training.adapt import warm_start

    loaded = load_model_folder(tiny_run(tmp_path.parent.parent) / "model")
    model = load_model_folder(tiny_run(tmp_path.parent.parent) / "model").model
    warm_start(model, loaded.model, "core")
    encoders = _state(model, "encoders.")
    for module in model.modules():
        module.train()  # each module's own train(), not its owner's
    dataset = CohortDataset(load_cohort(loaded.spec), loaded.preprocessor, "train")
    model(collate_samples([dataset[i] for i in range(16)]))
    changed = [k for k, v in encoders.items() if not torch.equal(model.state_dict()[k], v)]
    assert changed == []
    assert model.core.training  # what trains still trains
