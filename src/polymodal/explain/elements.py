"""Data elements of a sample, and the sample with one element removed (M3FM, methods.md §2.2).

An element is a part of a sample's input that can be taken away the way real data goes missing:

========  =====================================  ==============================================
kind      element                                removed by
========  =====================================  ==============================================
modality  a whole modality                       ``available`` False, inputs the empty stand-ins
field     one value of a tabular modality         its ``numeric_missing`` True (value 0) or its
                                                 categorical id 0, as a blank cell arrives
sentence  a sentence of a text modality (one per  the text without that sentence, tokenized again
          column of a ``from_columns`` text)
region    a patch of a coarse grid over an image  its pixels / voxels set to the view's mean
          view (4 × 4) or a volume (2 × 4 × 4)
channel   a channel of a time series             every value of it unobserved
========  =====================================  ==============================================

A removal that leaves nothing of a modality makes it unavailable, as the data layer does for a
row whose values are all blank (tabular) or whose text is empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from torch import Tensor

from polymodal.data import readers
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.serialize import TabularToText
from polymodal.data.spec import (
    ImageModality,
    SeriesModality,
    TabularModality,
    TextModality,
    VolumeModality,
)
from polymodal.errors import ReadError

IMAGE_GRID = (4, 4)
VOLUME_GRID = (2, 4, 4)
# A sentence ends at . ! ? or ; followed by white space, or at a line break; "3.5 mg" stays whole.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\s*\n\s*")

Fields = dict[str, Tensor]


@dataclass(frozen=True)
class Element:
    """One data element of a sample.

    Attributes:
        name: unique within the sample, ``modality`` or ``modality.part`` (``labs.age``,
            ``note.s2``, ``xray.r1c3``, ``ct.d0h2w1``); modality names never hold a dot.
        kind: ``modality``, ``field``, ``sentence``, ``region`` or ``channel``.
        modality: the modality it belongs to.
        detail: what it is in words (the sentence, the pixel box, the column).
    """

    name: str
    kind: str
    modality: str
    detail: str = ""


@dataclass(frozen=True)
class Occlusion:
    """An element and its modality's inputs without it (None: the modality is unavailable)."""

    element: Element
    fields: Fields | None


def split_sentences(text: str) -> list[str]:
    """Sentences of a free text, each with the white space after it: ``"".join`` gives ``text``."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    # White space alone is no sentence: it stays attached to the sentence before it.
    merged: list[str] = []
    for piece in pieces:
        if merged and not piece.strip():
            merged[-1] += piece
        elif not merged and not piece.strip():
            continue
        else:
            merged.append(piece)
    return merged


def text_sentences(
    prep: Preprocessor,
    modality: str,
    cells: Mapping[str, str],
    resolve: Callable[[str, str | None], object],
) -> list[tuple[str, str]]:
    """``(label, sentence)`` of a row's text, in order; empty when the row has no text.

    A ``from_columns`` text has one sentence per column with a value (label: the column), joined
    by one space as :class:`~polymodal.data.serialize.TabularToText` joins them; a free text is
    split on sentence punctuation (labels ``s1``, ``s2``, ...) and keeps its own white space.
    """
    cfg = prep.modality_configs[modality]
    assert isinstance(cfg, TextModality)
    if cfg.from_columns is not None:
        serialized = TabularToText.from_modality(cfg)(cells, [])
        pairs = serialized.elements
        return [
            (column, s + (" " if i < len(pairs) - 1 else "")) for i, (column, s) in enumerate(pairs)
        ]
    try:
        text = readers.read_text(cells.get(cfg.column or "", ""), cfg, resolve)
    except ReadError:
        return []
    return [(f"s{i + 1}", s) for i, s in enumerate(split_sentences(text))]


def text_without(sentences: list[tuple[str, str]], index: int) -> str:
    """The text with sentence ``index`` (and its trailing white space) left out."""
    return "".join(s for i, (_, s) in enumerate(sentences) if i != index).strip()


def grid_bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (at most ``size``) nearly equal ``[start, stop)`` intervals covering ``size``."""
    parts = max(1, min(parts, size))
    edges = np.linspace(0, size, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(edges)]


def image_region_name(modality: str, cfg: ImageModality, view: int, cell: tuple[int, int]) -> str:
    """``xray.r1c2`` (one view) or ``xray.<view column>.r1c2`` (several views)."""
    prefix = f"{modality}." if len(cfg.columns) == 1 else f"{modality}.{cfg.columns[view]}."
    return f"{prefix}r{cell[0]}c{cell[1]}"


def volume_region_name(modality: str, cell: tuple[int, int, int]) -> str:
    """``ct.d0h1w2``: the region's index along depth, height and width."""
    return f"{modality}.d{cell[0]}h{cell[1]}w{cell[2]}"


