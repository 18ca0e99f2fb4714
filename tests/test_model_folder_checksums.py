"""checksums.json: the sha256 of every file of a model folder, written on saving and verified
on loading; a folder saved before checksums existed still loads, with a warning."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from polymodal.checksums import CHECKSUMS, file_sha256
from polymodal.errors import ModelError
from polymodal.model_folder import load_model_folder
from training.conftest import tiny_run

FILES = ("model.safetensors", "config.json", "preprocessing.json", "spec.yaml")


@pytest.fixture()
def model_copy(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    run = tiny_run(tmp_path_factory.getbasetemp())
    return Path(shutil.copytree(run / "model", tmp_path / "model"))


def test_every_file_is_listed_with_its_sha256(model_copy: Path) -> None:
    listing = json.loads((model_copy / CHECKSUMS).read_text())
    assert listing["algorithm"] == "sha256" and sorted(listing["files"]) == sorted(
        (*FILES, "model_card.md", "model_card.json")  # the card fit adds (polymodal.model_card)
    )
    for name, digest in listing["files"].items():
        assert digest == file_sha256(model_copy / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified folder loads without a warning
        load_model_folder(model_copy)


@pytest.mark.parametrize("name", FILES)
def test_one_changed_byte_is_a_clear_model_error(model_copy: Path, name: str) -> None:
    path = model_copy / name
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))
    with pytest.raises(ModelError, match=rf"{name}: its content does not match its sha256") as err:
        load_model_folder(model_copy)
    assert str(path) in str(err.value) and "Copy the model folder again" in str(err.value)


def test_a_folder_without_checksums_loads_with_a_warning(model_copy: Path) -> None:
    (model_copy / CHECKSUMS).unlink()
    with pytest.warns(UserWarning, match=r"no checksums\.json .*cannot be verified"):
        loaded = load_model_folder(model_copy)
    assert loaded.model is not None


def test_a_listed_file_that_is_gone_is_named(model_copy: Path) -> None:
    listing = json.loads((model_copy / CHECKSUMS).read_text())
    listing["files"]["extra.json"] = "0" * 64
    (model_copy / CHECKSUMS).write_text(json.dumps(listing))
    with pytest.raises(ModelError, match=r"extra\.json: missing, although checksums\.json"):
        load_model_folder(model_copy)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd"])
def test_a_listed_path_outside_the_folder_is_refused(model_copy: Path, name: str) -> None:
    listing = json.loads((model_copy / CHECKSUMS).read_text())
    listing["files"][name] = "0" * 64
    (model_copy / CHECKSUMS).write_text(json.dumps(listing))
    with pytest.raises(ModelError, match="not a file inside the model folder"):
        load_model_folder(model_copy)


def test_a_damaged_checksum_list_is_a_model_error(model_copy: Path) -> None:
    (model_copy / CHECKSUMS).write_text("{not json")
    with pytest.raises(ModelError, match=r"checksums\.json: not a valid checksum list"):
        load_model_folder(model_copy)
