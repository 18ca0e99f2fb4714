"""The model folder: safetensors + JSON config + preprocessing state + spec; loads without pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.errors import ModelError
from polymodal.model import build_model
from polymodal.model_folder import load_model_folder, save_model_folder
from training.conftest import tiny_config, tiny_run

FILES = ("model.safetensors", "config.json", "preprocessing.json", "spec.yaml")
# Written last, over the others (tests/test_model_folder_checksums.py).
WRITTEN = (*FILES, "checksums.json")
# What `polymodal fit` adds after saving, under the checksums (polymodal.model_card).
CARD = ("model_card.md", "model_card.json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture()
def model_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model folder that a test may break, without its
    checksums: what loading finds in each damaged file is checked, as in a folder saved before
    checksums were written (checksums themselves: tests/test_model_folder_checksums.py)."""
    folder = Path(shutil.copytree(run_dir / "model", tmp_path / "model"))
    (folder / "checksums.json").unlink()
    return folder


def _test_batch(loaded) -> dict:
    """Every test-split row of the training cohort as one batch."""
    cohort = load_cohort(loaded.spec)
    dataset = CohortDataset(cohort, loaded.preprocessor, "test")
    return collate_samples([dataset[i] for i in range(len(dataset))])


def _probabilities(model, batch: dict) -> torch.Tensor:
    model.eval()
    return model.predict(batch)["label"]["probability"]


def test_folder_holds_weights_config_preprocessing_and_spec(run_dir: Path) -> None:
    folder = run_dir / "model"
    assert sorted(p.name for p in folder.iterdir()) == sorted((*WRITTEN, *CARD))
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["core"] == "synergy" and config["model"]["dim"] == 16
    assert set(config["input_infos"]) == {"lesion", "ct", "labs", "note", "vitals"}
    assert config["target_infos"]["label"]["kind"] == "binary"
    assert config["monitor"] == "val/label/auroc"
    # The preprocessing state in the folder is the one fitted for the run.
    assert (folder / "preprocessing.json").read_text() == (
        run_dir / "preprocessing.json"
    ).read_text()


def test_loaded_model_predicts_exactly_like_the_trained_one(run_dir: Path) -> None:
    loaded = load_model_folder(run_dir / "model")
    assert not loaded.model.training
    # The model fit() held in memory at export: the best checkpoint's weights (our own file).
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    preprocessor = Preprocessor.load(run_dir / "preprocessing.json")
    trained = build_model(
        loaded.config,
        {m: preprocessor.input_info(m) for m in preprocessor.modalities},
        {t: preprocessor.target_info(t) for t in preprocessor.targets},
    )
    trained.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    batch = _test_batch(loaded)
    expected = _probabilities(trained, batch)
    assert torch.equal(_probabilities(loaded.model, batch), expected)
    assert expected.shape == (len(batch["ids"]),)


def test_save_then_load_gives_identical_predictions(run_dir: Path, tmp_path: Path) -> None:
    loaded = load_model_folder(run_dir / "model")
    # A fresh, untrained model with its own random weights: nothing can come from the run.
    torch.manual_seed(123)
    fresh = build_model(tiny_config().model, loaded.input_infos, loaded.target_infos)
    folder = save_model_folder(
        tmp_path / "saved",
        model=fresh,
        config=tiny_config().model,
        preprocessor=loaded.preprocessor,
        spec=loaded.spec,
    )
    again = load_model_folder(folder)
    batch = _test_batch(loaded)
    before = _probabilities(fresh, batch)
    assert torch.equal(_probabilities(again.model, batch), before)
    assert not torch.equal(_probabilities(loaded.model, batch), before)


