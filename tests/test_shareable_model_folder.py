"""A model folder is safe to share: no word seen in fewer than `min_count` patients' notes and
no absolute path of the training machine in any of its files; copied elsewhere, it still loads
and predicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from training.conftest import tiny_config

# A name and a record number in one patient's notes (two of that patient's rows).
PLANTED = "Seen with Zebulon Quarterfield, MRN-4417."
RARE_WORDS = ("zebulon", "quarterfield", "4417")


def _plant(spec_path: Path) -> str:
    """Add PLANTED to the notes of one training patient's rows; returns that patient."""
    manifest = spec_path.parent / "manifest.csv"
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    train = table[(table["split"] == "train") & (table["note"] != "")]
    patient = train["patient_id"].iloc[0]
    rows = train.index[:2]
    table.loc[rows, "patient_id"] = patient  # the same patient twice: still one patient
    table.loc[rows, "note"] = table.loc[rows, "note"] + " " + PLANTED
    table.to_csv(manifest, index=False)
    return patient


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cohort folder, run folder) of a 1-epoch fit on a 40-row cohort with a planted name."""
    base = tmp_path_factory.mktemp("shareable")
    spec_path = make_demo_cohort(base / "cohort", n=40, seed=0, image_size=32, volume_size=16)
    _plant(spec_path)
    fit(load_spec(spec_path), base / "run", tiny_config("train.max_epochs=1"), progress=False)
    return base / "cohort", base / "run"


def _bytes_of_every_file(folder: Path) -> dict[Path, bytes]:
    files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert files
    return files


def test_the_planted_words_are_fitted_with_min_count_1(trained: tuple[Path, Path]) -> None:
    # What the test below would catch: the same cohort keeps the name without the threshold.
    cohort_dir, _ = trained
    spec = load_spec(cohort_dir / "spec.yaml")
    note = spec.modalities["note"].model_copy(update={"min_count": 1})
    spec = spec.model_copy(update={"modalities": {**spec.modalities, "note": note}})
    state = Preprocessor.fit(load_cohort(spec)).to_dict()["modalities"]["note"]["state"]
    assert all(word in state["tokenizer_json"] for word in RARE_WORDS)


def test_no_word_of_a_single_patient_is_in_the_model_folder(trained: tuple[Path, Path]) -> None:
    _, run = trained
    for path, content in _bytes_of_every_file(run / "model").items():
        lowered = content.lower()
        for word in RARE_WORDS:
            assert word.encode() not in lowered, f"{word} in {path.name}"
    # Words of many patients' notes are kept.
    loaded = Predictor.load(run / "model").loaded
    tokenizer_json = loaded.preprocessor.to_dict()["modalities"]["note"]["state"]["tokenizer_json"]
    assert '"fever"' in tokenizer_json and '"history"' in tokenizer_json


def test_no_absolute_path_of_the_training_machine_is_in_the_folder(
    trained: tuple[Path, Path],
) -> None:
    cohort_dir, run = trained
    # Stored relative to the model folder: found again while the run stays beside its cohort.
    assert Predictor.load(run / "model").loaded.spec.base_dir == cohort_dir.resolve()
    machine_paths = {str(cohort_dir.parent), str(cohort_dir.parent.resolve())}
    for path, content in _bytes_of_every_file(run / "model").items():
        for machine_path in machine_paths:
            assert machine_path.encode() not in content, f"{machine_path} in {path.name}"


def test_a_moved_run_folder_loads_and_predicts(trained: tuple[Path, Path], tmp_path: Path) -> None:
    cohort_dir, run = trained
    moved = Path(shutil.copytree(run, tmp_path / "elsewhere" / "run"))
    predictor = Predictor.load(moved / "model")
    # Its spec no longer finds the training cohort beside it: new rows are given explicitly.
    assert predictor.loaded.spec.base_dir == (moved / "model")
    table = predictor.predict_manifest(cohort_dir / "manifest.csv")
    assert len(table) == 40 and table.filter(like="prob").notna().all().all()