def _tabular(prep: Preprocessor, modality: str, fields: Fields) -> list[Occlusion]:
    cfg = prep.modality_configs[modality]
    assert isinstance(cfg, TabularModality)
    out = []
    for index, column in enumerate(cfg.numeric):
        if bool(fields["numeric_missing"][index]):
            continue
        occluded = {k: v.clone() for k, v in fields.items()}
        occluded["numeric"][index] = 0.0
        occluded["numeric_missing"][index] = True
        element = Element(f"{modality}.{column}", "field", modality, column)
        out.append(Occlusion(element, None if _all_missing(occluded) else occluded))
    for index, column in enumerate(cfg.categorical):
        if int(fields["categorical"][index]) == 0:
            continue
        occluded = {k: v.clone() for k, v in fields.items()}
        occluded["categorical"][index] = 0
        element = Element(f"{modality}.{column}", "field", modality, column)
        out.append(Occlusion(element, None if _all_missing(occluded) else occluded))
    return out


def _all_missing(fields: Fields) -> bool:
    """The data layer's rule: a tabular modality with no value at all is unavailable."""
    return bool(fields["numeric_missing"].all()) and not bool(fields["categorical"].any())


def _text(prep: Preprocessor, modality: str, sentences: list[tuple[str, str]]) -> list[Occlusion]:
    out = []
    for index, (label, sentence) in enumerate(sentences):
        remaining = text_without(sentences, index)
        fields = prep.transform_text(modality, remaining) if remaining else None
        element = Element(f"{modality}.{label}", "sentence", modality, sentence.strip())
        out.append(Occlusion(element, fields))
    return out


def _image(prep: Preprocessor, modality: str, fields: Fields) -> list[Occlusion]:
    cfg = prep.modality_configs[modality]
    assert isinstance(cfg, ImageModality)
    pixels = fields["pixels"]  # (V, C, H, W)
    out = []
    for view, column in enumerate(cfg.columns):
        if not bool(fields["view_mask"][view]):
            continue
        mean = pixels[view].mean(dim=(1, 2), keepdim=True)  # (C, 1, 1)
        for r, (h0, h1) in enumerate(grid_bounds(pixels.shape[-2], IMAGE_GRID[0])):
            for c, (w0, w1) in enumerate(grid_bounds(pixels.shape[-1], IMAGE_GRID[1])):
                occluded = {k: v.clone() for k, v in fields.items()}
                occluded["pixels"][view, :, h0:h1, w0:w1] = mean
                detail = f"{column} rows {h0}:{h1} columns {w0}:{w1}"
                name = image_region_name(modality, cfg, view, (r, c))
                out.append(Occlusion(Element(name, "region", modality, detail), occluded))
    return out


def _volume(fields: Fields, modality: str) -> list[Occlusion]:
    voxels = fields["voxels"]  # (1, D, H, W)
    mean = voxels.mean()
    out = []
    bounds = [grid_bounds(voxels.shape[1 + a], VOLUME_GRID[a]) for a in range(3)]
    for d, (d0, d1) in enumerate(bounds[0]):
        for h, (h0, h1) in enumerate(bounds[1]):
            for w, (w0, w1) in enumerate(bounds[2]):
                occluded = {k: v.clone() for k, v in fields.items()}
                occluded["voxels"][:, d0:d1, h0:h1, w0:w1] = mean
                detail = f"voxels {d0}:{d1}, {h0}:{h1}, {w0}:{w1}"
                name = volume_region_name(modality, (d, h, w))
                out.append(Occlusion(Element(name, "region", modality, detail), occluded))
    return out


def _series(prep: Preprocessor, modality: str, fields: Fields) -> list[Occlusion]:
    cfg = prep.modality_configs[modality]
    assert isinstance(cfg, SeriesModality)
    out = []
    for index, channel in enumerate(cfg.channels):
        if not bool(fields["observed"][:, index].any()):
            continue
        occluded = {k: v.clone() for k, v in fields.items()}
        occluded["values"][:, index] = 0.0
        occluded["observed"][:, index] = False
        element = Element(f"{modality}.{channel}", "channel", modality, channel)
        out.append(Occlusion(element, occluded))
    return out


def occlusions(
    prep: Preprocessor,
    modality: str,
    fields: Fields,
    sentences: list[tuple[str, str]] | None = None,
) -> list[Occlusion]:
    """Every element of one available modality of a sample, each with the inputs without it.

    The first is the whole modality (``fields`` None). ``fields`` are the sample's unbatched
    inputs of that modality; ``sentences`` (from :func:`text_sentences`) are needed for text.
    """
    whole = Occlusion(Element(modality, "modality", modality), None)
    cfg = prep.modality_configs[modality]
    if isinstance(cfg, TabularModality):
        parts = _tabular(prep, modality, fields)
    elif isinstance(cfg, TextModality):
        parts = _text(prep, modality, sentences or [])
    elif isinstance(cfg, ImageModality):
        parts = _image(prep, modality, fields)
    elif isinstance(cfg, VolumeModality):
        parts = _volume(fields, modality)
    else:
        parts = _series(prep, modality, fields)
    return [whole, *parts]
