"""Training-row sampling: task shares, class balance, labels read without files, fit wiring."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from polymodal.config import ModelConfig
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError
from polymodal.training.config import TrainConfig
from polymodal.training.fit import fit, make_loader
from polymodal.training.run_config import RunConfig
from polymodal.training.sampling import dataset_sampler, make_sampler, task_shares

BINARY = {"kind": "binary"}
DRAWS = 40_000


def disjoint_masks(sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Each row labelled for exactly one task; task k on sizes[k] rows."""
    n = sum(sizes.values())
    masks, start = {}, 0
    for task, size in sizes.items():
        mask = torch.zeros(n, dtype=torch.bool)
        mask[start : start + size] = True
        masks[task], start = mask, start + size
    return masks


def drawn_rows(sampler) -> torch.Tensor:
    sampler.num_samples = DRAWS  # many draws, so shares are measured within ±0.01
    return torch.tensor(list(sampler))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("tasks_proportional", {"a": 400 / 525, "b": 100 / 525, "c": 25 / 525}),
        ("tasks_sqrt", {"a": 20 / 35, "b": 10 / 35, "c": 5 / 35}),
        ("tasks_uniform", {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
    ],
)
def test_task_shares_follow_the_rule(rule: str, expected: dict[str, float]) -> None:
    masks = disjoint_masks({"a": 400, "b": 100, "c": 25})
    shares = task_shares(masks, rule)
    assert shares == pytest.approx(expected)
    infos = dict.fromkeys(masks, BINARY)
    sampler = make_sampler(rule, {}, masks, infos, seed=3)
    rows = drawn_rows(sampler)
    for task, share in expected.items():
        assert masks[task][rows].float().mean().item() == pytest.approx(share, abs=0.01), task
    # Within a task every row is equally likely: the smallest task's rows all come up.
    assert set(rows[masks["c"][rows]].tolist()) == set(range(500, 525))


def test_task_weights_ignore_a_task_without_labels_and_sum_over_a_rows_tasks() -> None:
    masks = disjoint_masks({"a": 30, "b": 10})
    masks["never"] = torch.zeros(40, dtype=torch.bool)
    assert set(task_shares(masks, "tasks_uniform")) == {"a", "b"}
    masks["both"] = torch.ones(40, dtype=torch.bool)  # a task labelled on every row
    sampler = make_sampler("tasks_uniform", {}, masks, dict.fromkeys(masks, BINARY))
    weights = sampler.weights
    # Row 0 (a and both): 1/3·1/30 + 1/3·1/40; row 39 (b and both): 1/3·1/10 + 1/3·1/40.
    assert weights[0].item() == pytest.approx(1 / 90 + 1 / 120)
    assert weights[39].item() == pytest.approx(1 / 30 + 1 / 120)


def test_class_balanced_evens_binary_and_multiclass_classes() -> None:
    n = 400
    binary = (torch.arange(n) < 40).float()  # 10 % positive
    multiclass = torch.tensor([0] * 300 + [1] * 80 + [2] * 20)
    every = torch.ones(n, dtype=torch.bool)
    infos = {"tumour": BINARY, "grade": {"kind": "multiclass"}}
    targets, masks = {"tumour": binary, "grade": multiclass}, {"tumour": every, "grade": every}
    rows = drawn_rows(make_sampler("class_balanced", targets, masks, infos, seed=1))
    assert binary[rows].mean().item() == pytest.approx(0.5, abs=0.01)  # first target by default
    sampler = make_sampler("class_balanced", targets, masks, infos, sampling_target="grade")
    counts = Counter(multiclass[drawn_rows(sampler)].tolist())
    for c in (0, 1, 2):
        assert counts[c] / DRAWS == pytest.approx(1 / 3, abs=0.01), c


def test_class_balanced_keeps_rows_labelled_only_for_other_targets() -> None:
    labels = torch.tensor([0.0] * 60 + [1.0] * 20 + [0.0] * 20)
    tumour = torch.tensor([True] * 80 + [False] * 20)
    other = torch.tensor([False] * 90 + [True] * 10)  # rows 80..89 have no label at all
    masks = {"tumour": tumour, "other": other}
    infos = {"tumour": BINARY, "other": BINARY}
    sampler = make_sampler("class_balanced", {"tumour": labels}, masks, infos)
    rows = drawn_rows(sampler)
    for group in (slice(0, 60), slice(60, 80), slice(90, 100)):
        share = ((rows >= group.start) & (rows < group.stop)).float().mean().item()
        assert share == pytest.approx(1 / 3, abs=0.01)
    assert not ((rows >= 80) & (rows < 90)).any()


