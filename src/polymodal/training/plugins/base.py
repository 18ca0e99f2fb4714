"""What a training plugin is: a run-config section, and what it adds to a fit when present.

A plugin registers itself under the name of its section (``distill:``, ``modulation:``, …)::

    @register_plugin("ema")
    class EMAPlugin(FitPlugin):
        config = EMAConfig                  # the section's pydantic model
        summary = "..."                     # the section's description in the run config

        @classmethod
        def build(cls, config, context): return PluginParts(callbacks=[WeightEMA(config.decay)])

``fit`` builds every plugin whose section the run config has, after the model
(:class:`FitContext`), and wires what it returns (:class:`PluginParts`): loss terms and gradient
hooks into the Lightning module, callbacks into the trainer, frozen teachers into what is read
from the cohort. The run config's sections, the resume check and the tests all come from
:data:`PLUGINS`, so a new plugin is one file plus its registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import lightning as L
import torch
from pydantic import BaseModel
from torch import nn

from polymodal.config import ModelConfig
from polymodal.data.manifest import Cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.errors import SpecError
from polymodal.model import MultimodalModel
from polymodal.registry import Registry
from polymodal.training.config import TrainConfig
from polymodal.training.module import TrainingPlugin


@dataclass(frozen=True)
class FitContext:
    """What a plugin is built for: the freshly built (and warm-started) model of a fit.

    ``target_infos`` is ``{target: info}`` of the fitted preprocessing state.
    """

    model: MultimodalModel
    model_config: ModelConfig
    train_config: TrainConfig
    preprocessor: Preprocessor
    target_infos: dict[str, dict]


@dataclass(frozen=True)
class Exported:
    """A fit's exported model folder, the cohort it was fitted on (its ``val`` split selected
    the epoch), the sample cache of the run (None without one), the device it trained on and
    whether it read frozen features from the feature store (``train.frozen_feature_store``)."""

    model_dir: Path
    cohort: Cohort
    cache_dir: Path | None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    feature_store: bool = True


@dataclass
class PluginParts:
    """What one plugin adds to a fit (all empty: the plugin is switched off).

    ``modules``: loss terms and gradient hooks of the Lightning module; ``callbacks``: Lightning
    callbacks of the trainer; ``teachers``: frozen models that read the batch too (the cohort
    loads the modalities they read, and their frozen features may be cached); ``after_export``:
    steps run in order on the exported model folder (:class:`Exported`), e.g. fitting a
    recalibration on the validation split and adding it to the folder.
    """

    modules: list[TrainingPlugin] = field(default_factory=list)
    callbacks: list[L.Callback] = field(default_factory=list)
    teachers: list[nn.Module] = field(default_factory=list)
    after_export: list[Callable[[Exported], None]] = field(default_factory=list)

    def extend(self, other: PluginParts) -> None:
        self.modules.extend(other.modules)
        self.callbacks.extend(other.callbacks)
        self.teachers.extend(other.teachers)
        self.after_export.extend(other.after_export)


class FitPlugin:
    """A registered training plugin (override :meth:`build`; the other hooks are optional).

    Class attributes: ``config`` (the section's pydantic model), ``summary`` (one line for the
    run config's schema), ``reads_labels`` (its loss reads each sample's own label, so the batch
    labels must not be mixed: :mod:`polymodal.training.mixing` refuses the combination),
    ``fits_on_validation`` (it fits something on the validation split's predictions, so a fit
    without held-out validation rows, like ``polymodal cv --refit``, leaves it out).
    """

    name: ClassVar[str] = ""
    config: ClassVar[type[BaseModel]]
    summary: ClassVar[str] = ""
    reads_labels: ClassVar[bool] = False
    fits_on_validation: ClassVar[bool] = False

    @classmethod
    def adjust_model_config(cls, config: Any, model_config: ModelConfig) -> ModelConfig:
        """The model config the run trains and records, given this plugin's section."""
        return model_config

    @classmethod
    def build(cls, config: Any, context: FitContext) -> PluginParts:
        """What the plugin adds to the fit of ``context.model``."""
        raise NotImplementedError(f"training plugin {cls.name!r} has no build()")

    @classmethod
    def example(cls, trained_model: Path) -> dict[str, Any]:
        """A run-config fragment that turns the plugin on for a tiny run on the demo cohort: its
        section, plus the model settings it needs. ``trained_model`` is a model folder fitted on
        that cohort (a teacher, a source of weights). Used by the registry-wide tests."""
        return {cls.name: {}}


PluginT = TypeVar("PluginT", bound=type[FitPlugin])

PLUGINS: Registry[type[FitPlugin]] = Registry(
    "training plugin", config_key="a run config section", error=SpecError
)


def register_plugin(name: str) -> Callable[[PluginT], PluginT]:
    """Class decorator: register a :class:`FitPlugin` as the run config section ``name``."""
    register = PLUGINS.register(name)

    def decorate(cls: PluginT) -> PluginT:
        if not (isinstance(cls, type) and issubclass(cls, FitPlugin)):
            raise TypeError(f"training plugin {name!r} must subclass FitPlugin, got {cls!r}")
        if not (isinstance(cls.__dict__.get("config"), type) and issubclass(cls.config, BaseModel)):
            raise TypeError(f"training plugin {name!r} needs a pydantic `config` class")
        cls.name = name
        return register(cls)

    return decorate


def active_sections(sections: dict[str, BaseModel | None]) -> dict[str, BaseModel]:
    """The plugin sections a run config sets, in registry order."""
    return {name: sections[name] for name in PLUGINS.names() if sections.get(name) is not None}


def build_plugins(sections: dict[str, BaseModel], context: FitContext) -> PluginParts:
    """Every active plugin built for ``context``, and the plugins the fusion core needs checked.

    Raises:
        SpecError: the core, as configured, does not train without a plugin that is not set.
    """
    missing = [p for p in context.model.core.required_plugins() if p not in sections]
    if missing:
        core = context.model_config.core
        raise SpecError(
            f"model.core {core!r} with these model.core_options does not train without the "
            f"{' and '.join(missing)} plugin, but the run config has no {missing[0]} section. "
            f"Add '{missing[0]}: {{}}' to the run config or change model.core_options"
        )
    parts = PluginParts()
    for name, config in sections.items():
        parts.extend(PLUGINS.get(name).build(config, context))
    return parts
