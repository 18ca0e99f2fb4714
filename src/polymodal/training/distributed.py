"""Training on several processes (devices, nodes) through Lightning, correct across ranks.

Lightning launches the processes (its subprocess launcher for ``ddp``, torchrun, SLURM); what
polymodal must get right in each of them:

* **Rows.** Every sampler (shuffle, class-balanced, task shares) is a function of (seed,
  epoch) only, so every rank draws the same global sequence; :class:`RankRows` gives rank r
  the draws r, r + W, r + 2W, … (W processes). The union of the ranks' k-th batches is then
  the k-th batch of a single process with W times the batch, so the same global batch and
  seed give the same weights. Training draws are padded by wrapping around so that every rank
  runs the same number of steps (a rank that stops early would hang the others).
* **Validation.** Each rank predicts its share of the validation rows (no padding), and the
  per-sample predictions are gathered onto every rank before any metric is computed
  (:func:`gather_predictions`): an AUROC of the whole split, never an average of per-rank
  AUROCs, identical on every rank, so early stopping and checkpoint selection equal the
  single-process run's.
* **Files.** Only global rank 0 writes the run folder (run.json, logs, data issues, the model
  folder); :func:`is_global_zero` is known before Lightning sets up the process group, from
  the launcher's environment, because the other ranks re-run the whole command from the start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from polymodal.errors import ModelError

if TYPE_CHECKING:
    from polymodal.targets.predictions import PredictionCollector
    from polymodal.training.config import TrainConfig

# Set by Lightning's launchers, torchrun and SLURM in every process they start.
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK")


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size): from the process group once it exists, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_global_zero() -> bool:
    """Whether this process writes files: rank 0, or the only process. Readable before the
    process group exists (a re-launched rank has its rank in the environment)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    for variable in _RANK_VARIABLES:
        if variable in os.environ:
            rank = int(os.environ[variable])
            return rank == 0 and (variable != "LOCAL_RANK" or node == 0)
    return node == 0


def planned_world(cfg: TrainConfig) -> int:
    """The number of processes ``cfg`` asks for (1 when Lightning decides: devices 'auto'),
    known before they start: a loader's length (the learning-rate schedule's steps per epoch)
    is the length of one rank's share."""
    return cfg.num_nodes * (cfg.devices if isinstance(cfg.devices, int) else 1)


def processes_per_machine(cfg: TrainConfig) -> int:
    """Training processes that share this machine's cores: one per device of the node (CPU
    ranks, or the processes driving its GPUs); 1 when Lightning decides."""
    return cfg.devices if isinstance(cfg.devices, int) else 1


def is_distributed(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` asks for more than one process."""
    return cfg.num_nodes > 1 or cfg.devices == "auto" or cfg.devices > 1


def trainer_options(cfg: TrainConfig) -> dict[str, Any]:
    """Lightning Trainer arguments for ``cfg``'s devices, nodes, strategy and accumulation.

    polymodal shards rows itself (:class:`RankRows`), so Lightning's own distributed sampler,
    which would re-shuffle and pad the validation split, is off.
    """
    options: dict[str, Any] = {
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": cfg.strategy,
        "accumulate_grad_batches": cfg.accumulate_grad_batches,
        "use_distributed_sampler": False,
    }
    options["sync_batchnorm"] = _sync_batchnorm(cfg)
    return options


def _sync_batchnorm(cfg: TrainConfig) -> bool:
    """Whether BatchNorm statistics are synchronised: by default wherever the batch is split
    over several CUDA processes. PyTorch's SyncBatchNorm runs on CUDA only, so CPU processes
    (gloo) keep per-process statistics unless told otherwise, which is refused."""
    split = is_distributed(cfg) and cfg.strategy != "deepspeed"
    on_cuda = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if cfg.sync_batchnorm is None:
        return split and on_cuda
    if cfg.sync_batchnorm and split and not on_cuda:
        raise ModelError(
            "train.sync_batchnorm: true needs CUDA GPUs (PyTorch's SyncBatchNorm runs on no "
            f"other device; train.accelerator is {cfg.accelerator!r}"
            f"{'' if torch.cuda.is_available() else ', and no CUDA GPU is visible'}); "
            "set train.sync_batchnorm: false, or leave it out, to train on CPU processes"
        )
    return cfg.sync_batchnorm


class RankRows(Sampler):
    """This rank's share of ``sampler``'s draws: positions rank, rank + W, … of its sequence.

    ``pad``: wrap around so that every rank gets ⌈n / W⌉ draws (training: equal step counts);
    without it the last ranks get one draw less (validation: no row counted twice).
    Forwards ``set_epoch`` to ``sampler``. With one process it is ``sampler`` itself.
    ``world``: the number of processes before the process group exists (for ``len``).
    """

    def __init__(self, sampler: Sampler, *, pad: bool, world: int = 1) -> None:
        self.sampler = sampler
        self.pad = pad
        self.world = world

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _share(self, n: int) -> int:
        rank, world = rank_and_world()
        if not (dist.is_available() and dist.is_initialized()):
            world = self.world  # rank 0 before the launch, or another rank early on
            rank = 0
        if self.pad:
            return -(-n // world)
        return len(range(rank, n, world))

    def __len__(self) -> int:
        return self._share(len(self.sampler))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        rank, world = rank_and_world()
        draws = list(self.sampler)
        if world == 1:
            return iter(draws)
        if self.pad and len(draws) % world:
            draws += draws[: world - len(draws) % world]
        return iter(draws[rank::world])


class AllRows(Sampler[int]):
    """Row positions 0 … n − 1 in order (the validation split's, before :class:`RankRows`)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))


def gather_predictions(collector: PredictionCollector) -> None:
    """Extend every rank's ``collector`` with the other ranks' samples (rank order), so that
    metrics see the whole split; nothing to do with one process."""
    _, world = rank_and_world()
    if world == 1:
        return
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, collector.parts())
    collector.reset()
    for part in parts:
        collector.absorb(part)


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over every rank (a copy; ``values`` itself with one process)."""
    _, world = rank_and_world()
    if world == 1:
        return values
    total = values.clone()
    dist.all_reduce(total)
    return total
