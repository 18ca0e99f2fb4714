"""The Lightning module: one training loop for every fusion core and target kind.

Training additions (distillation, gradient modulation) are :class:`TrainingPlugin` objects the
module calls at two points of a step; without plugins the loop is the plain one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from polymodal import targets
from polymodal.errors import PolymodalError
from polymodal.freezing import settle_frozen_modes
from polymodal.model import MultimodalModel
from polymodal.targets.predictions import PredictionCollector
from polymodal.training.acceleration import accelerate
from polymodal.training.config import TrainConfig
from polymodal.training.distributed import gather_predictions, sum_over_ranks
from polymodal.training.mixing import BatchMixing
from polymodal.training.param_groups import parameter_groups


def _fused_kernel(groups: Sequence[dict[str, Any]]) -> bool | None:
    """True where torch has a fused AdamW kernel for every parameter (floating point, on a CPU
    or a CUDA device): one pass per step instead of a Python loop over tensors, 3× as fast on
    a CPU (a ResNet-18's 11 M weights: 15 ms against 48). None keeps torch's own choice."""
    params = [p for group in groups for p in group["params"]]
    usable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if params and usable else None


def resolve_monitor(cfg: TrainConfig, target_infos: dict[str, dict]) -> tuple[str, str]:
    """The logged metric name and mode ('max'/'min') used for early stopping and checkpoints."""
    if cfg.monitor == "val/loss":
        return "val/loss", "min"
    if cfg.monitor != "auto":
        monitor = cfg.monitor
        if "/" not in monitor:
            # A bare metric name ("auprc_macro") is the first target's: a recipe fits any cohort.
            monitor = f"val/{next(iter(target_infos))}/{monitor}"
        return monitor, "min" if targets.lower_is_better(monitor) else "max"
    target, info = next(iter(target_infos.items()))
    metric, mode = targets.headline(info["kind"])
    return f"val/{target}/{metric}", mode


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class AmplitudeDecay:
    """CyclicLR ``scale_fn``: amplitude ``decay^(cycle − 1)`` (cycles count from 1).

    A callable object rather than a lambda so that the scheduler's state (and with it a
    Lightning checkpoint) keeps it.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, cycle: float) -> float:
        return self.decay ** (cycle - 1)


def cyclic_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.CyclicLR:
    """The EI recipe's schedule (methods.md §3.3), stepped every iteration.

    The lr climbs from ``cfg.cyclic_base_lr`` to ``cfg.lr`` over ``cfg.cyclic_step_epochs``
    epochs of iterations, falls back as fast, and each later cycle's amplitude is
    ``cfg.cyclic_decay`` times the one before.
    """
    # Per-group bounds: layer-wise lr decay scales both (``lr_scale``, 1 without it).
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.CyclicLR(
        optimizer,
        base_lr=[cfg.cyclic_base_lr * scale for scale in scales],
        max_lr=[cfg.lr * scale for scale in scales],
        step_size_up=max(1, round(cfg.cyclic_step_epochs * steps_per_epoch)),
        scale_fn=AmplitudeDecay(cfg.cyclic_decay),
        scale_mode="cycle",
        cycle_momentum=cfg.cycle_momentum,
    )


@dataclass
class TrainStep:
    """What one training forward produced, for the plugins.

    Attributes:
        encoded: ``{m: (tokens (B, N_m, D), mask (B, N_m))}`` from :meth:`MultimodalModel.encode`.
        availability: ``{m: (B,) bool}`` after modality dropout: what the fusion core saw.
        outputs: ``{"logits": {target: ...}, "features": (B, D_out)}`` from the fusion and heads.
    """

    encoded: dict[str, tuple[Tensor, Tensor]]
    availability: dict[str, Tensor]
    outputs: dict[str, Any]


