"""The sample and batch contract between the data layer and the models.

Every part of polymodal keeps this layout; it is the one place it is written down.

A **sample** (what ``CohortDataset.__getitem__`` returns) is a plain dict::

    {
      "id": str,                      # the manifest's id column
      "group": str,                   # patient / lesion id (the id when the spec has no group)
      "inputs": {modality: {field: Tensor}},   # fields per kind below, unbatched
      "available": {modality: bool},  # False: the modality is missing for this sample
      "targets": {target: Tensor},    # encoded label (see below); any value when missing
      "target_mask": {target: bool},  # False: this sample has no label for this target
    }

A missing modality is never a zero image in disguise: ``available[m]`` is False and the
modality's tensors hold stand-in values (zeros of the right shape) that every model must
ignore. Every fusion core gives the same output whether those stand-ins are zeros or garbage.

A **batch** (what :func:`polymodal.data.collate.collate_samples` returns) has the same keys with
tensors stacked along a leading batch dimension B: ``ids`` and ``groups`` become lists,
``available[m]`` a bool tensor ``(B,)``, ``target_mask[t]`` a bool tensor ``(B,)``.

Masks are **True = valid** everywhere (a real token, an observed value, a present view), like
Hugging Face's ``attention_mask``. PyTorch's ``key_padding_mask`` is the opposite; convert at the
call site with ``~mask``.

Input fields per modality kind (shapes in a batch); each kind of :mod:`polymodal.modalities`
produces its rows of this table, and ``tests/modalities`` checks that every registered kind's
fields are listed here:

=========  =====================  ==============  =============================================
kind       field                  dtype           shape / meaning
=========  =====================  ==============  =============================================
image      ``pixels``             float32         (B, V, C, H, W); V = number of views (columns)
image      ``view_mask``          bool            (B, V); False where that view is missing
volume     ``voxels``             float32         (B, 1, D, H, W), after window/resample/crop
volume     ``spacing``            float32         (B, 3) voxel size in mm, same axis order as D,H,W
tabular    ``numeric``            float32         (B, F_num) scaled on train; 0 where missing
tabular    ``numeric_missing``    bool            (B, F_num) True where the value is missing
tabular    ``categorical``        int64           (B, F_cat) 0 = missing, 1 = unknown, 2.. = vocab
text       ``input_ids``          int64           (B, L) padded to the longest in the batch
text       ``attention_mask``     bool            (B, L) True for real tokens
series     ``values``             float32         (B, T, C) scaled on train; 0 where unobserved
series     ``observed``           bool            (B, T, C) True where a value was measured
series     ``times``              float32         (B, T) time of each step (scaled, see state)
series     ``step_mask``          bool            (B, T) True for real steps (padding False)
=========  =====================  ==============  =============================================

Encoded targets per kind (in a batch):

* binary: float32 ``(B,)`` in {0, 1}
* multiclass: int64 ``(B,)`` class index (order from the fitted preprocessing state)
* multilabel: float32 ``(B, K)`` in {0, 1}
* regression: float32 ``(B,)`` standardised with the training mean/std when the spec asks
* time_to_event: float32 ``(B, 2)``: (time, event in {0, 1})
* cumulative_risk: float32 ``(B, 2K)`` for K horizons: columns ``[:K]`` the labels (1 = event
  by horizon t_k), columns ``[K:]`` the label mask (1 = known: the event happened, at any time,
  or the follow-up reached t_k without it; 0 = censored before t_k)
* digits: int64 ``(B, num_digits)``, the value's digits in 0..9, most significant first

An **encoder** maps ``inputs[modality]`` to ``(tokens (B, N, D), mask (B, N) bool)``; the model
combines that mask with ``available[modality][:, None]`` before any fusion core sees it.
"""

from __future__ import annotations

from typing import Any

import torch

Sample = dict[str, Any]
Batch = dict[str, Any]


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """Move every tensor of a (nested) batch to ``device``; lists of ids stay as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
