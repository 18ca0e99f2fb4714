"""What prediction must say: rows it cannot trust, values the model never learned, NaN outputs.

Warnings are Python ``UserWarning`` (the ``predict`` command prints them as messages); an
output that is not a number is a :class:`~polymodal.errors.ModelError` naming the rows, raised
where predictions are produced so that ``predict``, ``evaluate`` and ``explain`` all refuse it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from polymodal.data.preprocessing import Preprocessor
from polymodal.errors import ModelError
from polymodal.modalities import get as modality_kind

if TYPE_CHECKING:
    from polymodal.model_folder import LoadedModel


class NonFiniteGuard:
    """Collects the rows whose model outputs are NaN or infinite, and refuses them.

    ``add(ids, predictions, has_data)`` per batch (``predictions`` as the heads give them,
    ``{target: {name: (B, ...)}}``, ``has_data`` ``(B,)``: rows with some modality available;
    the others get no prediction anyway); ``check(loaded)`` raises when any such row was seen.
    """

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}  # target -> ids

    def add(
        self,
        ids: Sequence[str],
        predictions: Mapping[str, Mapping[str, torch.Tensor]],
        has_data: torch.Tensor,
    ) -> None:
        for target, outputs in predictions.items():
            finite = torch.ones(len(ids), dtype=torch.bool, device=has_data.device)
            for value in outputs.values():
                finite &= torch.isfinite(value.float()).reshape(len(ids), -1).all(1)
            bad = (~finite & has_data).cpu().numpy()
            if bad.any():
                self.rows.setdefault(target, []).extend(np.asarray(ids, dtype=object)[bad])

    def check(self, loaded: LoadedModel) -> None:
        """Raise :class:`ModelError` naming the rows (of the first target hit) and the likely
        cause: non-finite weights, else inputs that drive the model out of range."""
        if not self.rows:
            return
        target, ids = next(iter(self.rows.items()))
        broken = [
            name
            for name, value in loaded.model.state_dict().items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())
        ]
        if broken:
            why = (
                f"{len(broken)} weight tensor(s) hold NaN or inf ({some(broken)}): the model "
                "folder is damaged or its training diverged; retrain it or restore the folder"
            )
        else:
            why = (
                "the weights are finite, so these rows' inputs drive the model out of range; "
                "check them with `polymodal validate`"
            )
        raise ModelError(
            f"{loaded.folder}: the model's outputs for target {target!r} are not finite (NaN "
            f"or inf) in {len(ids)} row(s): {some(ids)}; {why}"
        )


def warn_duplicate_ids(ids: pd.Series) -> None:
    """Warn about ids on several rows: each row is predicted, but joining back is ambiguous."""
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        warnings.warn(
            f"{len(repeated)} id(s) appear in more than one row: {some(repeated)}; each row "
            "gets its own prediction, in the table's order",
            stacklevel=3,
        )


def warn_rows_without_data(ids: np.ndarray, no_data: np.ndarray, modalities: Sequence[str]) -> None:
    """Warn, with a count, about the rows ``(n,)`` that have no data for any of ``modalities``:
    a probability there would be the model's prior dressed up as a prediction."""
    if not no_data.any():
        return
    warnings.warn(
        f"{int(no_data.sum())} of {len(no_data)} rows have no data in any modality the model "
        f"reads ({', '.join(modalities)}), so they get no prediction (blank outputs, see the "
        f"'note' column): {some(list(ids[no_data]))}",
        stacklevel=3,
    )


def warn_unseen_categories(
    preprocessor: Preprocessor, modalities: Sequence[str], rows: pd.DataFrame
) -> None:
    """Warn, per column, about values the fitted state does not know (e.g. categories that were
    absent or rare in training), as each modality's kind finds them."""
    for name in modalities:
        cfg = preprocessor.modality_configs[name]
        state = preprocessor.state[f"modality:{name}"]
        for column, unseen in modality_kind(cfg.kind).unseen_values(cfg, state, rows).items():
            count = int(rows[column].str.strip().isin(unseen).sum())
            warnings.warn(
                f"column {column!r} ({name}): {count} row(s) hold "
                f"values the model did not learn (absent or rare in training): "
                f"{some(unseen)}; the model treats them as unknown",
                stacklevel=3,
            )


def some(values: Sequence[str], limit: int = 10) -> str:
    """Up to ``limit`` values, quoted, and how many more."""
    shown = ", ".join(repr(str(v)) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")
