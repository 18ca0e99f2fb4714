"""Gradient modulation against a dominant modality: OGM-GE (Peng et al., CVPR 2022) for M modalities.

A modality that learns faster than the others dominates the fused prediction and starves them
of gradient. On-the-fly gradient modulation measures, every step, how well each modality alone
predicts the labels and slows the encoders of the modalities that are ahead:

1. an auxiliary unimodal head per modality and target reads that modality's masked-mean pooled
   tokens; s_m = mean over the batch's labelled samples that have modality m of the likelihood
   the head gives the true label, exp(−per-sample loss): for a classification target the
   probability of the true class, as in OGM-GE;
2. ρ_m = s_m / mean_{j≠m} s_j;
3. k_m = 1 − tanh(α·(ρ_m − 1)) when ρ_m > 1, else 1;
4. after backward and before the optimiser step, the gradients of encoder m are multiplied by
   k_m; with Gaussian enhancement (the "GE") noise N(0, std(original gradient)²) is added to
   each of those gradient tensors, restoring the gradient noise the damping took away.

Modulation is active for the fraction ``[start, end)`` of the planned training steps; the
coefficients (1 when inactive) are logged every step as ``train/gm/<modality>``. The auxiliary
heads are trained with their own loss (logged as ``train/gm_aux/loss``); they are a training
device of the Lightning module only and never part of the exported model folder.

Choices beyond OGM-GE's two-modality paper, all marked ``provenance: recon`` (methods.md §4.3):
the generalisation to M modalities through the mean of the others, α = 0.5, modulation during
the first half of training, and noise only on the encoders that were actually damped (k < 1),
so a balanced run is left exactly as it would be without modulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.heads import PerSampleHead, create_head
from polymodal.layers.pooling import masked_mean
from polymodal.model import MultimodalModel
from polymodal.training.module import PolymodalModule, TrainingPlugin, TrainStep

# Marks a default that methods.md labels [recon] (shown in the JSON schema of the config).
RECON = {"provenance": "recon"}


class ModulationConfig(BaseModel):
    """``modulation:`` in a run config."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Switch the whole plugin off while keeping the section."
    )
    alpha: float = Field(
        0.5, ge=0, description="Strength α of the damping.", json_schema_extra=RECON
    )
    gaussian_enhancement: bool = Field(
        True,
        description="Add N(0, std(grad)²) to the damped gradients (OGM-GE).",
        json_schema_extra=RECON,
    )
    start: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of training where it starts.",
        json_schema_extra=RECON,
    )
    end: float = Field(
        0.5, ge=0, le=1, description="Fraction of training where it stops.", json_schema_extra=RECON
    )
    auxiliary_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the auxiliary unimodal heads' loss.",
        json_schema_extra=RECON,
    )
    auxiliary_trains_encoders: bool = Field(
        False,
        description="Let the auxiliary losses reach the encoders too (unimodal auxiliary losses); "
        "False keeps the heads pure probes of what each encoder already knows.",
        json_schema_extra=RECON,
    )

    @model_validator(mode="after")
    def _window_is_ordered(self) -> ModulationConfig:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        return self


def modulation_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """OGM-GE coefficients for M modalities: ``{m: k_m}``, each in (0, 1].

    ``scores`` maps a modality to its confidence s_m (> 0), or to NaN when this batch gives no
    evidence for it (no labelled sample has it); such a modality gets k = 1 and is left out of
    the others' comparison. Exactly 1 for every modality when the scores are equal.
    """
    known = {m: s for m, s in scores.items() if math.isfinite(s)}
    coefficients = dict.fromkeys(scores, 1.0)
    if len(known) < 2:
        return coefficients
    for modality, score in known.items():
        others = [s for m, s in known.items() if m != modality]
        ratio = score / max(sum(others) / len(others), 1e-12)
        if ratio > 1.0:
            coefficients[modality] = 1.0 - math.tanh(alpha * (ratio - 1.0))
    return coefficients


def scale_gradients(module: nn.Module, coefficient: float, *, gaussian_enhancement: bool) -> None:
    """Multiply every gradient of ``module`` by ``coefficient`` (in place), optionally plus noise.

    The noise of each tensor has the standard deviation of that tensor's original gradient.
    """
    for param in module.parameters():
        if param.grad is None:
            continue
        grad = param.grad
        spread = grad.std() if gaussian_enhancement and grad.numel() > 1 else None
        grad.mul_(coefficient)
        if spread is not None:
            grad.add_(torch.randn_like(grad) * spread)


