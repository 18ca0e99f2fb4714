"""Modality kinds: one registered unit per kind of input (image, volume, tabular, text, series).

Each kind (:class:`ModalityKind`) owns its spec section, reader, fitting, transform,
augmentation, collate padding, default encoder, explanation elements and a small example; the
rest of polymodal asks ``modalities.get(kind)``. Adding a kind is one file here plus its import
below; the registry-wide tests in ``tests/modalities/`` then cover it.
"""

from __future__ import annotations

from polymodal.modalities import image, series, tabular, text, volume
from polymodal.modalities.base import (
    MODALITIES,
    Augmenter,
    CellCheck,
    Example,
    Fitted,
    FittedInputs,
    ModalityKind,
    ModalitySpec,
    RowReader,
    TrainingRows,
    get,
    kinds,
    spec_union,
)

__all__ = [
    "MODALITIES",
    "Augmenter",
    "CellCheck",
    "Example",
    "Fitted",
    "FittedInputs",
    "ModalityKind",
    "ModalitySpec",
    "RowReader",
    "TrainingRows",
    "get",
    "image",
    "kinds",
    "series",
    "spec_union",
    "tabular",
    "text",
    "volume",
]
