"""The data elements of a sample: the parts an explanation takes away (M3FM, methods.md §2.2).

Each modality kind lists its elements (:meth:`polymodal.modalities.ModalityKind.occlusions`);
the names and grids here are shared by every kind and by :mod:`polymodal.explain`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from torch import Tensor

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


def text_without(sentences: list[tuple[str, str]], index: int) -> str:
    """The text with sentence ``index`` (and its trailing white space) left out."""
    return "".join(s for i, (_, s) in enumerate(sentences) if i != index).strip()


def grid_bounds(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (at most ``size``) nearly equal ``[start, stop)`` intervals covering ``size``."""
    parts = max(1, min(parts, size))
    edges = np.linspace(0, size, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(edges)]


def without(fields: Fields) -> Fields:
    """A copy of one sample's fields to take an element out of."""
    return {k: v.clone() for k, v in fields.items()}
