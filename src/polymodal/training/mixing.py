"""Mixup and CutMix of training batches (``train.mixup``, ``train.cutmix``, ``train.mix_prob``).

With probability ``mix_prob`` a training batch is mixed: each sample ``i`` is paired with a
partner ``j = partner[i]`` and one ``λ`` is drawn for the batch (timm's "batch" mode):

* mixup: ``λ ~ Beta(α, α)``; every image input becomes ``λ·x_i + (1 − λ)·x_j``;
* CutMix: a box of about ``(1 − λ)`` of the image (timm's ``cutmix_bbox_and_lam``, λ then
  corrected to the box actually pasted) is copied from ``x_j`` into ``x_i``;
* with both α set, each mixed batch uses one or the other with equal probability.

The label follows ``λ``: the loss is ``λ·loss(y_i) + (1 − λ)·loss(y_j)``, which for the
cross-entropy kinds (binary, multiclass, multilabel; linear in the target) is the loss against
the soft label ``λ·y_i + (1 − λ)·y_j``; each term averages over its own labelled rows.

Only the image inputs are mixed. The other modalities (tabular, text, series, volumes) keep
sample ``i``'s values, the common practice of image-only mixing in multimodal training: the
``(1 − λ)`` share of the label then comes with ``i``'s non-image inputs, so mixing mostly
regularises the image branch. A sample is paired only with samples whose images are present in
the same places (the same available image modalities and views), so a missing image, whose
pixels are stand-ins, is never mixed into a real one; a sample without any image, or alone with
its pattern in the batch, is its own partner (unmixed, its label intact).

Every draw comes from NumPy's global generator, which :class:`polymodal.training.epoch_seeds.
SeedEachEpoch` reseeds each epoch, so a resumed run mixes as the uninterrupted one did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polymodal import targets
from polymodal.errors import PolymodalError
from polymodal.modalities import get as get_kind
from polymodal.training.config import TrainConfig

KEYS = "train.mixup/train.cutmix"


@dataclass
class Mix:
    """One mixed batch: ``partner`` (B,) long, the sample mixed into each; ``lam`` the weight of
    each sample's own label."""

    partner: Tensor
    lam: float

    def partner_targets(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The partners' ``targets`` and ``target_mask``, for :meth:`MultimodalModel.loss`."""
        index = self.partner.to(next(iter(batch["target_mask"].values())).device)
        return {
            "targets": {t: v[index] for t, v in batch.get("targets", {}).items()},
            "target_mask": {t: v[index] for t, v in batch.get("target_mask", {}).items()},
        }


class BatchMixing:
    """Mixes the image inputs of training batches; see the module docstring.

    Args:
        mixup: mixup α (0: off).
        cutmix: CutMix α (0: off).
        prob: probability that a batch is mixed.
        images: the image modalities to mix (their ``pixels`` (B, V, C, H, W) and
            ``view_mask`` (B, V)).
    """

    def __init__(self, *, mixup: float, cutmix: float, prob: float, images: Iterable[str]):
        self.mixup = mixup
        self.cutmix = cutmix
        self.prob = prob
        self.images = tuple(images)

    @classmethod
    def from_config(
        cls,
        cfg: TrainConfig,
        *,
        model: nn.Module,
        input_kinds: dict[str, str],
        target_infos: dict[str, dict],
        plugins: Iterable[str] = (),
    ) -> BatchMixing | None:
        """The mixing ``cfg`` asks for, or None when both α are 0. ``plugins``: the run's
        training plugins whose losses read each sample's own label (``FitPlugin.reads_labels``).

        Raises:
            PolymodalError: naming the keys, when the run cannot be mixed honestly: not exactly
                one target, a target that is not binary/multiclass/multilabel, no image modality
                in the model, an image encoder with a feature or stage cache (it would keep an
                entry per mixed image), or a plugin whose loss reads per-sample labels.
        """
        if cfg.mixup == 0 and cfg.cutmix == 0:
            return None
        kinds = {t: info["kind"] for t, info in target_infos.items()}
        # A kind whose loss is a cross-entropy, linear in the target: the mixed label is exact.
        if len(kinds) != 1 or not targets.get(next(iter(kinds.values()))).cross_entropy:
            mixable = targets.listing(targets.names_where(cross_entropy=True))
            raise PolymodalError(
                f"{KEYS} mix the labels of a single {mixable} target; this "
                f"run has {', '.join(f'{t} ({k})' for t, k in kinds.items())}. Set train.mixup "
                "and train.cutmix to 0, or train one classification target"
            )
        modalities = getattr(model, "modalities", ())
        images = [m for m in modalities if m in input_kinds and get_kind(input_kinds[m]).pixels_2d]
        if not images:
            raise PolymodalError(
                f"{KEYS} mix image inputs, but the model reads no image modality "
                f"({', '.join(modalities) or 'none'}); set train.mixup and train.cutmix to 0"
            )
        encoders = getattr(model, "encoders", {})
        cached = [m for m in images if m in encoders and getattr(encoders[m], "feature_cache", 0)]
        if cached:
            raise PolymodalError(
                f"{KEYS}: the image encoder of {', '.join(cached)} has feature_cache on, which "
                "would store the features of every mixed image; mix when fine-tuning without "
                "the cache (feature_cache: false), or set train.mixup and train.cutmix to 0"
            )
        # Their losses would see the unmixed labels of mixed images.
        reading = list(plugins)
        if reading:
            raise PolymodalError(
                f"{KEYS} cannot be combined with {', '.join(reading)}: its per-branch losses "
                "read each sample's own label, not the mixed one. Remove one or the other"
            )
        return cls(mixup=cfg.mixup, cutmix=cfg.cutmix, prob=cfg.mix_prob, images=images)

    def __call__(self, batch: dict[str, Any]) -> tuple[dict[str, Any], Mix | None]:
        """``batch`` with its image inputs mixed and the :class:`Mix`, or unchanged and None."""
        images = [m for m in self.images if m in batch.get("inputs", {})]
        if not images or np.random.random_sample() >= self.prob:
            return batch, None
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or np.random.random_sample() < 0.5)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(np.random.beta(alpha, alpha))
        partner = self.partners(batch, images)
        inputs = dict(batch["inputs"])
        first = batch["inputs"][images[0]]["pixels"]
        if use_cutmix:
            box, lam = _cutmix_box(first.shape[-2:], lam)
        for m in images:
            fields = dict(inputs[m])
            pixels = fields["pixels"]
            other = pixels[partner.to(pixels.device)]
            if use_cutmix:
                fields["pixels"] = _paste(pixels, other, box, first.shape[-2:])
            else:
                fields["pixels"] = pixels * lam + other * (1 - lam)
            inputs[m] = fields
        return {**batch, "inputs": inputs}, Mix(partner, lam)

    @staticmethod
    def partners(batch: dict[str, Any], images: list[str]) -> Tensor:
        """(B,) partner of each sample: a random one with the same image pattern (available
        image modalities and views), itself when it has no image."""
        columns = []
        for m in images:
            available = batch["available"][m].bool().cpu()
            columns += [available[:, None], batch["inputs"][m]["view_mask"].bool().cpu()]
            columns[-1] = columns[-1] & available[:, None]
        patterns = torch.cat(columns, dim=1)  # (B, P)
        partner = torch.arange(len(patterns))
        for pattern in torch.unique(patterns, dim=0):
            if not bool(pattern.any()):
                continue  # no image at all: nothing to mix
            members = (patterns == pattern).all(dim=1).nonzero().squeeze(1)
            partner[members] = members[torch.from_numpy(np.random.permutation(len(members)))]
        return partner


def _cutmix_box(size: torch.Size, lam: float) -> tuple[tuple[int, int, int, int], float]:
    """timm's CutMix box ``(top, bottom, left, right)`` in an image of ``size`` (H, W), and λ
    corrected to the box's area."""
    from timm.data.mixup import cutmix_bbox_and_lam

    box, corrected = cutmix_bbox_and_lam(tuple(size), lam, correct_lam=True)
    return tuple(int(v) for v in box), float(corrected)


def _paste(
    pixels: Tensor, other: Tensor, box: tuple[int, int, int, int], reference: torch.Size
) -> Tensor:
    """``pixels`` (B, V, C, H, W) with ``box`` (drawn in an image of ``reference`` size, scaled
    to this one's) copied from ``other``."""
    height, width = pixels.shape[-2:]
    top, bottom = (round(v * height / reference[0]) for v in box[:2])
    left, right = (round(v * width / reference[1]) for v in box[2:])
    mixed = pixels.clone()
    mixed[..., top:bottom, left:right] = other[..., top:bottom, left:right]
    return mixed
