"""Multitask ``prompted`` models: each head reads its own task feature, the loss averages the
labelled targets, and a model folder round-trips (also with prompts asked in other words)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.config import ModelConfig
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.errors import ModelError
from polymodal.model import build_model
from polymodal.model_folder import save_model_folder
from polymodal.predictor import Predictor

DIM = 16
CANCER = ["Predict the lung cancer risk over six years.", "What is the six-year lung cancer risk?"]
INPUTS = {"labs": {"kind": "tabular", "numeric": ["age", "crp"], "categorical": {}}}
PROMPTED = {"depth": 1, "num_registers": 1, "heads": 2}


def binary_info(prompts: list[str] | None = None) -> dict:
    return {
        "kind": "binary",
        "n_outputs": 1,
        "classes": ["0", "1"],
        "class_weights": None,
        "prompts": prompts,
    }


TARGETS = {"cancer": binary_info(CANCER), "cvd": binary_info(None)}


def make_model(core_options: dict | None = None, targets: dict = TARGETS) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        core="prompted", dim=DIM, core_options={**PROMPTED, **(core_options or {})}
    )
    return build_model(config, INPUTS, targets).eval()


def make_batch(n: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, 2, generator=g)
    return {
        "ids": [f"p{i}" for i in range(n)],
        "inputs": {
            "labs": {
                "numeric": numeric,
                "numeric_missing": torch.zeros(n, 2, dtype=torch.bool),
                "categorical": torch.zeros(n, 0, dtype=torch.long),
            }
        },
        "available": {"labs": torch.ones(n, dtype=torch.bool)},
        "targets": {"cancer": (numeric[:, 0] > 0).float(), "cvd": (numeric[:, 1] > 0).float()},
        "target_mask": {
            "cancer": torch.ones(n, dtype=torch.bool),
            "cvd": torch.ones(n, dtype=torch.bool),
        },
    }


def test_each_head_reads_its_own_task_feature() -> None:
    model = make_model()
    # build_model took the tasks from the targets: the spec's phrasings, or a default prompt.
    assert model.core.phrasings == {"cancer": tuple(CANCER), "cvd": ("Predict cvd.",)}
    assert model.task_routing == ("cancer", "cvd")
    batch = make_batch()
    outputs = model(batch)
    task_features = outputs["task_features"]
    assert task_features.shape == (6, 2, DIM) and outputs["features"].shape == (6, DIM)
    torch.testing.assert_close(outputs["features"], task_features.mean(dim=1))
    for i, target in enumerate(("cancer", "cvd")):
        expected = model.heads[target](task_features[:, i])
        torch.testing.assert_close(outputs["logits"][target], expected)
    # Asking cvd in other words changes the cvd logits only.
    with model.core.using_prompts({"cvd": "Is there any significant cardiovascular disease?"}):
        changed = model(batch)["logits"]
    torch.testing.assert_close(changed["cancer"], outputs["logits"]["cancer"])
    assert (changed["cvd"] - outputs["logits"]["cvd"]).abs().max() > 1e-3
    torch.testing.assert_close(model(batch)["logits"]["cvd"], outputs["logits"]["cvd"])


def test_one_prompt_for_every_target_keeps_one_shared_feature() -> None:
    model = make_model({"task_prompts": "Is there any significant abnormality?"})
    assert model.task_routing is None
    outputs = model(make_batch())
    assert "task_features" not in outputs
    torch.testing.assert_close(outputs["logits"]["cvd"], model.heads["cvd"](outputs["features"]))


def test_prompts_that_miss_a_target_are_refused() -> None:
    with pytest.raises(ModelError, match=r"not for the target\(s\) 'cvd'; give one prompt per"):
        make_model({"task_prompts": {"cancer": CANCER[0], "copd": "Predict COPD."}})


def test_loss_is_the_mean_over_the_targets_labelled_in_the_batch() -> None:
    model = make_model().train()
    batch = make_batch()
    torch.manual_seed(1)
    total, per_target = model.loss(batch, model(batch))
    torch.testing.assert_close(total, (per_target["cancer"] + per_target["cvd"]) / 2)

    batch["target_mask"]["cvd"][:] = False
    batch["targets"]["cvd"][:] = float("nan")  # unlabelled values are never read
    torch.manual_seed(1)
    total, per_target = model.loss(batch, model(batch))
    assert per_target["cvd"].item() == 0.0
    # cvd has no label here: it is not counted, so cancer trains at full weight.
    torch.testing.assert_close(total, per_target["cancer"])
    total.backward()
    assert model.heads["cancer"].proj.weight.grad.abs().sum() > 0
    assert torch.isfinite(model.heads["cvd"].proj.weight.grad).all()

    batch["target_mask"]["cancer"][:] = False
    model.zero_grad()
    total, _ = model.loss(batch, model(batch))
    assert total.item() == 0.0
    total.backward()  # still a graph: a batch without labels is a no-op step, not an error


# ---- a model folder on a tiny tabular cohort ------------------------------------------------


def write_cohort(root: Path, n: int = 24) -> Path:
    """A tabular cohort with two binary targets; cvd is unlabelled on a third of the rows."""
    g = torch.Generator().manual_seed(0)
    numeric = torch.randn(n, 2, generator=g)
    frame = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "split": ["train"] * (n - 8) + ["val"] * 4 + ["test"] * 4,
            "age": (60 + 10 * numeric[:, 0]).round().tolist(),
            "crp": numeric[:, 1].tolist(),
            "cancer": (numeric[:, 0] > 0).int().tolist(),
            "cvd": ["" if i % 3 == 0 else str(int(numeric[i, 1] > 0)) for i in range(n)],
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "manifest.csv", index=False)
    spec = {
        "name": "multitask",
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {
            "cancer": {"kind": "binary", "column": "cancer", "prompts": CANCER},
            "cvd": {"kind": "binary", "column": "cvd"},
        },
        "modalities": {"labs": {"kind": "tabular", "numeric": ["age", "crp"]}},
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    """``(model folder, manifest, the model that was saved)`` of an untrained multitask model."""
    root = tmp_path_factory.mktemp("multitask")
    spec = load_spec(write_cohort(root / "cohort"))
    preprocessor = Preprocessor.fit(load_cohort(spec))
    config = ModelConfig(core="prompted", dim=DIM, core_options=PROMPTED)
    targets = {t: preprocessor.target_info(t) for t in preprocessor.targets}
    inputs = {m: preprocessor.input_info(m) for m in preprocessor.modalities}
    torch.manual_seed(0)
    model = build_model(config, inputs, targets).eval()
    folder = save_model_folder(
        root / "model", model=model, config=config, preprocessor=preprocessor, spec=spec
    )
    return folder, spec.manifest_path, model


def test_model_folder_round_trips_multitask_predictions(model_folder) -> None:
    folder, manifest, saved = model_folder
    predictor = Predictor.load(folder)
    assert predictor.loaded.model.core.phrasings["cancer"] == tuple(CANCER)
    table = predictor.predict_manifest(manifest)
    # The model that was saved, on the same rows, gives the same predictions for both targets.
    cohort = load_cohort(predictor.loaded.spec)
    dataset = CohortDataset(cohort, predictor.loaded.preprocessor, None)
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    expected = saved.predict(batch)
    assert table["id"].tolist() == batch["ids"]
    for target in ("cancer", "cvd"):
        got = torch.as_tensor(table[f"{target}_probability"].to_numpy(), dtype=torch.float32)
        torch.testing.assert_close(got, expected[target]["probability"])


def test_prompts_asked_in_other_words_at_prediction(model_folder, tmp_path: Path) -> None:
    folder, manifest, _ = model_folder
    plain = Predictor.load(folder).predict_manifest(manifest)
    reworded = {"cancer": "How likely is lung cancer within six years?"}
    asked = Predictor.load(folder, prompts=reworded).predict_manifest(manifest)
    pd.testing.assert_series_equal(asked["cvd_probability"], plain["cvd_probability"])
    assert (asked["cancer_probability"] - plain["cancer_probability"]).abs().max() > 1e-4

    out = tmp_path / "predictions.csv"
    args = ["predict", str(folder), str(manifest), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--prompt", f"cancer={reworded['cancer']}"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(out), asked, check_dtype=False)

    bad = CliRunner().invoke(app, [*args, "--prompt", "no equals sign"])
    assert bad.exit_code == 2 and "is not TASK=TEXT" in bad.output
    with pytest.raises(ModelError, match="no task prompt for 'copd'; its tasks: 'cancer', 'cvd'"):
        Predictor.load(folder, prompts={"copd": "Predict COPD."})
