"""Paths in a model folder's files: relative to the folder on saving, found again on loading."""

from __future__ import annotations

from pathlib import Path

from polymodal.data.spec import parse_spec
from polymodal.portable_paths import (
    portable_config,
    portable_preprocessing,
    portable_spec,
    relative_path,
    resolve_config_paths,
    resolve_preprocessing_paths,
    resolve_stored_path,
)


def test_a_relative_path_never_spells_out_the_root() -> None:
    assert relative_path("/data/cohort", Path("/data/runs/a/model")) == "../../../cohort"
    assert relative_path("/srv/data/cohort", Path("/home/alice/runs/model")) is None


def test_config_paths_round_trip_through_the_folder(tmp_path: Path) -> None:
    model, tokenizer = tmp_path / "run" / "model", tmp_path / "tokenizers" / "bert"
    tokenizer.mkdir(parents=True)
    payload = {
        "model": {"encoders": {"note": {"name": None, "options": {"model_path": str(tokenizer)}}}},
        "input_infos": {"note": {"kind": "text", "tokenizer": str(tokenizer)}},
        "target_infos": {"y": {"classes": ["/", "b"]}},  # data, never rewritten
        "spec_base_dir": str(tmp_path / "cohort"),
        "train": {"cache_dir": str(tmp_path / "cache"), "lr": 0.1},
        "distill": {"teacher": "/srv/teacher/model"},  # nothing in common but the root
    }
    saved = portable_config(payload, model)
    assert saved["spec_base_dir"] == "../../cohort"
    assert saved["input_infos"]["note"]["tokenizer"] == "../../tokenizers/bert"
    assert saved["model"]["encoders"]["note"]["options"]["model_path"] == "../../tokenizers/bert"
    assert saved["train"] == {"cache_dir": "../../cache", "lr": 0.1}
    assert saved["distill"] == {"teacher": None}
    assert saved["target_infos"] == payload["target_infos"]
    assert str(tmp_path) not in str(saved)
    resolve_config_paths(saved, model)
    assert saved["input_infos"]["note"]["tokenizer"] == str(tokenizer.resolve())
    assert saved["model"]["encoders"]["note"]["options"]["model_path"] == str(tokenizer.resolve())
    assert resolve_stored_path(saved["spec_base_dir"], model) == (tmp_path / "cohort").resolve()


def test_an_earlier_folders_absolute_paths_still_resolve(tmp_path: Path) -> None:
    assert resolve_stored_path(str(tmp_path), tmp_path / "model") == tmp_path
    info = {"input_infos": {"note": {"tokenizer": "package:all-MiniLM-L6-v2"}}}
    resolve_config_paths(info, tmp_path)
    assert info["input_infos"]["note"]["tokenizer"] == "package:all-MiniLM-L6-v2"


def test_preprocessing_tokenizer_folders_round_trip(tmp_path: Path) -> None:
    model, tokenizer = tmp_path / "run" / "model", tmp_path / "tok"
    tokenizer.mkdir()
    data = {
        "modalities": {
            "note": {
                "config": {"kind": "text", "tokenizer": str(tokenizer), "missing_values": ["/"]},
                "state": {"tokenizer_folder": str(tokenizer), "vocab_size": 6},
            }
        }
    }
    saved = portable_preprocessing(data, model)
    assert saved["modalities"]["note"]["state"]["tokenizer_folder"] == "../../tok"
    assert saved["modalities"]["note"]["config"]["missing_values"] == ["/"]
    assert str(tmp_path) not in str(saved)
    loaded = resolve_preprocessing_paths(saved, model)
    assert loaded["modalities"]["note"]["state"]["tokenizer_folder"] == str(tokenizer.resolve())


def test_the_saved_spec_names_its_manifest_relative_to_its_folder(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "manifest": str(tmp_path / "tables" / "manifest.csv"),
            "id_column": "id",
            "split": {"column": "split"},
            "targets": {"y": {"kind": "binary", "column": "y"}},
            "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
        },
        base_dir=tmp_path / "specs",
    )
    data = portable_spec(spec)
    assert data["manifest"] == "../tables/manifest.csv"
    assert (
        parse_spec(data, base_dir=tmp_path / "specs").manifest_path
        == (tmp_path / "tables" / "manifest.csv").resolve()
    )
