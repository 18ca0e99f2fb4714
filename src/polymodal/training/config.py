"""Training settings: optimiser, schedule, precision, early stopping, checkpoints, seed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """How to train. Defaults suit a small cohort on a CPU; raise epochs and batch for real data."""

    model_config = ConfigDict(extra="forbid")

    max_epochs: int = Field(
        30, ge=1, description="Upper bound on epochs (early stopping may end sooner)."
    )
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate after warm-up.")
    weight_decay: float = Field(0.01, ge=0)
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length, then cosine decay.")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="Final lr as a fraction of the peak.")
    precision: Literal["32", "16-mixed", "bf16-mixed"] = Field(
        "32", description="Mixed precision switch: '16-mixed' on GPU, 'bf16-mixed' on CPU or GPU."
    )
    monitor: str = Field(
        "auto",
        description="Validation metric for early stopping and the best checkpoint, e.g. "
        "'val/label/auroc' or 'val/loss'; 'auto' picks the first target's main metric.",
    )
    early_stopping_patience: int | None = Field(
        8, ge=1, description="Epochs without improvement; None disables."
    )
    gradient_clip: float | None = Field(1.0, gt=0)
    seed: int = 0
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    accelerator: str = "auto"
    deterministic: bool = False
    cache: bool = Field(
        True,
        description="Cache decoded, preprocessed files on disk (second epoch decodes nothing).",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where the cache lives (default OUT/cache). Runs on the same cohort may share "
        "one: entries are keyed by file content and preprocessing settings.",
    )
    log_every_n_steps: int = Field(10, ge=1)
