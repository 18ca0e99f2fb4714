"""Export a trained model out of PyTorch: an ONNX graph plus a JSON of its inputs and outputs.

The graph takes one named tensor per input field (``<modality>.<field>``) and one availability
input per modality (``<modality>.available``: False says "this patient has no such data"), and
returns per target the logits and the head's predictions. :mod:`~polymodal.export.signature`
names the inputs, :mod:`~polymodal.export.flat_model` wraps the model, :mod:`~polymodal.export.
onnx_writer` writes and checks the graph, :mod:`~polymodal.export.metadata` describes it, and
:mod:`~polymodal.export.support` refuses the cores that cannot be exported. Needs the optional
``export`` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

from polymodal.export.model_export import FORMATS, ExportResult, export_model
from polymodal.export.support import ExportRefused, check_exportable

__all__ = ["FORMATS", "ExportRefused", "ExportResult", "check_exportable", "export_model"]
