"""``polymodal export MODEL --format onnx``: the model as a graph that runs without PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from polymodal.cli._app import app, console

# Kept here rather than imported from polymodal.export.onnx_writer, which imports torch: the
# command line's help must not load it.
DEFAULT_OPSET = 18


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model folder (OUT/model of `polymodal fit`)."),
    format: str = typer.Option("onnx", "--format", help="Graph format (onnx)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Graph file (default: MODEL.onnx beside the folder); a JSON of its inputs and "
        "outputs is written beside it with the suffix .json.",
    ),
    opset: int = typer.Option(DEFAULT_OPSET, help="ONNX opset version (18 to 22)."),
) -> None:
    """Export a model folder as an ONNX graph: one input per field and one availability input
    per modality (false: the sample lacks it), logits and predictions per target.

    Checked with ONNX Runtime against PyTorch when onnxruntime is installed. A fusion core that
    cannot be exported is refused with the reason (exit status 2).
    """
    from polymodal.export import export_model
    from polymodal.model_folder import load_model_folder

    loaded = load_model_folder(model)
    graph = out or model.parent / f"{model.resolve().name}.onnx"
    result = export_model(loaded, graph, format=format, opset=opset)
    check = (
        "not checked (onnxruntime is not installed)"
        if result.max_abs_difference is None
        else f"ONNX Runtime matches PyTorch to {result.max_abs_difference:.1e}"
    )
    console.print(
        escape(f"{result.graph} (inputs and outputs: {result.metadata}); {check}"),
        highlight=False,
        soft_wrap=True,
    )
