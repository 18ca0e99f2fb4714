"""The Early Intervention loss (methods.md §3.3): a training plugin for a core with per-branch outputs.

The fused prediction alone says nothing to the branches when the core detaches them
(``detach_branches: true``, the paper's setting): the paper trains each branch with its own loss
and supervises the router with the branch that predicts a sample best::

    L = mm · ℓ(fused, y)                       the model's own task loss (mm = 1: added as is)
      + first  · Σ_m ℓ(s¹_m, y)                s¹_m = aux head(CLS of pass 1 of image m)
      + second · Σ_m ℓ(s²_m, y)                s²_m = the target's head(branch feature of m)
      + route  · CE(w, r*)                     r* = argmin_m π_m · ℓ(s²_m, y), per sample

with ℓ the target's own loss (binary and multilabel: BCE, multiclass: cross-entropy, class
weights included)
and the weights mm 1.0, first 0.3, second 1.0, route 0.1. s²_m goes through the model's head
of the target, so the fused logits are exactly Σ_m w_m · s²_m (the head is affine and the
router weights of a sample sum to 1). s¹_m needs a head of its own (the pass-1 CLS has the
backbone's width): one per reference image and target, kept in this plugin, trained, never
exported. Missing data: a branch term averages over the labelled samples that have that image;
the router term over the labelled samples with at least two images (one image leaves the router
nothing to choose), and r* is taken among a sample's present images only.

Router supervision details of the official code, kept here: the priors π favour the last image
modality (π = 1, …, 1, 0.001 by default, as in every published config), and the target uses the
plain per-sample loss (no class weights). The code feeds the router's *probabilities* into
``cross_entropy`` as if they were logits; ``route_probabilities_as_logits: true`` reproduces
that, the default uses the probabilities as probabilities (−log w_{r*}).

A multilabel target (MRNet's three knee findings) supervises the router with a soft r*: each
label picks its best branch, and r* is the share of labels each branch wins
(:func:`router_soft_target`; the paper's "multi-hot soft targets", formula reconstructed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from polymodal import targets
from polymodal.errors import ModelError
from polymodal.fusion import CORES
from polymodal.heads import PerSampleHead, create_head
from polymodal.model import MultimodalModel
from polymodal.training.adapter_source import init_core_adapters
from polymodal.training.module import PolymodalModule, TrainingPlugin, TrainStep

# What the loss reads of the fusion core's outputs (FusionCore.auxiliary_outputs).
BRANCH_OUTPUTS = ("branch_features", "branch_available", "router_weights", "reference_cls")
# π of the last image modality when no priors are given: the official configs' (1, 0.001).
LAST_PRIOR = 0.001


class InterventionLossConfig(BaseModel):
    """``intervention_loss:`` in a run config (needs a fusion core with per-branch outputs)."""

    model_config = ConfigDict(extra="forbid")

    mm_loss_weight: float = Field(
        1.0, ge=0, description="Weight of the fused prediction's loss (the model's task loss)."
    )
    first_single_loss_weight: float = Field(
        0.3, ge=0, description="Weight of Σ_m ℓ(s¹_m, y), the pass-1 (reference) predictions."
    )
    second_single_loss_weight: float = Field(
        1.0, ge=0, description="Weight of Σ_m ℓ(s²_m, y), the pass-2 (target) predictions."
    )
    route_sup_loss_weight: float = Field(
        0.1, ge=0, description="Weight of the router supervision CE(w, r*)."
    )
    priors: dict[str, float] | None = Field(
        None,
        description="π per image modality in r* = argmin_m π_m·ℓ(s²_m, y); a lower π favours "
        "that branch. None: 1 for each image modality and 0.001 for the last one (the paper's).",
    )
    init_from: dict[str, Path] | None = Field(
        None,
        description="The paper's two-step protocol: image modality -> a single-image model "
        "folder trained with adapters (configs/ei/mor.yaml) or an adapter folder; both adapter "
        "sets of that modality start from its adapters. None: adapters start at identity.",
    )
    route_probabilities_as_logits: bool = Field(
        False,
        description="Feed the router's probabilities to cross_entropy as logits, as the official "
        "code does; False uses −log w_{r*}.",
    )


def router_target(branch_losses: Tensor, branch_available: Tensor, priors: Tensor) -> Tensor:
    """r* per sample: the present branch with the lowest ``π_m · loss_m``.

    Args:
        branch_losses: (B, M) per-sample loss of each branch's prediction.
        branch_available: (B, M) bool, True where the sample has that image.
        priors: (M,) π.

    Returns:
        (B,) long branch index (0 for a sample without any branch; such rows are never used).
    """
    scaled = branch_losses * priors.to(branch_losses)[None, :]  # (B, M)
    scaled = scaled.masked_fill(~branch_available, float("inf"))
    return scaled.argmin(dim=1)


def router_soft_target(column_losses: Tensor, branch_available: Tensor, priors: Tensor) -> Tensor:
    """r* as a distribution over branches, from several loss columns per sample.

    For a multilabel target the paper's MRNet setting supervises the router with "multi-hot
    soft targets" [reconstructed: methods.md §3.3 gives no formula]: here each column (one per
    label, plus one for the summed single-label targets) picks its best present branch by
    ``π_m · loss_m``, and the target is the share of columns each branch wins. With one column
    this is the one-hot of :func:`router_target`.

    Args:
        column_losses: (B, M, K) per-sample loss of each branch in each of K columns.
        branch_available: (B, M) bool.
        priors: (M,) π.

    Returns:
        (B, M) non-negative rows summing to 1 (0 on absent branches).
    """
    scaled = column_losses * priors.to(column_losses)[None, :, None]  # (B, M, K)
    scaled = scaled.masked_fill(~branch_available[:, :, None], float("inf"))
    best = scaled.argmin(dim=1)  # (B, K)
    won = F.one_hot(best, num_classes=column_losses.shape[1]).to(column_losses.dtype)  # (B, K, M)
    return won.mean(dim=1)


def route_supervision_loss(
    router_weights: Tensor,
    target: Tensor,
    branch_available: Tensor,
    rows: Tensor,
    *,
    probabilities_as_logits: bool = False,
) -> Tensor:
    """Mean over ``rows`` of the router's cross-entropy against ``target``; 0 without rows.

    Args:
        router_weights: (B, M) softmax weights over the present branches (0 for absent ones).
        target: (B,) long r*, or (B, M) soft r* (:func:`router_soft_target`).
        branch_available: (B, M) bool.
        rows: (B,) bool, the samples that count.
        probabilities_as_logits: the official code's ``cross_entropy(w, r*)``: a softmax over
            the probabilities themselves (of the present branches), not −log w_{r*}.
    """
    tiny = torch.finfo(router_weights.dtype).tiny
    if target.dim() == 2:  # soft r*: −Σ_m t_m log w_m
        if probabilities_as_logits:
            # A finite floor, not -inf: 0 · (−inf) would be NaN for the absent branches.
            logits = router_weights.masked_fill(
                ~branch_available, torch.finfo(router_weights.dtype).min
            )
            values = F.cross_entropy(logits[rows], target[rows], reduction="none")
        else:
            values = -(target[rows] * router_weights[rows].clamp_min(tiny).log()).sum(dim=1)
    elif probabilities_as_logits:
        logits = router_weights.masked_fill(~branch_available, float("-inf"))
        values = F.cross_entropy(logits[rows], target[rows], reduction="none")
    else:
        chosen = router_weights[rows].gather(1, target[rows, None]).squeeze(1)  # (R,)
        values = -chosen.clamp_min(tiny).log()
    if values.numel() == 0:
        return router_weights.sum() * 0.0
    return values.mean()


def _per_label_loss(logits: Tensor, target: Tensor, labeled: Tensor) -> Tensor:
    """Unweighted BCE per sample and label ``(B, C)``, 0 where unlabelled."""
    target = torch.where(labeled[:, None], target.to(logits.dtype), torch.zeros_like(logits))
    values = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return torch.where(labeled[:, None], values, torch.zeros_like(values))


def _per_sample_loss(
    head: PerSampleHead, logits: Tensor, target: Tensor, labeled: Tensor
) -> Tensor:
    """Unweighted per-sample loss ``(B,)``, 0 where unlabelled (their targets are never read)."""
    shape = (-1,) + (1,) * (target.dim() - 1)
    target = torch.where(labeled.view(shape), target, torch.zeros_like(target))
    values, _ = head.per_sample_loss(logits.float(), target)
    return torch.where(labeled, values, torch.zeros_like(values))


class InterventionLoss(TrainingPlugin):
    """The EI loss plugin of :class:`PolymodalModule` (see the module docstring).

    Args:
        config: weights, priors and the probabilities-as-logits switch.
        images: the core's image modalities in its order (``core.images``).
        reference_images: those with a pass-1 CLS (``core.reference_passes``); each gets an
            auxiliary head per target for s¹.
        embed_dim: width E of the backbone's CLS.
        target_infos: ``{target: info}``; every target must be binary, multiclass or multilabel.

    Raises:
        ModelError: a target of another kind, or priors naming a modality that is not an image
            modality of the core.
    """

    def __init__(
        self,
        config: InterventionLossConfig,
        *,
        images: tuple[str, ...],
        reference_images: tuple[str, ...],
        embed_dim: int,
        target_infos: dict[str, dict[str, Any]],
    ) -> None:
        super().__init__()
        # The per-branch losses are cross-entropies, comparable between branches.
        other = {
            t: info["kind"]
            for t, info in target_infos.items()
            if not targets.get(info["kind"]).cross_entropy
        }
        if other:
            supported = targets.listing(targets.names_where(cross_entropy=True), "and")
            raise ModelError(
                f"intervention_loss supports {supported} targets; {other} "
                "are not. "
                "Remove the intervention_loss section (and core_options.detach_branches) or "
                "those targets"
            )
        self.config = config
        self.images = tuple(images)
        self.target_names = tuple(target_infos)
        self.multi_label = {t: targets.get(i["kind"]).multi_label for t, i in target_infos.items()}
        unknown = sorted(set(config.priors or {}) - set(images))
        if unknown:
            raise ModelError(
                f"intervention_loss.priors names {unknown}, which are not image modalities of "
                f"the fusion core ({', '.join(images)})"
            )
        default = [1.0] * (len(images) - 1) + [LAST_PRIOR]
        priors = [
            float((config.priors or {}).get(m, default[i])) for i, m in enumerate(self.images)
        ]
        self.register_buffer("priors", torch.tensor(priors), persistent=False)
        self.reference_heads = nn.ModuleDict(
            {
                m: nn.ModuleDict(
                    {t: create_head(t, info, in_dim=embed_dim) for t, info in target_infos.items()}
                )
                for m in reference_images
            }
        )

    @classmethod
    def from_config(
        cls,
        config: InterventionLossConfig,
        *,
        model: MultimodalModel,
        target_infos: dict[str, dict],
    ) -> InterventionLoss:
        """The plugin for ``model``, whose fusion core must output per-branch features
        (:data:`BRANCH_OUTPUTS` among its ``auxiliary_outputs``). ``init_from`` folders are read
        here and only their tensors handed to the core."""
        core = model.core
        if not set(BRANCH_OUTPUTS) <= set(core.auxiliary_outputs):
            cores = [n for n, c in CORES.items() if set(BRANCH_OUTPUTS) <= set(c.auxiliary_outputs)]
            raise ModelError(
                f"intervention_loss needs model.core: {' or '.join(cores)} (a fusion core with "
                f"per-branch outputs); this model's core is {core.core_name!r}. Remove the "
                "intervention_loss section or change model.core"
            )
        init_core_adapters(core, config.init_from or {})
        return cls(
            config,
            images=core.images,
            reference_images=tuple(core.reference_passes),
            embed_dim=core.embed_dim,
            target_infos=target_infos,
        )

    def terms(
        self, model: MultimodalModel, batch: dict[str, Any], branches: dict[str, Any]
    ) -> dict[str, Tensor]:
        """The weighted extra terms from one forward's auxiliary outputs of the core
        (``outputs["auxiliary"]``, holding :data:`BRANCH_OUTPUTS`).

        Returns ``{"ei/first", "ei/second", "ei/route"}`` (and ``"ei/mm_extra"``, the
        (mm − 1)-weighted task loss, when ``mm_loss_weight`` is not 1), each a scalar.
        """
        cfg = self.config
        targets, target_mask = batch.get("targets", {}), batch.get("target_mask", {})
        available = branches["branch_available"]  # (B, M)
        zero = branches["router_weights"].sum() * 0.0
        first, second = zero, zero
        # Per-sample loss of each branch's s², summed over the single-label targets: (B, M),
        # for r*; a multilabel target adds one (B, M) column per label instead.
        branch_losses = torch.zeros_like(available, dtype=torch.float32)
        label_columns: list[Tensor] = []
        single_label_seen = False
        labelled_any = torch.zeros_like(available[:, 0])  # (B,)
        for target in self.target_names:
            if target not in targets or target not in target_mask:
                continue
            head = model.heads[target]
            labeled = target_mask[target].bool()
            labelled_any = labelled_any | labeled
            multilabel = self.multi_label[target]
            single_label_seen = single_label_seen or not multilabel
            per_label = []
            for i, image in enumerate(self.images):
                present = labeled & available[:, i]
                s2 = head(branches["branch_features"][image])
                second = second + head.loss(s2, targets[target], present)
                with torch.no_grad():
                    if multilabel:
                        per_label.append(_per_label_loss(s2, targets[target], present))
                    else:
                        branch_losses[:, i] += _per_sample_loss(head, s2, targets[target], present)
                if image in branches["reference_cls"] and image in self.reference_heads:
                    aux = self.reference_heads[image][target]
                    s1 = aux(branches["reference_cls"][image])
                    first = first + aux.loss(s1, targets[target], present)
            if multilabel:
                label_columns.append(torch.stack(per_label, dim=1))  # (B, M, C)
        terms = {
            "ei/first": cfg.first_single_loss_weight * first,
            "ei/second": cfg.second_single_loss_weight * second,
        }
        if len(self.images) > 1:
            rows = labelled_any & (available.sum(dim=1) >= 2)
            if label_columns:
                columns = ([branch_losses[:, :, None]] if single_label_seen else []) + label_columns
                r_star = router_soft_target(torch.cat(columns, dim=2), available, self.priors)
            else:
                r_star = router_target(branch_losses, available, self.priors)
            route = route_supervision_loss(
                branches["router_weights"],
                r_star,
                available,
                rows,
                probabilities_as_logits=cfg.route_probabilities_as_logits,
            )
            terms["ei/route"] = cfg.route_sup_loss_weight * route
        return terms

    def training_loss(
        self, module: PolymodalModule, batch: dict[str, Any], step: TrainStep
    ) -> dict[str, Tensor]:
        model = module.model
        # What this step's fuse computed beside the fused features (branch features, router
        # weights, …): the core's auxiliary outputs.
        terms = self.terms(model, batch, step.outputs["auxiliary"])
        if self.config.mm_loss_weight != 1.0:
            # The module already adds the fused loss once; scale it to mm_loss_weight.
            task_loss, _ = model.loss(batch, step.outputs)
            terms["ei/mm_extra"] = (self.config.mm_loss_weight - 1.0) * task_loss
        return terms