class GradientModulation(TrainingPlugin):
    """The OGM-GE plugin of :class:`PolymodalModule`.

    Args:
        config: α, enhancement, active window, auxiliary loss weight.
        modalities: the modalities whose encoders are modulated (``model.modalities``).
        dim: token width D of the encoders.
        target_infos: ``{target: info}``; every target with a per-sample loss gets an auxiliary
            head per modality (Cox targets, whose loss needs the whole batch, do not).

    Raises:
        ModelError: fewer than two modalities, or no target with a per-sample loss.
    """

    def __init__(
        self,
        config: ModulationConfig,
        *,
        modalities: tuple[str, ...] | list[str],
        dim: int,
        target_infos: dict[str, dict[str, Any]],
    ) -> None:
        super().__init__()
        if len(modalities) < 2:
            raise ModelError(
                f"gradient modulation balances modalities against each other; the model reads "
                f"{len(modalities)} ({', '.join(modalities) or 'none'}). Remove 'modulation' from "
                "the run config or use a fusion core over several modalities"
            )
        self.config = config
        self.norms = nn.ModuleDict({m: nn.LayerNorm(dim) for m in modalities})
        self.heads = nn.ModuleDict()
        for modality in modalities:
            per_target = {t: create_head(t, info, in_dim=dim) for t, info in target_infos.items()}
            self.heads[modality] = nn.ModuleDict(
                {t: h for t, h in per_target.items() if isinstance(h, PerSampleHead)}
            )
        if not any(len(h) for h in self.heads.values()):
            raise ModelError(
                "gradient modulation needs a target with a per-sample loss (binary, multiclass, "
                "multilabel, regression or discrete-time survival); this cohort has only Cox "
                "targets. Remove 'modulation' from the run config"
            )
        # Coefficients of the current step, computed in training_loss and applied after backward.
        self.pending: dict[str, float] = {}

    @classmethod
    def from_config(
        cls,
        config: ModulationConfig,
        *,
        model: MultimodalModel,
        dim: int,
        target_infos: dict[str, dict],
    ) -> GradientModulation:
        """The plugin for ``model``'s modalities (its encoders are the ones modulated)."""
        return cls(config, modalities=model.modalities, dim=dim, target_infos=target_infos)

    def is_active(self, progress: float) -> bool:
        """Whether modulation acts at ``progress`` (fraction of the planned steps)."""
        return self.config.start <= progress < self.config.end

    def auxiliary(self, batch: dict[str, Any], step: TrainStep) -> tuple[Tensor, dict[str, float]]:
        """Auxiliary loss (weighted) and the confidence s_m of each modality (NaN: no evidence).

        Reads each modality's tokens ``(B, N_m, D)``, masked-mean pooled to ``(B, D)`` over the
        valid tokens of the samples that have the modality in this step.
        """
        targets, target_mask = batch.get("targets", {}), batch.get("target_mask", {})
        total = None
        scores: dict[str, float] = {}
        for modality, heads in self.heads.items():
            if modality not in step.encoded:
                scores[modality] = float("nan")
                continue
            tokens, mask = step.encoded[modality]
            present = step.availability[modality] & mask.bool().any(dim=1)  # (B,)
            if not self.config.auxiliary_trains_encoders:
                tokens = tokens.detach()
            valid = mask.bool() & present[:, None]  # (B, N_m)
            pooled = self.norms[modality](masked_mean(tokens, valid))  # (B, D)
            confidences = []
            for name, head in heads.items():
                if name not in targets or name not in target_mask:
                    continue
                logits = head(pooled)
                labeled = target_mask[name].bool() & present
                loss = head.loss(logits, targets[name], labeled)
                total = loss if total is None else total + loss
                if bool(labeled.any()):
                    confidences.append(self._confidence(head, logits, targets[name], labeled))
            scores[modality] = sum(confidences) / len(confidences) if confidences else float("nan")
        if total is None:
            total = next(self.parameters()).sum() * 0.0
        return self.config.auxiliary_weight * total, scores

    @staticmethod
    @torch.no_grad()
    def _confidence(head: PerSampleHead, logits: Tensor, target: Tensor, labeled: Tensor) -> float:
        """Mean likelihood of the true label, exp(−per-sample loss), over the labelled samples."""
        shape = (-1,) + (1,) * (target.dim() - 1)
        # Unlabelled targets may hold anything (NaN); they never reach the loss function.
        target = torch.where(labeled.view(shape), target, torch.zeros_like(target))
        values, _ = head.per_sample_loss(logits.float(), target)
        return float(torch.exp(-values[labeled]).mean())

    def training_loss(
        self, module: PolymodalModule, batch: dict[str, Any], step: TrainStep
    ) -> dict[str, Tensor]:
        auxiliary_loss, scores = self.auxiliary(batch, step)
        active = self.is_active(module.training_progress())
        coefficients = (
            modulation_coefficients(scores, self.config.alpha)
            if active
            else dict.fromkeys(scores, 1.0)
        )
        self.pending = coefficients
        bs = len(batch["ids"])
        for modality, coefficient in coefficients.items():
            module.log(f"train/gm/{modality}", coefficient, batch_size=bs)
            if math.isfinite(scores[modality]):
                module.log(f"train/gm_score/{modality}", scores[modality], batch_size=bs)
        return {"gm_aux/loss": auxiliary_loss}

    def before_optimizer_step(
        self, module: PolymodalModule, optimizer: torch.optim.Optimizer
    ) -> None:
        for modality, coefficient in self.pending.items():
            if coefficient < 1.0:
                scale_gradients(
                    module.model.encoders[modality],
                    coefficient,
                    gaussian_enhancement=self.config.gaussian_enhancement,
                )
        self.pending = {}
