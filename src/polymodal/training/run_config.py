"""A run's whole configuration (model + training) from YAML, with dotted command-line overrides.

Example ``fit.yaml``::

    model:
      core: synergy               # a registered fusion core (polymodal.fusion.list_cores())
      dim: 128
      core_options: {num_latents: 32, depth: 2}
      modality_dropout: 0.2
    train:
      max_epochs: 40
      lr: 3.0e-4
    distill:                      # optional: knowledge distillation (polymodal.training.distill)
      teacher: runs/teacher/model
    modulation: {alpha: 0.5}      # optional: gradient modulation (polymodal.training.modulation)
    intervention_loss: {}         # optional: Early Intervention's loss (a core with per-branch
                                  # outputs; see configs/ei)
    ema: {decay: 0.999}           # optional: moving average of the weights (polymodal.training.ema)
    card:                         # optional: the model card's intended use, limitations and
      intended_use: ...           # subgroups (polymodal.model_card.config); unset fields stay
      subgroups: [sex, site]      # "TO FILL" placeholders in the card every fit writes

The optional sections are the registered training plugins (:mod:`polymodal.training.plugins`).

and on the command line ``--set train.lr=1e-4 --set model.core_options.depth=4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from polymodal.config import ModelConfig
from polymodal.errors import SpecError
from polymodal.model_card.config import CardConfig
from polymodal.training.config import TrainConfig
from polymodal.training.plugins import PLUGINS, active_sections


class RunConfigBase(BaseModel):
    """The ``model``, ``train`` and ``card`` sections; :data:`RunConfig` adds one per training
    plugin."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    card: CardConfig | None = Field(
        None,
        description="The model card's intended use, users, out-of-scope uses, limitations, "
        "ethical considerations and subgroup columns (placeholders when left out).",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_earlier_keys(cls, data: Any) -> Any:
        return upgrade_run_record(data) if isinstance(data, dict) else data

    def plugin_sections(self) -> dict[str, BaseModel]:
        """``{section: config}`` of the training plugins this run uses, in registry order."""
        return active_sections({name: getattr(self, name) for name in PLUGINS.names()})

    def record(self) -> dict[str, Any]:
        """The run as JSON values, as ``OUT/run.json`` stores it (absent plugins left out)."""
        return {
            "model": self.model.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
            **{n: c.model_dump(mode="json") for n, c in self.plugin_sections().items()},
            **({"card": self.card.model_dump(mode="json")} if self.card is not None else {}),
        }


RunConfig: type[RunConfigBase] = create_model(  # type: ignore[call-overload]
    "RunConfig",
    __base__=RunConfigBase,
    __module__=__name__,
    __doc__="What ``polymodal fit`` trains and how: ``model``, ``train`` and one optional "
    "section per registered training plugin (:data:`polymodal.training.plugins.PLUGINS`).",
    **{
        name: (plugin.config | None, Field(None, description=plugin.summary))
        for name, plugin in PLUGINS.items()
    },
)


def upgrade_run_record(data: dict[str, Any]) -> dict[str, Any]:
    """A run config or ``run.json`` written before a key moved, in today's layout.

    ``train.ema_decay: d`` became the ``ema: {decay: d}`` section.

    Raises:
        ValueError: both the earlier and today's key are set.
    """
    train = data.get("train")
    if not isinstance(train, dict) or "ema_decay" not in train:
        return data
    upgraded = {**data, "train": {k: v for k, v in train.items() if k != "ema_decay"}}
    if train["ema_decay"] is not None:
        if data.get("ema") is not None:
            raise ValueError("train.ema_decay and ema are both set; keep ema.decay only")
        upgraded["ema"] = {"decay": train["ema_decay"]}
    return upgraded


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
        lines += [f"  {_problem(e)}" for e in err.errors()]
        raise SpecError("\n".join(lines)) from None


def _problem(error: Any) -> str:
    """One line for a pydantic error: the dotted key and what is wrong; for an unknown key, the
    keys that section accepts."""
    loc = tuple(str(p) for p in error["loc"])
    where = ".".join(loc) or "run config"
    if error["type"] != "extra_forbidden":
        return f"{where}: {error['msg'].removeprefix('Value error, ')}"
    valid = _keys_at(loc[:-1])
    if not loc[:-1]:
        return f"{where}: unknown section; valid sections: {', '.join(valid)}"
    return f"{where}: unknown key; valid keys of {'.'.join(loc[:-1])}: {', '.join(valid)}"


def _keys_at(loc: tuple[str, ...]) -> list[str]:
    """The field names of the config class at ``loc`` below :data:`RunConfig` (or none)."""
    config: Any = RunConfig
    for part in loc:
        field = getattr(config, "model_fields", {}).get(part)
        annotation = field.annotation if field is not None else None
        classes = (annotation, *getattr(annotation, "__args__", ()))
        config = next(
            (c for c in classes if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return list(getattr(config, "model_fields", {}))
