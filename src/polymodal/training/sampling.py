"""How training rows are drawn: shuffling, class balance, or task shares (M3FM multitask).

``TrainConfig.sampling`` picks the rule; every rule but ``"shuffle"`` is a
:class:`torch.utils.data.WeightedRandomSampler` (with replacement, one epoch = as many draws as
rows) over per-row weights computed from the training split's labels only, never its files.

* ``"class_balanced"``: each class of ``sampling_target`` (binary or multiclass) gets the same
  share of the draws: a row weighs 1 / (rows of its class). Rows without that label but with
  another target's label form one more group of the same share, so a multitask cohort keeps
  training its other targets; rows with no label at all are never drawn.
* ``"tasks_proportional"``, ``"tasks_sqrt"``, ``"tasks_uniform"``: task k, labelled on n_k rows,
  gets the share p_k ∝ n_k, √n_k or 1, and a row weighs Σ p_k / n_k over the tasks it is
  labelled for. With one label per row, task k then fills p_k of the draws (M3FM trains one task
  per step with tasks drawn ∝ √size; a row that labels several tasks serves them all at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import WeightedRandomSampler

from polymodal import targets
from polymodal.errors import PolymodalError
from polymodal.training.epoch_seeds import epoch_generator

if TYPE_CHECKING:
    from polymodal.data.dataset import CohortDataset

# The values of TrainConfig.sampling.
SAMPLINGS = ("shuffle", "class_balanced", "tasks_proportional", "tasks_sqrt", "tasks_uniform")
# Exponent α of a task's share p_k ∝ n_k^α.
TASK_SHARE_EXPONENT = {"tasks_proportional": 1.0, "tasks_sqrt": 0.5, "tasks_uniform": 0.0}


def task_shares(target_mask: Mapping[str, Tensor], rule: str) -> dict[str, float]:
    """``{target: p_k}`` summing to 1 over the targets with at least one label (others absent)."""
    if rule not in TASK_SHARE_EXPONENT:
        raise PolymodalError(
            f"train.sampling: {rule!r} is not a task rule; use one of {tuple(TASK_SHARE_EXPONENT)}"
        )
    counts = {t: int(m.sum()) for t, m in target_mask.items() if bool(m.any())}
    raw = {t: n ** TASK_SHARE_EXPONENT[rule] for t, n in counts.items()}
    total = sum(raw.values())
    return {t: value / total for t, value in raw.items()}


def task_weights(target_mask: Mapping[str, Tensor], rule: str) -> Tensor:
    """Per-row weights ``(n,)``: Σ p_k / n_k over the tasks k the row is labelled for."""
    shares = task_shares(target_mask, rule)
    n = len(next(iter(target_mask.values())))
    weights = torch.zeros(n, dtype=torch.float64)
    for target, share in shares.items():
        mask = target_mask[target].bool()
        weights += mask.double() * share / int(mask.sum())
    return weights


def class_balanced_weights(
    target: str,
    kind: str,
    labels: Tensor,
    target_mask: Mapping[str, Tensor],
) -> Tensor:
    """Per-row weights ``(n,)`` giving every class of ``target`` (and the group of rows labelled
    only for other targets) the same share of the draws."""
    if not targets.get(kind).class_valued:
        valued = targets.listing(targets.names_where(class_valued=True))
        raise PolymodalError(
            f"train.sampling: class_balanced needs a {valued} target, but "
            f"{target!r} is {kind}; set train.sampling_target to a classification target or use "
            "another sampling"
        )
    labelled = target_mask[target].bool()
    classes = labels.long().reshape(-1)
    weights = torch.zeros(len(labelled), dtype=torch.float64)
    groups = [labelled & (classes == c) for c in classes[labelled].unique().tolist()]
    any_label = torch.stack([m.bool() for m in target_mask.values()]).any(dim=0)
    groups.append(~labelled & any_label)
    for group in groups:
        if bool(group.any()):
            weights[group] = 1.0 / int(group.sum())
    return weights


def row_weights(
    sampling: str,
    targets: Mapping[str, Tensor],
    target_mask: Mapping[str, Tensor],
    target_infos: Mapping[str, Mapping[str, Any]],
    sampling_target: str | None = None,
) -> Tensor | None:
    """The weight of each training row under ``sampling`` (None for plain shuffling).

    Args:
        sampling: one of :data:`SAMPLINGS`.
        targets, target_mask: every row's encoded labels ``(n, ...)`` and masks ``(n,)``
            (:meth:`polymodal.data.dataset.CohortDataset.encoded_targets`).
        target_infos: ``{target: info}``; ``kind`` decides whether class balance applies.
        sampling_target: the target whose classes ``class_balanced`` evens (default: first).

    Raises:
        PolymodalError: unknown rule or target, a target that has no classes, or no labelled row.
    """
    if sampling not in SAMPLINGS:
        raise PolymodalError(f"train.sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if sampling == "shuffle":
        return None
    if sampling_target is not None and sampling_target not in target_infos:
        raise PolymodalError(
            f"train.sampling_target {sampling_target!r} is not a target of this cohort; its "
            f"targets: {', '.join(target_infos)}"
        )
    if sampling == "class_balanced":
        target = sampling_target or next(iter(target_infos))
        weights = class_balanced_weights(
            target, target_infos[target]["kind"], targets[target], target_mask
        )
    else:
        weights = task_weights(target_mask, sampling)
    if not bool((weights > 0).any()):
        raise PolymodalError(
            f"train.sampling {sampling!r}: no training row has a label, so there is nothing to "
            "draw; check the target columns of the training split"
        )
    return weights


class EpochWeightedSampler(WeightedRandomSampler):
    """A WeightedRandomSampler (with replacement, one draw per row) whose draws in epoch ``e``
    depend on (seed, e) only, so a resumed run draws the rows an uninterrupted one would
    (Lightning calls :meth:`set_epoch` before each training epoch)."""

    def __init__(self, weights: Tensor, *, seed: int) -> None:
        super().__init__(
            weights, len(weights), replacement=True, generator=epoch_generator(seed, 0)
        )
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.generator = epoch_generator(self.seed, epoch)


def make_sampler(
    sampling: str,
    targets: Mapping[str, Tensor],
    target_mask: Mapping[str, Tensor],
    target_infos: Mapping[str, Mapping[str, Any]],
    *,
    sampling_target: str | None = None,
    seed: int = 0,
) -> EpochWeightedSampler | None:
    """A seeded :class:`EpochWeightedSampler` drawing as many rows per epoch as there are, with
    replacement, by :func:`row_weights`; None for ``"shuffle"``."""
    weights = row_weights(sampling, targets, target_mask, target_infos, sampling_target)
    if weights is None:
        return None
    return EpochWeightedSampler(weights, seed=seed)


def dataset_sampler(
    dataset: CohortDataset,
    *,
    sampling: str,
    sampling_target: str | None = None,
    seed: int = 0,
) -> WeightedRandomSampler | None:
    """:func:`make_sampler` over a training dataset's labels (read from the manifest only)."""
    if sampling == "shuffle":
        return None
    targets, target_mask = dataset.encoded_targets()
    prep = dataset.preprocessor
    target_infos = {t: prep.target_info(t) for t in prep.targets}
    return make_sampler(
        sampling,
        targets,
        target_mask,
        target_infos,
        sampling_target=sampling_target,
        seed=seed,
    )