def test_sampling_errors_name_the_setting() -> None:
    masks = {"psa": torch.ones(4, dtype=torch.bool)}
    targets = {"psa": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    infos = {"psa": {"kind": "regression"}}
    with pytest.raises(
        PolymodalError, match="class_balanced needs a binary, multiclass or ordinal target"
    ):
        make_sampler("class_balanced", targets, masks, infos)
    with pytest.raises(PolymodalError, match="sampling_target 'grade' is not a target"):
        make_sampler("class_balanced", targets, masks, infos, sampling_target="grade")
    empty = {"psa": torch.zeros(4, dtype=torch.bool)}
    with pytest.raises(PolymodalError, match="no training row has a label"):
        make_sampler("tasks_sqrt", targets, empty, infos)
    assert make_sampler("shuffle", targets, masks, infos) is None


# ---- labels from a cohort, and the fit loop ---------------------------------------------------


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tabular cohort: 'grade' has a blank and an unseen class; 'psa' is labelled on few rows."""
    root = tmp_path_factory.mktemp("sampling")
    n = 20
    frame = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "split": ["train"] * 16 + ["val"] * 4,
            "age": [50 + i for i in range(n)],
            "grade": ["low"] * 10 + ["high"] * 4 + ["", "low"] + ["low", "high", "low", "high"],
            "psa": [str(i / 2) if i % 4 == 0 else "" for i in range(n)],
        }
    )
    frame.to_csv(root / "manifest.csv", index=False)
    spec = {
        "name": "sampling",
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {
            "grade": {"kind": "multiclass", "column": "grade"},
            "psa": {"kind": "regression", "column": "psa"},
        },
        "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


def test_encoded_targets_match_the_samples(spec_path: Path) -> None:
    cohort = load_cohort(load_spec(spec_path))
    preprocessor = Preprocessor.fit(cohort)
    cohort.frame.loc[15, "grade"] = "unseen"  # a class the fitted state does not know
    dataset = CohortDataset(cohort, preprocessor, "train")
    targets, masks = dataset.encoded_targets()
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    for name in ("grade", "psa"):
        assert torch.equal(masks[name], batch["target_mask"][name]), name
        torch.testing.assert_close(targets[name][masks[name]], batch["targets"][name][masks[name]])
    assert masks["grade"].tolist() == [True] * 14 + [False, False]
    sampler = dataset_sampler(dataset, sampling="class_balanced", seed=0)
    grades = targets["grade"][drawn_rows(sampler)]
    assert (grades == grades.mode().values).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_fit_draws_training_rows_with_the_configured_sampling(
    spec_path: Path, tmp_path, monkeypatch
) -> None:
    spec = load_spec(spec_path)
    model = ModelConfig(core="concat", dim=8)
    config = TrainConfig(sampling="class_balanced", sampling_target="psa", cache=False)
    with pytest.raises(PolymodalError, match="'psa' is regression"):
        fit(spec, tmp_path / "refused", RunConfig(model=model, train=config), progress=False)

    samplers = []

    def recording_loader(dataset, cfg, *, shuffle, sampler=None):
        samplers.append(sampler)
        return make_loader(dataset, cfg, shuffle=shuffle, sampler=sampler)

    monkeypatch.setattr("polymodal.training.fit.make_loader", recording_loader)
    config = TrainConfig(sampling="tasks_uniform", max_epochs=1, batch_size=8, cache=False)
    result = fit(spec, tmp_path / "run", RunConfig(model=model, train=config), progress=False)
    assert result.epochs_run == 1 and (result.model_dir / "model.safetensors").is_file()
    train_sampler, val_sampler = samplers
    assert val_sampler is None  # validation is never resampled
    # 15 grade labels (row 14 is blank) and 4 psa labels in train (rows 0, 4, 8, 12 have both).
    grade_only, both = train_sampler.weights[1].item(), train_sampler.weights[0].item()
    assert grade_only == pytest.approx(0.5 / 15)
    assert both == pytest.approx(0.5 / 15 + 0.5 / 4)
