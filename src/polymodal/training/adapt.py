"""Adapt a trained model to a new task from a small labelled set (M3FM's out-of-distribution
adaptation, methods.md §2.5 step 4).

The new cohort spec describes the same modalities as the trained model (same names and settings,
so the encoders read what they were trained on) and its own targets: the new task(s), each with
its prompt. The adapted model keeps the trained model's input encodings (tokenizer, scaling,
vocabularies: the preprocessing state of its model folder), fits only the new targets on the new
training split, loads every trained tensor whose name and shape still fit, and trains what
``train`` names:

* ``head``: the new heads (and, for a core that takes task prompts, its prompt encoder, so that
  a new prompt gets a trained embedding); encoders and fusion core stay frozen;
* ``core``: the fusion core and the heads; encoders stay frozen;
* ``all``: everything, starting from the trained weights.

Frozen parts also stay in eval mode during training (batch-norm statistics and dropout as in the
trained model). The run config's ``train`` section and training plugin sections (e.g. ``ema``)
apply as in ``fit``; its ``model`` is the trained model's. The result is an ordinary model folder
for the new targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from polymodal.config import ModelConfig
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import CohortSpec
from polymodal.errors import ModelError
from polymodal.freezing import freeze
from polymodal.fusion import CORES
from polymodal.model import MultimodalModel
from polymodal.model_folder import load_model_folder, without_pretrained_weights
from polymodal.training.fit import FitResult, fit
from polymodal.training.run_config import RunConfig

Trainable = Literal["head", "core", "all"]
TRAINABLE: tuple[str, ...] = ("head", "core", "all")


@dataclass
class WarmStart:
    """What :func:`adapt` loaded and what it trains (for the report and the tests)."""

    loaded: list[str]
    new: list[str]
    trainable: list[str]


def adapted_preprocessor(trained: Preprocessor, cohort: Cohort) -> Preprocessor:
    """The trained model's input encodings plus the new cohort's targets, fitted on its train split.

    Raises:
        ModelError: the new spec's modalities differ from the trained model's.
    """
    spec_modalities = cohort.spec.modalities
    lines = []
    for name, cfg in trained.modality_configs.items():
        if name not in spec_modalities:
            lines.append(f"modality {name!r} of the trained model is not in the new spec")
        elif spec_modalities[name].model_dump() != cfg.model_dump():
            theirs, ours = spec_modalities[name].model_dump(), cfg.model_dump()
            fields = sorted(k for k in ours if ours.get(k) != theirs.get(k))
            lines.append(f"modality {name!r} differs from the trained model's in {fields}")
    extra = sorted(set(spec_modalities) - set(trained.modality_configs))
    if extra:
        lines.append(f"the new spec has modalities the model has no encoder for: {extra}")
    if lines:
        raise ModelError(
            "the adaptation spec must describe the trained model's modalities exactly as its "
            "model folder's spec.yaml does (copy that section): " + "; ".join(lines)
        )
    fitted = Preprocessor.fit(cohort)
    state = {f"modality:{m}": trained.state[f"modality:{m}"] for m in trained.modality_configs}
    state.update({f"target:{t}": fitted.state[f"target:{t}"] for t in fitted.target_configs})
    return Preprocessor(dict(trained.modality_configs), dict(fitted.target_configs), state)


def adapted_config(config: ModelConfig) -> ModelConfig:
    """The trained model's config, with the core's target-derived options (e.g. task prompts)
    taken from the new spec's targets.

    Pretrained encoder weights are left out: the trained weights replace them anyway.
    """
    derived = CORES.get(config.core).target_options
    options = {k: v for k, v in config.core_options.items() if k not in derived}
    return without_pretrained_weights(config).model_copy(update={"core_options": options})


def warm_start(model: MultimodalModel, trained: MultimodalModel, train: Trainable) -> WarmStart:
    """Copy every tensor of ``trained`` whose name and shape fit ``model``; freeze by ``train``."""
    if train not in TRAINABLE:
        raise ModelError(f"train must be one of {', '.join(TRAINABLE)}; got {train!r}")
    source = trained.state_dict()
    target = model.state_dict()
    loaded = [k for k, v in target.items() if k in source and source[k].shape == v.shape]
    model.load_state_dict({k: source[k] for k in loaded}, strict=False)
    new = [k for k in target if k not in set(loaded)]

    frozen: list[nn.Module] = []
    if train in ("head", "core"):
        frozen.extend(model.encoders.values())
    if train == "head":
        frozen.append(model.core)
    for module in frozen:
        freeze(module)
    if train == "head":
        # A new prompt needs a trained embedding: its encoder stays trainable. The core as a
        # whole stays in eval mode (embeddings, linear layers and norms act alike in both).
        prompt_parts = set(model.core.prompt_parameter_names())
        for name, param in model.core.named_parameters():
            if name in prompt_parts:
                param.requires_grad_(True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    return WarmStart(loaded=loaded, new=new, trainable=trainable)


def adapt(
    model_dir: Path | str,
    spec: CohortSpec,
    out_dir: Path | str,
    run_config: RunConfig | None = None,
    *,
    train: Trainable = "core",
    cohort: Cohort | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[FitResult, WarmStart]:
    """Fine-tune the model in ``model_dir`` to ``spec``'s targets; export to ``OUT/model``.

    The run is ``run_config`` (its training and plugin sections; default: ``RunConfig()``) with
    the trained model's architecture (:func:`adapted_config`) as its model.

    Raises:
        ModelError: ``train`` is not one of :data:`TRAINABLE`, or ``run_config`` sets a model
            (the adaptation keeps the trained one).
    """
    if train not in TRAINABLE:
        raise ModelError(f"train must be one of {', '.join(TRAINABLE)}; got {train!r}")
    run_config = run_config or RunConfig()
    if run_config.model != ModelConfig():
        raise ModelError(
            "adapt keeps the trained model's architecture: leave the run config's model section "
            "out (its train and training plugin sections apply)"
        )
    trained = load_model_folder(model_dir)
    cohort = cohort or load_cohort(spec)
    preprocessor = adapted_preprocessor(trained.preprocessor, cohort)
    done: list[WarmStart] = []

    def start(model: MultimodalModel) -> None:
        done.append(warm_start(model, trained.model, train))

    result = fit(
        spec,
        Path(out_dir),
        run_config.model_copy(update={"model": adapted_config(trained.config)}),
        cohort=cohort,
        progress=progress,
        resume=resume,
        preprocessor=preprocessor,
        warm_start=start,
    )
    return result, done[0] if done else WarmStart([], [], [])
