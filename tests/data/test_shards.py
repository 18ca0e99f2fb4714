"""LitData shards of a cohort: written once, read back as the samples `encode_row` gives, trained
from with `fit --shards`, refused when made from another cohort."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("litdata", reason="shards need the 'shards' extra (litdata)")

from polymodal.cli import main
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.shards import ShardRows, open_shards, write_shards
from polymodal.data.spec import load_spec
from polymodal.datasets.demo import make_demo_cohort
from polymodal.errors import PolymodalError
from polymodal.model_folder import load_model_folder
from polymodal.training import shard_loaders
from polymodal.training.fit import fit
from polymodal.training.loaders import make_loader
from polymodal.training.shard_loaders import (
    EpochStreamLoader,
    StreamingRows,
    check_shard_options,
)
from training.conftest import tiny_config
from training.killed_fit import kill_in_the_second_epoch

ROWS = 60
BROKEN_ROW = 0  # its lesion image is overwritten with bytes that are no image


@pytest.fixture(scope="module")
def cohort_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-row demo cohort whose first training row with a lesion image has a damaged file;
    its 8-bit lesion images are augmented and ImageNet-normalised (kept as 8-bit in shards)."""
    folder = tmp_path_factory.mktemp("shards") / "cohort"
    spec_path = make_demo_cohort(folder, n=ROWS, seed=0, image_size=32, volume_size=16)
    spec = yaml.safe_load(spec_path.read_text())
    spec["modalities"]["lesion"].update(augment=True, normalize="imagenet")
    spec_path.write_text(yaml.safe_dump(spec))
    cohort = load_cohort(load_spec(spec_path))
    train = cohort.frame.iloc[cohort.indices("train")]
    with_image = train[train["lesion_image"].fillna("").astype(str).str.strip() != ""]
    (folder / with_image["lesion_image"].iloc[BROKEN_ROW]).write_bytes(b"not a png")
    return spec_path


@pytest.fixture(scope="module")
def broken_id(cohort_spec: Path) -> str:
    cohort = load_cohort(load_spec(cohort_spec))
    train = cohort.frame.iloc[cohort.indices("train")]
    with_image = train[train["lesion_image"].fillna("").astype(str).str.strip() != ""]
    return str(with_image["sample_id"].iloc[BROKEN_ROW])


@pytest.fixture(scope="module")
def shards_dir(cohort_spec: Path) -> Path:
    out = cohort_spec.parent.parent / "shards"
    # Two workers: the items must still come back in the split's row order.
    write_shards(load_spec(cohort_spec), out, workers=2, progress=False)
    return out


def _assert_same_sample(read: dict, expected: dict) -> None:
    assert read["id"] == expected["id"] and read["group"] == expected["group"]
    assert read["available"] == expected["available"]
    assert read["target_mask"] == expected["target_mask"]
    for name, value in expected["targets"].items():
        assert torch.equal(read["targets"][name], value), name
    for modality, fields in expected["inputs"].items():
        assert fields.keys() == read["inputs"][modality].keys()
        for key, tensor in fields.items():
            got = read["inputs"][modality][key]
            assert got.dtype == tensor.dtype and torch.equal(got, tensor), (modality, key)


def test_items_read_back_are_the_samples_encode_row_gives(
    cohort_spec: Path, shards_dir: Path
) -> None:
    spec = load_spec(cohort_spec)
    cohort = load_cohort(spec)
    shards = open_shards(shards_dir, spec, cohort)
    for split in ("train", "val", "test"):
        from_files = CohortDataset(cohort, shards.preprocessor, split)
        from_shards = ShardRows(shards, split)
        assert len(from_shards) == len(from_files) == len(cohort.indices(split))
        for index in range(len(from_files)):
            _assert_same_sample(from_shards[index], from_files[index])
    # The 8-bit lesion images are stored as 8-bit pixels, not float32.
    stream = ShardRows(shards, "train").stream
    lesion = shards.preprocessor.modalities.index("lesion")
    stored = [stream[i] for i in range(len(stream)) if stream[i]["available"][lesion]]
    assert stored and all(item["input.lesion.pixels_u8"].numel() for item in stored)
    assert not any(item["input.lesion.pixels"].numel() for item in stored)


def test_an_unreadable_image_is_a_data_issue_and_unavailable_in_its_item(
    cohort_spec: Path, shards_dir: Path, broken_id: str
) -> None:
    issues = pd.read_csv(shards_dir / "data_issues.csv")
    mine = issues[issues["row_id"] == broken_id]
    assert mine[["modality", "column"]].values.tolist() == [["lesion", "lesion_image"]]
    spec = load_spec(cohort_spec)
    train = ShardRows(open_shards(shards_dir, spec, load_cohort(spec)), "train")
    item = next(train[i] for i in range(len(train)) if train[i]["id"] == broken_id)
    assert item["available"]["lesion"] is False
    assert not item["inputs"]["lesion"]["view_mask"].any()


