"""Which models can be exported as a graph, and a one-line reason for those that cannot.

A fusion core says so itself (``FusionCore.export_refusal``: empty when it exports). The model
must also give every core input through an encoder, since the flat graph runs one encoder per
modality. Encoders declare nothing: one that cannot be traced fails in the exporter, which
reports the cause and the line (:mod:`polymodal.export.onnx_writer`).
"""

from __future__ import annotations

from polymodal.errors import ModelError
from polymodal.model import MultimodalModel


class ExportRefused(ModelError):
    """The model cannot be exported; the message names the part and why."""


def check_exportable(model: MultimodalModel) -> None:
    """Raise :class:`ExportRefused` naming the core when it cannot be exported, and why."""
    core = model.core
    if core.export_refusal:
        raise ExportRefused(
            f"the fusion core '{core.core_name}' cannot be exported: {core.export_refusal}"
        )
    if model.raw_inputs:
        raw = ", ".join(sorted(model.raw_inputs))
        raise ExportRefused(
            f"the fusion core '{core.core_name}' cannot be exported: it reads {raw} raw, "
            "without an encoder"
        )
