"""The training and validation loaders of a fit that reads LitData shards (``train.shards``).

* **Training** streams the split through LitData's ``StreamingDataset``: it hands whole chunks
  to each rank (node × device) and DataLoader worker itself and shuffles chunks and the items
  within them by (``train.seed``, epoch), so every rank gets an equal number of rows and an
  epoch's order is the same after a resume. Image augmentation is applied per item as when
  reading files, seeded by (seed, epoch, row) (:func:`polymodal.data.dataset.augment_seed`), so
  a row is augmented the same way whichever rank or worker reads it. The order of the rows is
  LitData's, not :class:`polymodal.training.epoch_seeds.EpochShuffle`'s, so weights differ from
  a fit on the files by the order of the batches.
* **Validation** reads item i as row i of the split (:class:`polymodal.data.shards.ShardRows`)
  through the same samplers as from files: each rank predicts its share and the predictions are
  gathered (:mod:`polymodal.training.distributed`), so validation covers the whole split and its
  metrics equal those from the files.

Options that draw rows by their labels (``train.sampling`` other than ``shuffle``) cannot be
streamed chunk by chunk and are refused (:func:`check_shard_options`). A frozen backbone's
features are computed in the forward pass: the frozen-feature store is keyed by the files.
"""

from __future__ import annotations

from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset

# LitData reads the process group itself only when its dataset is made; a fit makes its loaders
# before Lightning starts the processes, so the loader sets it when each epoch starts.
from litdata.utilities.env import _DistributedEnv

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import augment_seed
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.shard_items import from_item
from polymodal.data.shards import ShardRows, Shards
from polymodal.errors import PolymodalError
from polymodal.modalities import get as modality_kind
from polymodal.runtime import worker_init
from polymodal.training.config import TrainConfig
from polymodal.training.distributed import planned_world, rank_and_world
from polymodal.training.loaders import make_loader


def check_shard_options(cfg: TrainConfig) -> None:
    """Refuse the settings a fit from shards cannot honour, naming the key and what to do."""
    if cfg.sampling != "shuffle":
        raise PolymodalError(
            f"train.sampling: {cfg.sampling!r} draws rows by their labels, which rows streamed "
            f"chunk by chunk from the shards ({cfg.shards}) cannot do; set train.sampling: "
            "shuffle, or train from the files (leave out train.shards / --shards)"
        )


class StreamingRows(StreamingDataset):
    """The training split of a shards folder, streamed by LitData: samples, augmented.

    Args:
        location: the split's folder (local, ``s3://``, ``gs://``).
        preprocessor: the shards' state (its spec sections say which images are augmented).
        modalities: the ones the model reads; the others are unavailable. None: all.
        seed: ``train.seed`` (LitData's shuffle and the augmentation).
        world: the processes the run will have (each stream's length is one rank's share).
    """

    def __init__(
        self,
        location: str,
        preprocessor: Preprocessor,
        modalities: list[str] | None,
        *,
        seed: int,
        world: int,
        num_nodes: int,
    ) -> None:
        super().__init__(location, shuffle=True, seed=seed, drop_last=world > 1)
        self.distributed_env = _DistributedEnv(world, 0, num_nodes)
        self.preprocessor = preprocessor
        self.modalities = modalities
        self.cache = None  # nothing is decoded
        self.issues: list = []
        augmenters = {
            name: modality_kind(cfg.kind).augmenter(cfg)
            for name, cfg in preprocessor.modality_configs.items()
        }
        self.augmenters = {n: a for n, a in augmenters.items() if a is not None}

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        sample = from_item(self.preprocessor, item, self.modalities)
        # LitData counts epochs from 1, Lightning from 0.
        seed = augment_seed(self.seed, self.current_epoch - 1, int(item["index"]))
        for name, augmenter in self.augmenters.items():
            if sample["available"][name]:
                augmenter(sample["inputs"][name], seed)
        return sample


class EpochStreamLoader(StreamingDataLoader):
    """LitData's loader over :class:`StreamingRows` with polymodal's collate, starting at
    ``first_epoch`` (a resumed run streams what an uninterrupted one would).

    Each epoch's iterator takes the rank and world of the process group then present. A last
    batch of one sample is left out (it breaks BatchNorm), as the file loader's ``drop_last``
    does; several processes drop a rank's incomplete last batch (LitData's ``drop_last``, equal
    step counts on every rank). Workers are fresh each epoch so that they see the epoch.
    """

    def __init__(
        self, dataset: StreamingRows, cfg: TrainConfig, first_epoch: int, pin_memory: bool
    ) -> None:
        workers = cfg.num_workers
        super().__init__(
            dataset,
            batch_size=cfg.batch_size,
            num_workers=workers,
            collate_fn=collate_samples,
            worker_init_fn=worker_init if workers > 0 else None,
            generator=torch.Generator(),
            pin_memory=pin_memory,
        )
        self.current_epoch = first_epoch  # LitData adds one as an epoch's iterator is made
        self.num_nodes = cfg.num_nodes
        self._drop_last(planned_world(cfg))

    def _drop_last(self, world: int) -> None:
        """LitData's ``drop_last`` (whole batches only) where a rank's rows would end with a
        batch of one, or under several processes; the loader's length counts the batches."""
        self.dataset.set_drop_last(False)
        rows = self.dataset.get_len(self.num_workers, self.batch_size)
        single = self.batch_size > 1 and rows % self.batch_size == 1
        self.dataset.set_drop_last(world > 1 or single)

    def __iter__(self) -> Any:
        rank, world = rank_and_world()
        self.dataset.distributed_env = _DistributedEnv(world, rank, self.num_nodes)
        self._drop_last(world)
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        # Lightning stores this in checkpoints; a resume starts at an epoch's beginning, set
        # from the checkpoint's epoch (first_epoch), so nothing else is needed.
        return {"current_epoch": self.current_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""


def shard_loaders(
    shards: Shards,
    cfg: TrainConfig,
    modalities: list[str],
    first_epoch: int,
    row_ids: dict[str, set[str]],
) -> tuple[StreamingRows, ShardRows, EpochStreamLoader, torch.utils.data.DataLoader]:
    """The training stream and validation rows of ``shards`` with their loaders; each dataset's
    ``issues`` are the shards' recorded issues of its split's rows (``row_ids[split]``)."""
    check_shard_options(cfg)
    for split, name in (("train", "training"), ("val", "validation")):
        if not shards.manifest["rows"].get(split):
            raise PolymodalError(
                f"{shards.location}: the {name} split has no rows; model selection needs "
                "training and validation rows"
            )
    train = StreamingRows(
        shards.split("train"),
        shards.preprocessor,
        modalities,
        seed=cfg.seed,
        world=planned_world(cfg),
        num_nodes=cfg.num_nodes,
    )
    train.issues = shards.issues(row_ids["train"])
    val = ShardRows(shards, "val", modalities, issues=shards.issues(row_ids["val"]))
    on_gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    train_loader = EpochStreamLoader(train, cfg, first_epoch, pin_memory=on_gpu)
    return train, val, train_loader, make_loader(val, cfg, shuffle=False)
