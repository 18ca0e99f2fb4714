"""Training and evaluation open only the files of the modalities a model reads."""

from __future__ import annotations

import shutil
from pathlib import Path

from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.evaluation.evaluate import evaluate_model
from polymodal.predictor import Predictor
from polymodal.training.fit import fit
from training.conftest import tiny_cohort, tiny_config


def test_a_labs_only_model_never_opens_the_volumes(tmp_path: Path) -> None:
    cohort_dir = tmp_path / "cohort"
    shutil.copytree(tiny_cohort(tmp_path.parent.parent).parent, cohort_dir)
    # Every CT file is gone: a model that read them would record 100 unreadable files.
    shutil.rmtree(cohort_dir / "volumes")
    spec = load_spec(cohort_dir / "spec.yaml")
    run = tiny_config(
        "model.core=single", "model.core_options={modality: labs}", "train.max_epochs=1"
    )
    result = fit(spec, tmp_path / "run", run, progress=False)
    assert result.data_issues == []
    evaluation = evaluate_model(
        Predictor.load(result.model_dir), load_cohort(spec), split="val", n_boot=10, progress=False
    )
    # The missing-modality matrix of a one-modality model has one row, not 2^5 - 1.
    assert [s.modalities for s in evaluation.targets["label"].subsets] == [("labs",)]