class TrainingPlugin(nn.Module):
    """A training-time addition to :class:`PolymodalModule` (distillation, gradient modulation).

    A plugin is a module, so its own trainable parts (auxiliary heads, projections) are trained
    by the module's optimiser and saved in its checkpoints, but never in the exported model
    folder, which holds ``module.model`` only. Override either hook; the defaults do nothing.
    """

    def training_loss(
        self, module: PolymodalModule, batch: dict[str, Any], step: TrainStep
    ) -> dict[str, Tensor]:
        """Extra loss terms ``{name: scalar}``, each added to the loss and logged as ``train/<name>``."""
        return {}

    def before_optimizer_step(
        self, module: PolymodalModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Called after backward, before gradient clipping and the optimiser step."""


class PolymodalModule(L.LightningModule):
    """Wraps a :class:`MultimodalModel`: losses, AdamW or SGD with warm-up/cosine or cyclic lr,
    validation metrics.

    Args:
        model: the encoders + fusion core + heads.
        target_infos: ``{target: info}`` from the fitted preprocessing state.
        train_config: optimiser and schedule settings (with ``layer_decay`` the optimiser's
            groups of :func:`polymodal.training.param_groups.parameter_groups`; with
            ``label_smoothing`` the classification heads' training losses are smoothed).
        steps_per_epoch: optimiser steps per epoch (for the warm-up length).
        plugins: training additions, e.g. :class:`polymodal.training.distill.Distillation` and
            :class:`polymodal.training.modulation.GradientModulation`.
        mixing: mixup/CutMix of the training batches
            (:meth:`polymodal.training.mixing.BatchMixing.from_config`); None: no mixing.
    """

    def __init__(
        self,
        model: MultimodalModel,
        target_infos: dict[str, dict],
        train_config: TrainConfig,
        steps_per_epoch: int,
        plugins: Sequence[TrainingPlugin] = (),
        mixing: BatchMixing | None = None,
    ) -> None:
        super().__init__()
        self.model = accelerate(model, train_config)
        self.target_infos = target_infos
        self.train_config = train_config
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.plugins = nn.ModuleList(plugins)
        self.mixing = mixing
        self._val = PredictionCollector(target_infos)
        if train_config.label_smoothing > 0:
            smooth_labels(model, target_infos, train_config.label_smoothing)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.model(batch)

    def train(self, mode: bool = True) -> PolymodalModule:
        """Switch modes; frozen parts (:mod:`polymodal.freezing`) keep eval mode.

        Lightning sets modes by assignment around validation, bypassing this; the frozen parts
        compute in eval mode anyway. This keeps their flags truthful after a plain ``train()``.
        """
        super().train(mode)
        settle_frozen_modes(self)
        return self

    def training_progress(self) -> float:
        """Fraction of the planned optimiser steps already taken, in [0, 1]."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(1.0, self.trainer.global_step / total)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        mix = None
        if self.mixing is not None:
            batch, mix = self.mixing(batch)
        # The steps of model.forward, spelled out so the plugins can see the encoded streams.
        encoded, availability = self.model.encode(batch)
        availability = self.model.drop_modalities(availability)
        outputs = self.model.fuse(encoded, availability)
        total, per_target = self.model.loss(batch, outputs)
        if mix is not None:
            # λ·loss(own labels) + (1 − λ)·loss(partners' labels): the mixed label's loss.
            other_total, other = self.model.loss(mix.partner_targets(batch), outputs)
            total = mix.lam * total + (1 - mix.lam) * other_total
            per_target = {t: mix.lam * v + (1 - mix.lam) * other[t] for t, v in per_target.items()}
        bs = len(batch["ids"])
        for name, value in per_target.items():
            self.log(f"train/{name}/loss", value, batch_size=bs)
        step = TrainStep(encoded, availability, outputs)
        for plugin in self.plugins:
            for name, value in plugin.training_loss(self, batch, step).items():
                self.log(f"train/{name}", value, batch_size=bs)
                total = total + value
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for plugin in self.plugins:
            plugin.before_optimizer_step(self, optimizer)

    def on_validation_epoch_start(self) -> None:
        self._val.reset()
        self._val_loss = torch.zeros(2, dtype=torch.float64)  # Σ batch loss × rows, rows

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self.model(batch)
        total, _ = self.model.loss(batch, outputs)
        rows = len(batch["ids"])
        self._val_loss += torch.tensor([float(total) * rows, rows], dtype=torch.float64)
        self._val.add(batch, self.model.predictions_from_logits(outputs["logits"]))

    def on_validation_epoch_end(self) -> None:
        from polymodal.evaluation.metrics import compute_metrics

        # Under several processes: every rank scores the whole split, never its share.
        gather_predictions(self._val)
        # On the module's device: NCCL reduces only GPU tensors.
        loss_sum, rows = sum_over_ranks(self._val_loss.to(self.device)).tolist()
        if rows:  # the row-weighted mean of the batches' losses, as one process logs it
            self.log("val/loss", loss_sum / rows, prog_bar=True)
        for target, info in self.target_infos.items():
            y_true, pred, _ = self._val.arrays(target)
            if len(y_true) == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                metrics = compute_metrics(
                    info["kind"],
                    y_true,
                    pred,
                    classes=info.get("classes"),
                    horizons=info.get("horizons"),
                )
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    self.log(
                        f"val/{target}/{name}",
                        float(value),
                        prog_bar=name == targets.get(info["kind"]).headline,
                    )

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.train_config
        # The plugins' own parameters (auxiliary heads, projections) train too. Norms, biases
        # and other 1-D tensors are not weight-decayed.
        groups = parameter_groups(
            self, lr=cfg.lr, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay
        )
        if cfg.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=cfg.lr, momentum=cfg.momentum
            )
        else:
            # Lightning refuses to clip the gradients of a fused optimizer under mixed precision
            # (it unscales them inside its step), so there torch's own choice stays.
            clips_scaled = cfg.precision != "32" and cfg.gradient_clip is not None
            fused = None if clips_scaled else _fused_kernel(groups)
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
        if cfg.schedule == "cyclic":
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": cyclic_schedule(optimizer, cfg, self.steps_per_epoch),
                    "interval": "step",
                },
            }
        total = int(self.trainer.estimated_stepping_batches)
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        # One multiplier for every group: layer-wise ratios hold through warm-up and decay.
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(
                step, warmup_steps=warmup, total_steps=total, min_ratio=cfg.min_lr_ratio
            ),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def smooth_labels(model: nn.Module, target_infos: dict[str, dict], epsilon: float) -> None:
    """Set label smoothing ``epsilon`` on the heads of the targets whose loss is a cross-entropy
    (binary, multiclass, multilabel: their training losses; other kinds are not smoothed).

    Raises:
        PolymodalError: no target is of those kinds.
    """
    smoothed = [t for t, info in target_infos.items() if targets.get(info["kind"]).cross_entropy]
    if not smoothed:
        kinds = ", ".join(f"{t} ({info.get('kind')})" for t, info in target_infos.items())
        raise PolymodalError(
            f"train.label_smoothing={epsilon} applies to "
            f"{targets.listing(targets.names_where(cross_entropy=True), 'and')} "
            f"targets, and this run has none ({kinds or 'no targets'}); set it to 0"
        )
    for target in smoothed:
        model.heads[target].label_smoothing = epsilon