def test_loading_never_unpickles(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("load_model_folder unpickled something")

    class RefusingUnpickler:
        def __init__(self, *args, **kwargs) -> None:
            refuse()

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    loaded = load_model_folder(run_dir / "model")
    assert set(loaded.input_infos) == {"lesion", "ct", "labs", "note", "vitals"}
    assert _probabilities(loaded.model, _test_batch(loaded)).isfinite().all()


@pytest.mark.parametrize("missing", FILES)
def test_missing_file_is_named(model_copy: Path, missing: str) -> None:
    (model_copy / missing).unlink()
    with pytest.raises(ModelError, match=f"{missing} is missing") as err:
        load_model_folder(model_copy)
    assert str(model_copy) in str(err.value)


def test_a_run_folder_is_not_a_model_folder(run_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"not a polymodal model folder .*OUT/model"):
        load_model_folder(run_dir)


def test_a_config_that_is_not_json_is_a_model_error(model_copy: Path) -> None:
    (model_copy / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"config\.json: not JSON .*the model folder is damaged"):
        load_model_folder(model_copy)


@pytest.mark.parametrize("key", ["model", "input_infos", "target_infos"])
def test_a_config_missing_a_key_names_the_key(model_copy: Path, key: str) -> None:
    path = model_copy / "config.json"
    payload = json.loads(path.read_text())
    del payload[key]
    path.write_text(json.dumps(payload))
    with pytest.raises(ModelError, match=rf"config\.json: the key\(s\) '{key}' are missing"):
        load_model_folder(model_copy)


def test_truncated_weights_are_a_model_error(model_copy: Path) -> None:
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model_folder(model_copy)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_a_model_error_naming_the_tensor(
    model_copy: Path, value: float
) -> None:
    state = load_file(str(model_copy / "model.safetensors"))
    name = next(k for k, v in sorted(state.items()) if v.is_floating_point() and v.numel() > 1)
    state[name].view(-1)[1] = value
    save_file(state, str(model_copy / "model.safetensors"))
    with pytest.raises(ModelError, match="hold NaN or infinite values") as err:
        load_model_folder(model_copy)
    assert name in str(err.value) and "model.safetensors" in str(err.value)


def test_saving_replaces_an_earlier_folder_whole(run_dir: Path, model_copy: Path) -> None:
    loaded = load_model_folder(model_copy)
    (model_copy / "stale.txt").write_text("from an earlier export")
    save_model_folder(
        model_copy,
        model=loaded.model,
        config=loaded.config,
        preprocessor=loaded.preprocessor,
        spec=loaded.spec,
    )
    assert sorted(p.name for p in model_copy.iterdir()) == sorted(WRITTEN)
    assert sorted(p.name for p in model_copy.parent.iterdir()) == ["model"]  # no leftovers


def test_a_failure_while_saving_leaves_the_earlier_folder_intact(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_model_folder(model_copy)
    before = {p.name: p.read_bytes() for p in model_copy.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    # The weights are written first, then the preprocessing state fails.
    monkeypatch.setattr(Preprocessor, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(
            model_copy,
            model=loaded.model,
            config=loaded.config.model_copy(update={"dim": 99}),
            preprocessor=loaded.preprocessor,
            spec=loaded.spec,
        )
    assert {p.name: p.read_bytes() for p in model_copy.iterdir()} == before
    assert sorted(p.name for p in model_copy.parent.iterdir()) == ["model"]
    load_model_folder(model_copy)


def _edit_config(folder: Path, **model_changes) -> None:
    path = folder / "config.json"
    payload = json.loads(path.read_text())
    payload["model"].update(model_changes)
    path.write_text(json.dumps(payload))


def test_weights_with_other_layers_than_the_config_are_refused(model_copy: Path) -> None:
    # Two fusion blocks in the config, one in the weights: parameters missing.
    _edit_config(model_copy, core_options={"num_latents": 4, "depth": 2})
    with pytest.raises(ModelError, match="weights do not match the model config"):
        load_model_folder(model_copy)


def test_weights_of_another_width_than_the_config_are_refused(model_copy: Path) -> None:
    _edit_config(model_copy, dim=24)
    with pytest.raises(ModelError, match="weights do not match the model config") as err:
        load_model_folder(model_copy)
    assert "model.safetensors" in str(err.value)


def test_weights_with_a_tensor_renamed_are_refused(model_copy: Path) -> None:
    state = load_file(str(model_copy / "model.safetensors"))
    name = sorted(state)[0]
    state[name + "_renamed"] = state.pop(name)
    save_file(state, str(model_copy / "model.safetensors"))
    with pytest.raises(ModelError, match="weights do not match the model config") as err:
        load_model_folder(model_copy)
    assert name in str(err.value)
