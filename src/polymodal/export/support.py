"""Which models can be exported as a graph, and a one-line reason for those that cannot.

A fusion core says so itself (``FusionCore.export_refusal``: empty when it exports); an encoder
may declare an ``export_refusal`` attribute the same way. The model must also give every core
input through an encoder, since the flat graph runs one encoder per modality.
"""

from __future__ import annotations

from polymodal.errors import ModelError
from polymodal.model import MultimodalModel


class ExportRefused(ModelError):
    """The model cannot be exported; the message names the part and why."""


def check_exportable(model: MultimodalModel) -> None:
    """Raise :class:`ExportRefused` naming the first part that cannot be exported, and why."""
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
    for modality in model.modalities:
        reason = getattr(model.encoders[modality], "export_refusal", "")
        if reason:
            name = type(model.encoders[modality]).__name__
            raise ExportRefused(
                f"the encoder of modality '{modality}' ({name}) cannot be exported: {reason}"
            )
