"""Region relevance painted over the image (2D) or the middle slices of the volume (3D), as PNG."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.preprocessing import Preprocessor
from polymodal.modalities import get as modality_kind


@dataclass
class RegionMap:
    """One sample's region relevance for one image view or volume.

    Attributes:
        sample_id, modality: whose map it is; ``label``: the view column (several views) or "".
        background: the preprocessed input, ``(H, W)``, ``(H, W, 3)`` or a volume ``(D, H, W)``.
        relevance: the same spatial shape, each region filled with its relevance.
        what: what the relevance is (``"|occlusion effect|"`` or ``"rollout share"``).
    """

    sample_id: str
    modality: str
    label: str
    background: np.ndarray
    relevance: np.ndarray
    what: str


def region_maps(
    prep: Preprocessor, sample: dict[str, Any], relevance: Mapping[str, float], what: str
) -> list[RegionMap]:
    """One map per present image view and volume of a sample with region ``relevance``
    (element name -> value; regions without a value, or NaN, are 0)."""
    maps = []
    for modality, cfg in prep.modality_configs.items():
        if not sample["available"].get(modality, False):
            continue
        fields = sample["inputs"][modality]
        # The kind paints its regions: each image view, a volume; other kinds have none.
        for label, background, heat in modality_kind(cfg.kind).heat_maps(
            modality, cfg, fields, relevance
        ):
            maps.append(RegionMap(sample["id"], modality, label, background, heat, what))
    return maps


def _display(image: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] for display (inputs are normalised: ImageNet, z-score or a window)."""
    low, high = float(np.min(image)), float(np.max(image))
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def save_overlay(region_map: RegionMap, path: Path | str, *, alpha: float = 0.45) -> Path:
    """Write the overlay as a PNG: one panel for an image, three middle slices for a volume."""
    # A Figure without pyplot: no display, no global state (as the report's figures).
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    background, relevance = region_map.background, region_map.relevance
    vmax = float(np.max(relevance)) or 1.0
    if relevance.ndim == 3:
        d, h, w = relevance.shape
        # Named by array axis: which anatomical plane each is depends on the spec's orientation.
        panels = [
            (f"middle slice D = {d // 2}", background[d // 2], relevance[d // 2]),
            (f"middle slice H = {h // 2}", background[:, h // 2], relevance[:, h // 2]),
            (f"middle slice W = {w // 2}", background[:, :, w // 2], relevance[:, :, w // 2]),
        ]
    else:
        panels = [(region_map.label or region_map.modality, background, relevance)]
    figure = Figure(figsize=(3.2 * len(panels) + 0.8, 3.4))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    shown = None
    for axis, (title, image, heat) in zip(axes, panels, strict=True):
        axis.imshow(_display(image), cmap="gray" if image.ndim == 2 else None)
        shown = axis.imshow(heat, cmap="inferno", alpha=alpha, vmin=0.0, vmax=vmax)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.colorbar(shown, ax=list(axes), shrink=0.8, label=region_map.what)
    figure.suptitle(f"{region_map.sample_id} · {region_map.modality}", fontsize=10)
    figure.savefig(path, dpi=100)
    return path
