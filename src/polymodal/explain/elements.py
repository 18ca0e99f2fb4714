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
row whose values are all blank (tabular) or whose text is empty. Each modality kind lists its
own elements (:mod:`polymodal.modalities`); this module adds the whole modality.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from polymodal.data.preprocessing import Preprocessor
from polymodal.modalities import get as modality_kind
from polymodal.modalities.elements import (
    Element,
    Fields,
    Occlusion,
    grid_bounds,
    split_sentences,
    text_without,
)
from polymodal.modalities.image import IMAGE_GRID, image_region_name
from polymodal.modalities.volume import VOLUME_GRID, volume_region_name

__all__ = [
    "IMAGE_GRID",
    "VOLUME_GRID",
    "Element",
    "Fields",
    "Occlusion",
    "grid_bounds",
    "image_region_name",
    "occlusions",
    "split_sentences",
    "text_sentences",
    "text_without",
    "volume_region_name",
]


def text_sentences(
    prep: Preprocessor,
    modality: str,
    cells: Mapping[str, str],
    resolve: Callable[[str, str | None], object],
) -> list[tuple[str, str]]:
    """``(label, sentence)`` of a row's text, in order; empty when the row has no text (or the
    modality's kind has none). See :meth:`polymodal.modalities.text.Text.sentences`."""
    cfg = prep.modality_configs[modality]
    return modality_kind(cfg.kind).sentences(cfg, cells, resolve) or []


def occlusions(
    prep: Preprocessor,
    modality: str,
    fields: Fields,
    sentences: list[tuple[str, str]] | None = None,
) -> list[Occlusion]:
    """Every element of one available modality of a sample, each with the inputs without it.

    The first is the whole modality (``fields`` None), then the elements its kind lists
    (:meth:`polymodal.modalities.ModalityKind.occlusions`). ``fields`` are the sample's
    unbatched inputs of that modality; ``sentences`` (from :func:`text_sentences`) are needed
    for text.
    """
    whole = Occlusion(Element(modality, "modality", modality), None)
    kind = modality_kind(prep.modality_configs[modality].kind)
    return [whole, *kind.occlusions(prep.fitted(modality), fields, sentences)]
