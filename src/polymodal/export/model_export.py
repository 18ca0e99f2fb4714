"""Export a loaded model folder: refuse what cannot be exported, write the graph and its JSON.

loaded = load_model_folder("runs/demo/model")
result = export_model(loaded, Path("runs/demo/model.onnx"))
result.graph, result.metadata        # model.onnx and model.json beside it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from polymodal.errors import ModelError
from polymodal.export.flat_model import FlatModel
from polymodal.export.metadata import export_metadata, write_metadata
from polymodal.export.onnx_writer import DEFAULT_OPSET, export_onnx
from polymodal.export.signature import example_inputs, input_fields
from polymodal.export.support import check_exportable
from polymodal.model_folder import LoadedModel

FORMATS = ("onnx",)


@dataclass(frozen=True)
class ExportResult:
    """The files written and the ONNX Runtime check (None: onnxruntime not installed)."""

    graph: Path
    metadata: Path
    max_abs_difference: float | None


def export_model(
    loaded: LoadedModel, out: Path, *, format: str = "onnx", opset: int = DEFAULT_OPSET
) -> ExportResult:
    """Write ``loaded``'s model as a graph at ``out`` and its description at ``out`` with the
    suffix ``.json``.

    Raises:
        ExportRefused: the core or an encoder cannot be exported (the message says why).
        ModelError: an unknown format, an output path that is a folder, or an exporter failure.
    """
    if format not in FORMATS:
        raise ModelError(f"export: unknown format '{format}'; formats: {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix == ".json" or out.is_dir():
        raise ModelError(f"export: --out {out} must be a file path such as model.onnx")
    model = loaded.model.eval().to("cpu")
    check_exportable(model)
    fields = input_fields(model.modalities, loaded.preprocessor, loaded.input_infos)
    example = example_inputs(fields)
    flat = FlatModel.build(model, fields, example)
    written = export_onnx(flat, example, out, opset=opset)
    with torch.no_grad():
        outputs = flat(*example)
    metadata = export_metadata(
        graph_file=out.name,
        opset=written.opset,
        core=model.core.core_name,
        fields=fields,
        output_names=flat.output_names,
        outputs=outputs,
        input_infos=loaded.input_infos,
        target_infos=loaded.target_infos,
        max_abs_difference=written.max_abs_difference,
    )
    if model.core.takes_prompts:
        metadata["preparation"].append(
            "The task prompts are those the model had when it was exported; asking a task in "
            "other words needs a new export."
        )
    metadata_path = write_metadata(out.with_suffix(".json"), metadata)
    return ExportResult(out, metadata_path, written.max_abs_difference)
