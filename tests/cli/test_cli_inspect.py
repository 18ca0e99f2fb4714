"""``polymodal inspect MODEL``: what a model folder holds, as text and as JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.manifest import load_cohort
from polymodal.model_folder import load_model_folder, save_model_folder
from training.conftest import COHORT_ROWS, tiny_run

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp()) / "model"


def _inspect_json(folder: Path, *args: str) -> dict:
    result = runner.invoke(app, ["inspect", str(folder), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_lists_modalities_targets_state_sizes_and_checksums(model_dir: Path) -> None:
    inv = _inspect_json(model_dir)
    assert inv["checksums"] == "verified" and inv["core"]["core"] == "synergy"
    assert set(inv["modalities"]) == {"lesion", "ct", "labs", "note", "vitals"}
    note = inv["modalities"]["note"]
    assert note["kind"] == "text" and note["encoder"] == "text_transformer"
    assert note["columns"] == ["note"] and note["state"]["word_vocabulary"] > 3
    assert "words" not in note  # only with --words
    labs = inv["modalities"]["labs"]["state"]
    assert labs["category_vocabularies"] == {"sex": 2, "smoking": 3, "site": 4}
    assert inv["targets"]["label"] == {"kind": "binary", "classes": ["0", "1"], "column": "label"}
    assert set(inv["files"]) == {
        "model.safetensors",
        "config.json",
        "preprocessing.json",
        "spec.yaml",
        "checksums.json",
        "model_card.md",
        "model_card.json",
    }


def test_words_lists_the_vocabulary_in_id_order(model_dir: Path) -> None:
    note = _inspect_json(model_dir, "--words")["modalities"]["note"]
    assert note["words"][:3] == ["[PAD]", "[UNK]", "[CLS]"]
    assert len(note["words"]) == note["state"]["word_vocabulary"]


def test_text_output_names_what_a_reviewer_needs(model_dir: Path) -> None:
    result = runner.invoke(app, ["inspect", str(model_dir)])
    assert result.exit_code == 0, result.output
    for expected in (
        "checksums: verified",
        "note: text from note; encoder text_transformer",
        "word_vocabulary:",
        "label: binary from label; classes 0, 1",
        "training cohort:",
    ):
        assert expected in result.output, expected


def test_the_training_cohort_summary_counts_rows_patients_and_labels(
    model_dir: Path, tmp_path: Path
) -> None:
    loaded = load_model_folder(model_dir)
    cohort = load_cohort(loaded.spec)
    folder = save_model_folder(
        tmp_path / "model",
        model=loaded.model,
        config=loaded.config,
        preprocessor=loaded.preprocessor,
        spec=loaded.spec,
        cohort=cohort,
    )
    summary = _inspect_json(folder)["training_cohort"]
    assert sum(summary["rows"].values()) == COHORT_ROWS
    assert summary["rows"]["train"] == len(cohort.indices("train"))
    assert summary["patients"]["train"] <= summary["rows"]["train"]
    train_labels = summary["labels"]["label"]["train"]
    assert (
        set(train_labels) == {"0", "1"} and sum(train_labels.values()) <= summary["rows"]["train"]
    )
    text = runner.invoke(app, ["inspect", str(folder)]).output
    assert f"train: {summary['rows']['train']} rows" in text and "label in train: 0" in text


def test_a_changed_file_shows_as_failed_checksums(model_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(model_dir, tmp_path / "model"))
    (folder / "spec.yaml").write_text((folder / "spec.yaml").read_text() + "\n# edited\n")
    assert _inspect_json(folder)["checksums"].startswith("FAILED: ")


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code != 0
    assert "not a polymodal model folder (config.json is missing)" in str(result.exception)
