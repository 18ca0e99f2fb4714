"""A run's whole configuration (model + training) from YAML, with dotted command-line overrides.

Example ``fit.yaml``::

    model:
      core: synergy
      dim: 128
      core_options: {num_latents: 32, depth: 2}
      modality_dropout: 0.2
    train:
      max_epochs: 40
      lr: 3.0e-4
    distill:                      # optional: knowledge distillation (polymodal.training.distill)
      teacher: runs/teacher/model
    modulation: {alpha: 0.5}      # optional: gradient modulation (polymodal.training.modulation)
    intervention_loss: {}         # optional: EI loss of the intervention core (see configs/ei)

and on the command line ``--set train.lr=1e-4 --set model.core_options.depth=4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polymodal.config import ModelConfig
from polymodal.errors import SpecError
from polymodal.training.config import TrainConfig
from polymodal.training.distill import DistillationConfig
from polymodal.training.intervention_loss import InterventionLossConfig
from polymodal.training.modulation import ModulationConfig


class RunConfig(BaseModel):
    """What ``polymodal fit`` trains and how."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillationConfig | None = Field(
        None,
        description="Distil from a frozen full-modality teacher (polymodal fit --distill-from).",
    )
    modulation: ModulationConfig | None = Field(
        None, description="Gradient modulation (OGM-GE) against a dominant modality."
    )
    intervention_loss: InterventionLossConfig | None = Field(
        None,
        description="The Early Intervention loss (per-branch losses, router supervision) of the "
        "intervention core (polymodal.training.intervention_loss).",
    )


def apply_override(data: dict[str, Any], dotted: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (numbers, lists, …)."""
    if "=" not in dotted:
        raise SpecError(f"override {dotted!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    key, raw = dotted.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"override {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def load_run_config(path: Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a run config YAML (optional) and apply dotted overrides; errors name the field."""
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise SpecError(f"{path}: run config not found")
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a mapping with 'model' and/or 'train'")
    for item in overrides or []:
        apply_override(data, item)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        lines = [f"{path or 'run config'}: not valid:"]
        lines += [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SpecError("\n".join(lines)) from None
