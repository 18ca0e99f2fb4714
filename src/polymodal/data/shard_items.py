"""One sample as one item of a LitData shard, and back (see :mod:`polymodal.data.shards`).

LitData fixes an item's layout (its keys and the serializer of each value) from the first item
it writes, so every row of a cohort is stored under the same flat keys:

* ``index`` (the row's position in its split), ``id``, ``group``;
* ``available`` ``(M,)`` and ``target_mask`` ``(T,)`` bool, in the preprocessor's order;
* ``input.<modality>.<field>``: the fields of :func:`polymodal.data.dataset.encode_row`, as it
  returns them; a modality that is unavailable stores a zero-length tensor and reads back as
  ``preprocessor.empty_inputs`` (what ``encode_row`` puts there);
* an image modality's ``pixels`` are kept as 8-bit ``input.<m>.pixels_u8`` ``(V, C, H, W)``
  where every present view is exactly an 8-bit image through the spec's normalisation
  (:mod:`polymodal.data.pixel_store`, as the sample cache keeps them), else as float32
  ``input.<m>.pixels``; the other of the two is zero-length;
* ``target.<target>``: the encoded label (``preprocessor.empty_target`` when unlabelled).
"""

from __future__ import annotations

from typing import Any

import torch

from polymodal.data.batch import Sample
from polymodal.data.pixel_store import pack_pixels, unpack_pixels
from polymodal.data.preprocessing import Preprocessor


def _is_image(prep: Preprocessor, modality: str) -> bool:
    return prep.modality_configs[modality].kind == "image"


def _nothing_like(tensor: torch.Tensor) -> torch.Tensor:
    """Zero rows of ``tensor``'s dtype and number of dimensions (LitData picks a tensor's
    serializer by its number of dimensions, and the layout must not change between items)."""
    return tensor[:0] if tensor.dim() else tensor


def to_item(prep: Preprocessor, sample: Sample, index: int) -> dict[str, Any]:
    """The flat LitData item of ``sample`` (row ``index`` of its split)."""
    item: dict[str, Any] = {"index": index, "id": str(sample["id"]), "group": str(sample["group"])}
    item["available"] = torch.tensor([sample["available"][m] for m in prep.modalities])
    item["target_mask"] = torch.tensor([sample["target_mask"][t] for t in prep.targets])
    for name in prep.modalities:
        present = sample["available"][name]
        fields = sample["inputs"][name]
        for key, empty in prep.empty_inputs(name).items():
            if key == "pixels" and _is_image(prep, name):
                item.update(_pixel_fields(prep, name, empty, fields if present else None))
            else:
                item[f"input.{name}.{key}"] = fields[key] if present else _nothing_like(empty)
    for name in prep.targets:
        item[f"target.{name}"] = sample["targets"][name]
    return item


def _pixel_fields(
    prep: Preprocessor, name: str, empty: torch.Tensor, fields: dict[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """``pixels_u8`` (exact 8-bit views) or ``pixels`` (float32) of an image modality; the
    other one zero-length, both zero-length when the modality is unavailable (``empty``: its
    unavailable pixels)."""
    key = f"input.{name}"
    nothing = _nothing_like(empty)
    none = {f"{key}.pixels_u8": nothing.to(torch.uint8), f"{key}.pixels": nothing}
    if fields is None:
        return none
    cfg = prep.modality_configs[name]
    pixels, view_mask = fields["pixels"], fields["view_mask"]  # (V, C, H, W), (V,)
    packed = torch.zeros(pixels.shape, dtype=torch.uint8)
    for view in torch.nonzero(view_mask).flatten().tolist():
        entry = pack_pixels(pixels[view].contiguous(), cfg)
        if "pixels_u8" not in entry:  # not an 8-bit image (resized, 16-bit, minmax, …)
            return {**none, f"{key}.pixels": pixels}
        packed[view] = entry["pixels_u8"]
    return {**none, f"{key}.pixels_u8": packed}


def from_item(
    prep: Preprocessor, item: dict[str, Any], modalities: list[str] | None = None
) -> Sample:
    """The sample an item was made from; modalities outside ``modalities`` (None: all) are
    unavailable, as :class:`polymodal.data.dataset.CohortDataset` makes them."""
    inputs, available = {}, {}
    for position, name in enumerate(prep.modalities):
        present = bool(item["available"][position]) and (modalities is None or name in modalities)
        available[name] = present
        fields = prep.empty_inputs(name)
        if present:
            for key in fields:
                if key == "pixels" and _is_image(prep, name):
                    fields[key] = _read_pixels(prep, name, item, fields["pixels"])
                else:
                    # A copy: LitData's tensors may share a read-only chunk buffer.
                    fields[key] = item[f"input.{name}.{key}"].clone()
        inputs[name] = fields
    return {
        "id": item["id"],
        "group": item["group"],
        "inputs": inputs,
        "available": available,
        "targets": {t: item[f"target.{t}"].clone() for t in prep.targets},
        "target_mask": {t: bool(item["target_mask"][i]) for i, t in enumerate(prep.targets)},
    }


def _read_pixels(
    prep: Preprocessor, name: str, item: dict[str, Any], zeros: torch.Tensor
) -> torch.Tensor:
    """Float32 ``(V, C, H, W)``: the stored float pixels, or the 8-bit ones normalised again
    (missing views zeros, as in ``encode_row``)."""
    floats = item[f"input.{name}.pixels"]
    if floats.numel():
        return floats.clone()
    packed = item[f"input.{name}.pixels_u8"]
    view_mask = item[f"input.{name}.view_mask"]
    cfg = prep.modality_configs[name]
    for view in torch.nonzero(view_mask).flatten().tolist():
        zeros[view] = unpack_pixels({"pixels_u8": packed[view]}, cfg)
    return zeros
