"""Typed model configuration: which encoders, which fusion core, how wide, how robust.

It round-trips to JSON beside the weights (``ModelConfig.model_dump`` / ``model_validate``), so a
model folder can be rebuilt exactly with :func:`polymodal.model.build_model`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EncoderChoice(BaseModel):
    """The encoder of one modality: a registered name (None = the kind's default) and options."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="Registered encoder name; None uses the default for the modality kind."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword options of the encoder, e.g. {depth: 2}."
    )


class ModelConfig(BaseModel):
    """What model to build for a cohort."""

    model_config = ConfigDict(extra="forbid")

    core: str = Field(
        "synergy",
        description="Registered fusion core name (polymodal.fusion.list_cores() lists them; an "
        "unknown name is refused with the list).",
    )
    dim: int = Field(128, ge=1, description="Token width D shared by every encoder and the core.")
    core_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword options of the fusion core, e.g. {num_latents: 32, depth: 4}.",
    )
    encoders: dict[str, EncoderChoice] = Field(
        default_factory=dict,
        description="Per-modality encoder choice; a modality not listed gets its kind's default.",
    )
    modalities: list[str] | None = Field(
        None,
        description="Use only these modalities of the cohort (e.g. to train a model without the "
        "CT); None uses them all. The others are never read by the model.",
    )
    modality_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Training only: drop each available modality of each sample with this "
        "probability, never all of a sample's modalities.",
    )
