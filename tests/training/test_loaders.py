"""Training loaders: (epoch, row) items, augmentation a pure function of (seed, epoch, row)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml

from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import load_spec
from polymodal.training.config import TrainConfig
from polymodal.training.epoch_seeds import EpochShuffle
from polymodal.training.loaders import EpochRows, make_loader


def test_epoch_rows_tag_each_row_with_the_epoch_and_forward_it():
    rows = EpochRows(EpochShuffle(5, seed=3))
    rows.set_epoch(2)
    drawn = list(rows)
    assert [epoch for epoch, _ in drawn] == [2] * 5
    shuffle = EpochShuffle(5, seed=3)
    shuffle.set_epoch(2)
    assert [row for _, row in drawn] == list(shuffle)
    assert len(rows) == 5


def _augmenting_dataset(spec_path: Path, tmp_path: Path) -> CohortDataset:
    folder = tmp_path / "cohort"
    shutil.copytree(spec_path.parent, folder)
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    spec["modalities"]["lesion"]["augment"] = True
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    cohort = load_cohort(load_spec(folder / "spec.yaml"))
    prep = Preprocessor.fit(cohort)
    return CohortDataset(cohort, prep, "train", augment=True, augment_seed=7, modalities=["lesion"])


def test_a_rows_augmentation_depends_on_seed_epoch_and_row_only(cohort_spec_path, tmp_path):
    dataset = _augmenting_dataset(cohort_spec_path, tmp_path)
    row = next(i for i in range(len(dataset)) if dataset[i]["available"]["lesion"])
    first = dataset[(1, row)]["inputs"]["lesion"]["pixels"]
    torch.rand(100)  # whatever the global generators (a worker's seed) hold
    assert torch.equal(dataset[(1, row)]["inputs"]["lesion"]["pixels"], first)
    epochs = [dataset[(e, row)]["inputs"]["lesion"]["pixels"] for e in range(2, 8)]
    assert any(not torch.equal(p, first) for p in epochs)  # another epoch, another draw


def test_training_workers_persist_across_epochs(cohort_spec_path, tmp_path):
    dataset = _augmenting_dataset(cohort_spec_path, tmp_path)
    loader = make_loader(dataset, TrainConfig(num_workers=1, batch_size=8), shuffle=True)
    assert loader.persistent_workers and isinstance(loader.sampler, EpochRows)
    loader.sampler.set_epoch(0)
    one = [i for b in loader for i in b["ids"]]
    workers = loader._iterator  # kept, not shut down, after the epoch
    loader.sampler.set_epoch(1)
    two = [i for b in loader for i in b["ids"]]
    assert loader._iterator is workers is not None
    assert len(one) == len(two) and one != two  # the same workers draw a new epoch