@pytest.mark.parametrize("workers", [0, 1])
def test_the_training_stream_gives_every_row_once_an_epoch_augmented_as_from_files(
    cohort_spec: Path, shards_dir: Path, workers: int
) -> None:
    spec = load_spec(cohort_spec)
    cohort = load_cohort(spec)
    shards = open_shards(shards_dir, spec, cohort)
    # With a worker process, the epoch reaches the stream's copy there (fresh each epoch).
    settings = ("train.batch_size=3", "train.seed=3", f"train.num_workers={workers}")
    cfg = tiny_config(*settings).train
    files = CohortDataset(cohort, shards.preprocessor, "train", augment=True, augment_seed=3)
    position = {files[i]["id"]: i for i in range(len(files))}

    def epoch_ids(first_epoch: int) -> list[list[str]]:
        stream = StreamingRows(
            shards.split("train"), shards.preprocessor, None, seed=3, world=1, num_nodes=1
        )
        loader = EpochStreamLoader(stream, cfg, first_epoch, pin_memory=False)
        epochs = []
        for epoch in range(first_epoch, 2):
            ids = []
            for batch in loader:
                for row, row_id in enumerate(batch["ids"]):
                    expected = files[(epoch, position[row_id])]["inputs"]["lesion"]["pixels"]
                    assert torch.equal(batch["inputs"]["lesion"]["pixels"][row], expected)
                ids += batch["ids"]
            epochs.append(ids)
        return epochs

    # No last batch of one sample (which the loader leaves out, as from files): every row.
    assert len(position) % cfg.batch_size != 1
    first, second = epoch_ids(0)
    assert sorted(first) == sorted(second) == sorted(position)
    assert first != second  # reshuffled by epoch
    # A run resumed at epoch 1 streams what the uninterrupted run streamed then.
    assert epoch_ids(1) == [second]


def test_every_rank_reads_the_whole_validation_split_by_position(
    cohort_spec: Path, shards_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rank 1 of a two-process launch: LitData alone would count only its share of the rows,
    # and polymodal's samplers (each rank predicts rows r, r + W, …) would miss the others.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("GLOBAL_RANK", "1")
    spec = load_spec(cohort_spec)
    cohort = load_cohort(spec)
    val = ShardRows(open_shards(shards_dir, spec, cohort), "val")
    expected = cohort.ids.iloc[cohort.indices("val")].astype(str).tolist()
    assert [val[i]["id"] for i in range(len(val))] == expected


def test_two_ranks_stream_disjoint_equal_shares_of_the_training_split(
    cohort_spec: Path, shards_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(cohort_spec)
    cohort = load_cohort(spec)
    shards = open_shards(shards_dir, spec, cohort)
    cfg = tiny_config("train.batch_size=4", "train.devices=2", "train.strategy=ddp").train
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(shard_loaders, "rank_and_world", lambda rank=rank: (rank, 2))
        stream = StreamingRows(
            shards.split("train"), shards.preprocessor, ["labs"], seed=0, world=2, num_nodes=1
        )
        loader = EpochStreamLoader(stream, cfg, 0, pin_memory=False)
        shares.append([row_id for batch in loader for row_id in batch["ids"]])
        assert len(loader) == len(shares[-1]) // cfg.batch_size  # whole batches only
    assert len(shares[0]) == len(shares[1]) > 0
    assert not set(shares[0]) & set(shares[1])
    assert set(shares[0]) | set(shares[1]) <= set(cohort.ids.iloc[cohort.indices("train")])


def test_validation_from_shards_equals_validation_from_files(
    cohort_spec: Path, shards_dir: Path, broken_id: str, tmp_path: Path
) -> None:
    spec = load_spec(cohort_spec)
    run = tiny_config("train.max_epochs=1", "train.batch_size=8", f"train.shards={shards_dir}")
    result = fit(spec, tmp_path / "run", run, progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "logs" / "metrics.csv").dropna(subset=["val/loss"])
    logged = float(metrics["val/loss"].iloc[-1])
    # The exported model (the only epoch's weights) scored on the validation files.
    loaded = load_model_folder(result.model_dir)
    files = CohortDataset(load_cohort(spec), loaded.preprocessor, "val")
    loss_sum, rows = 0.0, 0
    with torch.no_grad():
        for batch in make_loader(files, run.train, shuffle=False):
            total, _ = loaded.model.loss(batch, loaded.model(batch))
            loss_sum, rows = loss_sum + float(total) * len(batch["ids"]), rows + len(batch["ids"])
    assert logged == pytest.approx(loss_sum / rows, abs=1e-6)
    # The damaged training image is reported in the run's data issues, as from files.
    assert broken_id in set(pd.read_csv(tmp_path / "run" / "data_issues.csv")["row_id"])


def test_shards_of_another_manifest_are_refused_with_exit_2(
    cohort_spec: Path, shards_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = tmp_path / "changed"
    shutil.copytree(cohort_spec.parent, folder)
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str)
    manifest.loc[0, "crp"] = "99.5"
    manifest.to_csv(folder / "manifest.csv", index=False)
    spec = folder / cohort_spec.name
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "polymodal",
            "fit",
            str(spec),
            "--shards",
            str(shards_dir),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    message = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert str(shards_dir) in message and "the manifest" in message and "differs" in message
    assert "Traceback" not in message


def test_class_balanced_sampling_is_refused_on_shards(shards_dir: Path) -> None:
    cfg = tiny_config("train.sampling=class_balanced", f"train.shards={shards_dir}").train
    with pytest.raises(PolymodalError, match=r"train\.sampling: 'class_balanced'"):
        check_shard_options(cfg)


def test_a_run_resumed_from_shards_trains_the_weights_of_an_uninterrupted_one(
    cohort_spec: Path, shards_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shuffling by LitData, augmentation of the lesion images, modality dropout and dropout: all
    # drawn again in the resumed epoch as the uninterrupted run drew them.
    spec = load_spec(cohort_spec)
    run = tiny_config("train.max_epochs=2", "train.batch_size=8", f"train.shards={shards_dir}")
    fit(spec, tmp_path / "whole", run, progress=False)
    kill_in_the_second_epoch(
        monkeypatch, lambda: fit(spec, tmp_path / "killed", run, progress=False)
    )
    fit(spec, tmp_path / "killed", run, resume=True, progress=False)
    first, again = (
        torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for folder in (tmp_path / "whole", tmp_path / "killed")
    )
    assert first["epoch"] == again["epoch"] == 1
    for name, tensor in first["state_dict"].items():
        assert torch.equal(tensor, again["state_dict"][name]), name
