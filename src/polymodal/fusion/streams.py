"""The streams a fusion core reads: per-modality tokens, masks and availability, checked once.

Masks are True = valid (a real token of an available modality), as everywhere in polymodal.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from polymodal.errors import ModelError


def gather_streams(
    modalities: tuple[str, ...],
    tokens: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    available: Mapping[str, Tensor],
) -> list[tuple[int, Tensor, Tensor]]:
    """The streams a core reads, in the core's own modality order.

    Returns ``[(index in modalities, tokens (B, N_m, D), mask (B, N_m))]`` for each modality
    present in ``tokens``. The mask is ANDed with availability again (cheap, and a core must not
    depend on its caller for correctness), and masked tokens are replaced by zeros so garbage in
    a missing stream (even NaN) never enters any arithmetic, forward or backward.
    Modalities absent from ``tokens`` are simply skipped: absent and unavailable are the same.
    """
    streams = []
    for index, name in enumerate(modalities):
        if name not in tokens:
            continue
        stream = tokens[name]
        mask = masks[name].bool() if name in masks else stream.new_ones(stream.shape[:2], bool)
        if name in available:
            mask = mask & available[name].bool()[:, None]
        stream = torch.where(mask[..., None], stream, torch.zeros_like(stream))
        streams.append((index, stream, mask))
    return streams


def batch_size(tokens: Mapping[str, Tensor], available: Mapping[str, Tensor]) -> int:
    """B from any token stream or availability vector; a core needs at least one of them.

    The size is returned as the tensor has it (not ``int(...)``), so that an exported graph
    keeps its batch size symbolic instead of fixing it to the example's.
    """
    for tensor in (*tokens.values(), *available.values()):
        return tensor.shape[0]
    raise ModelError(
        "the fusion core received no modality at all (no tokens and no availability); "
        "check that the batch's 'inputs' and 'available' name the model's modalities"
    )


def check_modality_names(core: str, modalities: Mapping[str, str], names: list[str]) -> None:
    """Raise a :class:`ModelError` when an option names a modality the core was not given."""
    unknown = [n for n in names if n not in modalities]
    if unknown:
        raise ModelError(
            f"fusion core '{core}': unknown modality {', '.join(map(repr, unknown))}; "
            f"the cohort's modalities are {', '.join(map(repr, modalities)) or 'none'}"
        )
