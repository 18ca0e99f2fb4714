"""The JSON written beside an exported graph: its inputs, outputs and what a caller must prepare.

A caller without polymodal reads it to build the input tensors: each input's name, dtype,
shape (named dimensions vary per call) and meaning, which availability input switches a
modality off, the preprocessing each modality's fields come from, and the outputs per target
(with the class names of classification targets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.export.signature import AVAILABLE, BATCH, InputField

# The meaning of each input field, as polymodal.data.batch documents the batch.
FIELD_MEANINGS = {
    "pixels": "image views after the fitted resize and normalisation, (views, C, H, W) per sample",
    "view_mask": "True where that view of the image is present",
    "features": "frozen backbone tokens of each view",
    "voxels": "volume after window, resampling and crop, (1, D, H, W) per sample",
    "spacing": "voxel size in mm, same axis order as D, H, W",
    "numeric": "numeric columns scaled with the training statistics; 0 where missing",
    "numeric_missing": "True where a numeric value is missing",
    "categorical": "category index per column: 0 missing, 1 unknown, 2.. the fitted vocabulary",
    "input_ids": "token ids from the fitted tokenizer, padded after the text",
    "attention_mask": "True for real tokens, False for padding",
    "values": "series values scaled with the training statistics; 0 where unobserved",
    "observed": "True where a value was measured",
    "times": "time of each step, scaled as in the preprocessing state",
    "step_mask": "True for real steps, False for padding",
    AVAILABLE: "False: the sample does not have this modality (its other inputs are ignored)",
}

PREPARATION = [
    "Each modality's inputs are what polymodal's Preprocessor makes of a manifest row with the "
    "fitted state in the model folder's preprocessing.json (polymodal.data.batch lists them).",
    "A missing modality: set '<modality>.available' to false and give its other inputs any "
    "values of the right shape (zeros); the outputs do not depend on them.",
    "A dimension named '<modality>_length' may be anything from 1 to that input's max_length; "
    "padding (mask False) never changes an output.",
    "A category index outside its column's vocabulary counts as unknown (1); token ids must be "
    "below the vocabulary size (ONNX Runtime refuses others).",
]


def export_metadata(
    *,
    graph_file: str,
    opset: int,
    core: str,
    fields: list[InputField],
    output_names: list[str],
    outputs: tuple[Tensor, ...],
    input_infos: dict[str, dict[str, Any]],
    target_infos: dict[str, dict[str, Any]],
    max_abs_difference: float | None,
) -> dict[str, Any]:
    """The JSON-ready description of an export (``outputs``: one run on any batch, for dtypes
    and shapes)."""
    from polymodal import __version__

    modalities = list(dict.fromkeys(f.modality for f in fields))
    return {
        "format": "onnx",
        "file": graph_file,
        "opset": opset,
        "polymodal_version": __version__,
        "core": core,
        "inputs": [_input(field) for field in fields],
        "outputs": [
            {
                "name": name,
                "target": name.split(".", 1)[0],
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "shape": [BATCH, *tensor.shape[1:]],
            }
            for name, tensor in zip(output_names, outputs, strict=True)
        ],
        "modalities": {
            m: {"availability_input": f"{m}.{AVAILABLE}", **input_infos[m]} for m in modalities
        },
        "targets": target_infos,
        "preparation": PREPARATION,
        "check": {
            "onnxruntime_max_abs_difference": max_abs_difference,
            "what": "ONNX Runtime against PyTorch on the tracing batch"
            if max_abs_difference is not None
            else "not checked: onnxruntime is not installed",
        },
    }


def _input(field: InputField) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": field.name,
        "modality": field.modality,
        "field": field.field,
        "dtype": str(field.dtype).removeprefix("torch."),
        "shape": list(field.shape),
        "meaning": FIELD_MEANINGS.get(field.field, "see polymodal.data.batch"),
    }
    if field.max_length is not None:
        entry["max_length"] = field.max_length
    return entry


def write_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    """Write ``metadata`` as indented JSON; returns ``path``."""
    path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return path
