"""Training settings: optimiser, schedule, precision, early stopping, checkpoints, seed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """How to train. Defaults suit a small cohort on a CPU; raise epochs and batch for real data.

    Fine-tuning recipe keys (all off by default; ``configs/finetune_gpu.yaml`` turns them on):

    * ``layer_decay``: layer-wise lr decay of timm backbones (:mod:`polymodal.training.param_groups`).
    * ``label_smoothing``: binary, multiclass and multilabel losses only.
    * ``mixup`` / ``cutmix`` / ``mix_prob``: batch-level mixing of the image inputs and the
      labels of one classification target (:mod:`polymodal.training.mixing`).

    The moving average of the weights (``train.ema_decay`` before) is the ``ema:`` section of the
    run config, a training plugin (:mod:`polymodal.training.plugins`).
    """

    model_config = ConfigDict(extra="forbid")

    max_epochs: int = Field(
        30, ge=1, description="Upper bound on epochs (early stopping may end sooner)."
    )
    batch_size: int = Field(32, ge=1)
    lr: float = Field(
        1e-3, gt=0, description="Peak learning rate (after warm-up; the cyclic schedule's max)."
    )
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW/SGD weight decay; never on biases and 1-D tensors (norms)."
    )
    layer_decay: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Layer-wise lr decay d for the timm backbones (image_timm and any encoder "
        "holding a timm model): encoders' projections, fusion core and heads train at lr, the "
        "backbone's last block (with its final norm / conv_head) at lr·d, the one before at "
        "lr·d², …, the stem lowest; blocks as timm's group_matcher orders them. The warm-up and "
        "cosine (or cyclic) schedule scale every group alike. None: every parameter at lr.",
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Label smoothing ε of the training loss of binary, multiclass and multilabel "
        "targets (other kinds are not smoothed; an error when no target is of those kinds). "
        "The validation loss is unsmoothed.",
    )
    mixup: float = Field(
        0.0,
        ge=0,
        description="Mixup α (λ ~ Beta(α, α)) of the image inputs and the labels; 0 = off.",
    )
    cutmix: float = Field(
        0.0,
        ge=0,
        description="CutMix α: a box of area 1−λ pasted from the paired image; 0 = off. With "
        "mixup too, each mixed batch is one or the other, evenly.",
    )
    mix_prob: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Probability that a training batch is mixed (mixup/cutmix).",
    )
    optimizer: Literal["adamw", "sgd"] = Field(
        "adamw", description="'adamw', or 'sgd' with momentum (the EI recipe)."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (optimizer: sgd).")
    schedule: Literal["cosine", "cyclic"] = Field(
        "cosine",
        description="'cosine': linear warm-up then cosine decay; 'cyclic': torch CyclicLR between "
        "cyclic_base_lr and lr, stepped every iteration, amplitude × cyclic_decay per cycle.",
    )
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length, then cosine decay.")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="Final lr as a fraction of the peak.")
    cyclic_base_lr: float = Field(1e-5, gt=0, description="Lowest lr of the cyclic schedule.")
    cyclic_step_epochs: float = Field(
        4.0, gt=0, description="Cyclic schedule: epochs of iterations from base to max lr."
    )
    cyclic_decay: float = Field(
        0.8, gt=0, le=1, description="Cyclic schedule: amplitude of cycle k is decay^(k−1)."
    )
    cycle_momentum: bool = Field(
        False,
        description="Cyclic schedule: also cycle the momentum inversely between 0.8 and 0.9 "
        "(torch's CyclicLR default, which the official EI code runs with, overriding its 0.95).",
    )
    precision: Literal["32", "16-mixed", "bf16-mixed"] = Field(
        "32", description="Mixed precision switch: '16-mixed' on GPU, 'bf16-mixed' on CPU or GPU."
    )
    channels_last: bool = Field(
        False,
        description="Keep 4D weights (so convolution activations too) in channels-last memory "
        "layout: faster convolutions on GPUs with tensor cores and on CPUs with oneDNN; results "
        "differ only by float rounding.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model in place (the saved weights keep their names). "
        "The first steps pay for compiling; on a CPU it needs a C++ compiler.",
    )
    monitor: str = Field(
        "auto",
        description="Validation metric for early stopping and the best checkpoint, e.g. "
        "'val/label/auroc' or 'val/loss'; a bare metric name ('auprc_macro') is the first "
        "target's; 'auto' picks the first target's main metric.",
    )
    early_stopping_patience: int | None = Field(
        8, ge=1, description="Epochs without improvement; None disables."
    )
    gradient_clip: float | None = Field(1.0, gt=0)
    sampling: Literal[
        "shuffle", "class_balanced", "tasks_proportional", "tasks_sqrt", "tasks_uniform"
    ] = Field(
        "shuffle",
        description="How training rows are drawn: 'shuffle'; 'class_balanced' (every class of "
        "sampling_target equally often); or task shares p_k ∝ n_k, √n_k or 1 over the targets "
        "(n_k = labelled rows), see polymodal.training.sampling.",
    )
    sampling_target: str | None = Field(
        None, description="The target whose classes 'class_balanced' evens; None: the first."
    )
    seed: int = 0
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    num_threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads of the training process. None: cores // (1 + num_workers), "
        "or the POLYMODAL_NUM_THREADS environment variable when set (see polymodal.runtime).",
    )
    accelerator: str = "auto"
    # Distribution (polymodal.training.distributed): Lightning launches the processes.
    devices: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1,
        description="Devices (GPUs, or CPU processes) per node; `train.batch_size` is per "
        "device, so the global batch is batch_size × devices × num_nodes × "
        "accumulate_grad_batches.",
    )
    num_nodes: int = Field(1, ge=1, description="Machines (SLURM / torchrun launch them).")
    strategy: Literal["auto", "ddp", "ddp_spawn", "fsdp", "deepspeed"] = Field(
        "auto",
        description="Lightning's strategy for several devices ('ddp' launches one process per "
        "device; 'fsdp' shards the weights; 'deepspeed' needs the deepspeed package).",
    )
    accumulate_grad_batches: int = Field(
        1, ge=1, description="Batches whose gradients add up before one optimiser step."
    )
    sync_batchnorm: bool | None = Field(
        None,
        description="Synchronise BatchNorm statistics across processes; None: on whenever "
        "the batch is split over several CUDA processes (PyTorch's SyncBatchNorm runs on CUDA "
        "only; CPU processes keep their own statistics). Frozen BatchNorm stays frozen.",
    )
    deterministic: bool = False
    cache: bool = Field(
        True,
        description="Cache decoded, preprocessed files on disk (second epoch decodes nothing).",
    )
    frozen_feature_store: bool = Field(
        True,
        description="Read an image modality whose backbone is frozen for good (image_timm with "
        "freeze: all, feature_cache: true) as the backbone's features, stored per file beside "
        "the sample cache, instead of its pixels: later epochs load no pixels and run no "
        "backbone. Needs cache: true.",
    )
    cache_max_gb: float | None = Field(
        None,
        gt=0,
        description="Cap on the sample cache's entries on disk, in GB (1e9 bytes): past it the "
        "least recently used entries are removed (shared safely by loader workers and ranks). "
        "None: no cap.",
    )
    cache_policy: Literal["lru", "keep"] = Field(
        "lru",
        description="What the cache_max_gb cap does when full: 'lru' evicts the least recently "
        "used entries; 'keep' stores no more entries. Each epoch reads every row once in a new "
        "order, so with a cap below one epoch's entries 'lru' evicts most entries before they are "
        "read again, while 'keep' hits the same fixed part of the cohort every epoch.",
    )
    cache_compress: bool = Field(
        False,
        description="Store sample-cache entries compressed (lossless zlib, bit-exact): about "
        "1.4x smaller for decoded photographs, far more for volumes with air or padding; "
        "costs some CPU per cache miss and hit.",
    )
    cache_memory_gb: float = Field(
        1.0,
        ge=0,
        description="Sample-cache entries also kept in memory, in GB (1e9 bytes) per training "
        "process (each DDP rank), shared out among the processes that read its samples (its "
        "loader workers, else itself): from the second epoch on a hit reads no file. 0: none.",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where the cache lives (default OUT/cache). Runs on the same cohort may share "
        "one: entries are keyed by file content and preprocessing settings.",
    )
    shards: str | None = Field(
        None,
        description="A folder written by `polymodal shards` (local, or s3:// / gs:// through "
        "LitData): the training and validation rows are read from its preprocessed items "
        "instead of the manifest's files (polymodal.data.shards). Refused when made from "
        "another cohort spec or manifest.",
    )
    log_every_n_steps: int = Field(10, ge=1)
