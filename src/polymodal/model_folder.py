"""A trained model as a folder: safetensors weights, a JSON config, the preprocessing state, the spec.

Layout::

    MODEL_DIR/
      model.safetensors     weights (no pickle)
      config.json           model + training config, input and target infos, polymodal version
      preprocessing.json    the fitted preprocessing state (scalers, vocabularies, tokenizer)
      spec.yaml             the cohort spec the model was trained on (column meanings)

Loading reads only JSON, YAML (safe loader) and safetensors: it never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from polymodal import __version__
from polymodal.config import ModelConfig
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import CohortSpec, dump_spec, parse_spec
from polymodal.errors import ModelError
from polymodal.model import MultimodalModel, build_model

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PREPROCESSING = "preprocessing.json"
SPEC = "spec.yaml"


@dataclass
class LoadedModel:
    """Everything needed to predict: the model in eval mode and how to read new rows."""

    model: MultimodalModel
    config: ModelConfig
    preprocessor: Preprocessor
    spec: CohortSpec
    input_infos: dict[str, dict]
    target_infos: dict[str, dict]
    folder: Path


def save_model_folder(
    folder: Path,
    *,
    model: MultimodalModel,
    config: ModelConfig,
    preprocessor: Preprocessor,
    spec: CohortSpec,
    extra: dict | None = None,
) -> Path:
    """Write a model folder; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage; contiguous clones make every tensor its own.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt", "polymodal": __version__})
    preprocessor.save(folder / PREPROCESSING)
    (folder / SPEC).write_text(dump_spec(spec))
    payload = {
        "polymodal_version": __version__,
        "model": config.model_dump(mode="json"),
        "input_infos": {m: preprocessor.input_info(m) for m in preprocessor.modalities},
        "target_infos": {t: preprocessor.target_info(t) for t in preprocessor.targets},
        # Where the spec's relative paths pointed at training time: the default cohort for
        # `polymodal evaluate` when that folder still exists.
        "spec_base_dir": str(spec.base_dir.resolve()),
        **(extra or {}),
    }
    (folder / CONFIG).write_text(json.dumps(payload, indent=2))
    return folder


def load_model_folder(folder: Path | str, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a model folder written by :func:`save_model_folder` (never unpickles)."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, PREPROCESSING, SPEC):
        if not (folder / name).is_file():
            raise ModelError(
                f"{folder}: not a polymodal model folder ({name} is missing); "
                "give the folder that `polymodal fit` wrote (OUT/model)"
            )
    try:
        payload = json.loads((folder / CONFIG).read_text())
        config = ModelConfig.model_validate(payload["model"])
        base_dir = Path(payload.get("spec_base_dir", folder))
        base_dir = base_dir if base_dir.is_dir() else folder
        spec = parse_spec(
            yaml.safe_load((folder / SPEC).read_text()),
            base_dir=base_dir,
            source=str(folder / SPEC),
        )
    except (KeyError, ValueError) as err:
        raise ModelError(f"{folder / CONFIG}: unreadable model config ({err})") from None
    preprocessor = Preprocessor.load(folder / PREPROCESSING)
    input_infos = payload["input_infos"]
    target_infos = payload["target_infos"]
    model = build_model(without_pretrained_weights(config), input_infos, target_infos)
    state = load_file(str(folder / WEIGHTS), device="cpu")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        # Same names, other shapes (e.g. another `dim`): torch lists every tensor; one says enough.
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ModelError(
            f"{folder / WEIGHTS}: weights do not match the model config "
            f"({lines[0] if lines else err})"
        ) from None
    if missing or unexpected:
        raise ModelError(
            f"{folder / WEIGHTS}: weights do not match the model config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(device).eval()
    return LoadedModel(model, config, preprocessor, spec, input_infos, target_infos, folder)


def without_pretrained_weights(config: ModelConfig) -> ModelConfig:
    """The config with image encoders' ``pretrained`` weights left out.

    The folder's safetensors overwrite every weight anyway; loading the ImageNet weights first
    would read a large file for nothing and fail where the weights package is not installed.
    """
    encoders = {
        name: choice.model_copy(
            update={"options": {k: v for k, v in choice.options.items() if k != "pretrained"}}
        )
        for name, choice in config.encoders.items()
    }
    return config.model_copy(update={"encoders": encoders})
