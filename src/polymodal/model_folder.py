"""A trained model as a folder: safetensors weights, a JSON config, the preprocessing state, the spec.

Layout::

    MODEL_DIR/
      model.safetensors     weights (no pickle)
      config.json           model + training config, input and target infos, polymodal version
      preprocessing.json    the fitted preprocessing state (scalers, vocabularies, tokenizer)
      spec.yaml             the cohort spec the model was trained on (column meanings)
      checksums.json        sha256 of every other file, verified on loading
      calibration.json      optional: the recalibration fitted after training (``calibration:``)
      conformal.json        optional: conformal thresholds (``conformal:``); both are added by
                            :mod:`polymodal.calibration.folder_files`, which re-lists the checksums

Loading reads only JSON, YAML (safe loader) and safetensors: it never unpickles anything.

A folder is meant to be shared: it holds no absolute path of the machine it was trained on
(paths are stored relative to the folder, see :mod:`polymodal.portable_paths`), and its
vocabularies keep only words seen in several patients (``min_count`` of text modalities).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polymodal import __version__
from polymodal.checksums import CHECKSUMS, verify_checksums, write_checksums
from polymodal.cohort_summary import cohort_summary
from polymodal.config import ModelConfig
from polymodal.data.manifest import Cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import CohortSpec, parse_spec
from polymodal.errors import ModelError
from polymodal.json_object import read_json_object
from polymodal.model import MultimodalModel, build_model
from polymodal.portable_paths import (
    portable_config,
    portable_preprocessing,
    portable_spec,
    resolve_config_paths,
    resolve_preprocessing_paths,
    resolve_stored_path,
)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PREPROCESSING = "preprocessing.json"
SPEC = "spec.yaml"
# Files every model folder has (checksums.json: those written since checksums were added).
REQUIRED_FILES = (WEIGHTS, CONFIG, PREPROCESSING, SPEC)


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
    cohort: Cohort | None = None,
) -> Path:
    """Write a model folder; returns its path.

    The files go to a hidden sibling folder first, which then replaces ``folder`` by renames:
    a crash or error while writing leaves the earlier folder (or none), never a torn one.
    Absolute paths (the spec's folder, a tokenizer folder, the run's cache) are written relative
    to ``folder``; ``checksums.json`` is written last.

    Args:
        extra: more config.json keys (the run record, the monitored metric).
        cohort: the training cohort; its summary (rows, patients and label counts per split)
            is recorded as config.json's ``training_cohort`` for ``polymodal inspect``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent)
    )
    if cohort is not None:
        classed = [t for t in preprocessor.targets if preprocessor.target_info(t).get("classes")]
        extra = {**(extra or {}), "training_cohort": cohort_summary(cohort, classed)}
    try:
        # Paths are made relative to where the folder ends up, a sibling of `partial`.
        final = folder.parent.resolve() / folder.name
        _write_files(partial, final, model, config, preprocessor, spec, extra)
        write_checksums(partial)
        _replace_folder(folder, partial)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _write_files(
    folder: Path,
    final: Path,
    model: MultimodalModel,
    config: ModelConfig,
    preprocessor: Preprocessor,
    spec: CohortSpec,
    extra: dict | None,
) -> None:
    """The four files into ``folder``, their paths relative to ``final``."""
    # safetensors refuses shared storage; contiguous clones make every tensor its own.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt", "polymodal": __version__})
    preprocessor.save(folder / PREPROCESSING)
    prep = json.loads((folder / PREPROCESSING).read_text(encoding="utf-8"))
    portable = portable_preprocessing(prep, final)
    if portable != prep:  # a tokenizer folder's path: written again, relative
        _write_json(folder / PREPROCESSING, portable, indent=1)
    (folder / SPEC).write_text(
        yaml.safe_dump(portable_spec(spec), sort_keys=False), encoding="utf-8"
    )
    payload = {
        "polymodal_version": __version__,
        "model": config.model_dump(mode="json"),
        "input_infos": {m: preprocessor.input_info(m) for m in preprocessor.modalities},
        "target_infos": {t: preprocessor.target_info(t) for t in preprocessor.targets},
        # Where the spec's relative paths pointed at training time (relative to the model
        # folder): the default cohort for `polymodal evaluate` while that folder still exists.
        "spec_base_dir": str(spec.base_dir.resolve()),
        **(extra or {}),
    }
    _write_json(folder / CONFIG, portable_config(payload, final), indent=2)


def _write_json(path: Path, data: Any, indent: int) -> None:
    path.write_text(json.dumps(data, indent=indent), encoding="utf-8")


def _replace_folder(folder: Path, new: Path) -> None:
    """Put the complete folder ``new`` at ``folder``, replacing an earlier one.

    Two renames: the earlier folder steps aside, the new one takes its name (a folder cannot be
    swapped in one atomic step); the earlier one is removed only once the new one is in place.
    """
    new.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
    if not folder.exists():
        new.rename(folder)
        return
    earlier = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    earlier.rmdir()
    folder.rename(earlier)
    try:
        new.rename(folder)
    except OSError:
        earlier.rename(folder)
        raise
    shutil.rmtree(earlier, ignore_errors=True)


def load_model_folder(folder: Path | str, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a model folder written by :func:`save_model_folder` (never unpickles).

    Raises:
        ModelError: a file is missing, damaged (not JSON, truncated weights, a key missing) or
            does not fit the config, or a weight is NaN or infinite; the message names the file.
    """
    folder = Path(folder)
    check_model_folder(folder)
    payload, config = _read_config(folder / CONFIG)
    spec = _read_spec(folder, payload)
    preprocessor = _read_preprocessing(folder / PREPROCESSING)
    input_infos = payload["input_infos"]
    target_infos = payload["target_infos"]
    model = build_model(without_pretrained_weights(config), input_infos, target_infos)
    state = _read_weights(folder / WEIGHTS)
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


def check_model_folder(folder: Path) -> None:
    """Raise ModelError unless ``folder`` has every file of a model folder and each matches
    its checksum (a folder saved before checksums existed loads with a warning).

    Raises:
        ModelError: a file is missing, or its content is not what was saved.
    """
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise ModelError(
                f"{folder}: not a polymodal model folder ({name} is missing); "
                "give the folder that `polymodal fit` wrote (OUT/model)"
            )
    if not (folder / CHECKSUMS).is_file():
        warnings.warn(
            f"{folder}: no {CHECKSUMS} (saved by an earlier polymodal), so its files cannot be "
            "verified; use it only if it comes from a source you trust",
            UserWarning,
            stacklevel=3,
        )
        return
    verify_checksums(folder)


# What to do about a damaged model folder file.
DAMAGED = "the model folder is damaged: copy it again from its source or export it again"
REQUIRED_CONFIG_KEYS = ("model", "input_infos", "target_infos")


def _read_config(path: Path) -> tuple[dict, ModelConfig]:
    """config.json's payload and its validated model config."""
    payload = read_json_object(path, DAMAGED)
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in payload]
    if missing:
        raise ModelError(
            f"{path}: the key(s) {', '.join(map(repr, missing))} are missing; {DAMAGED}"
        )
    resolve_config_paths(payload, path.parent)
    try:
        config = ModelConfig.model_validate(payload["model"])
    except ValueError as err:
        raise ModelError(f"{path}: unreadable model config ({err})") from None
    return payload, config


def _read_spec(folder: Path, payload: dict) -> CohortSpec:
    """The folder's cohort spec, its relative paths resolved against the training cohort's
    folder while that still exists (stored relative to the model folder; absolute in folders
    saved before), else against the model folder."""
    base_dir = resolve_stored_path(payload.get("spec_base_dir"), folder)
    base_dir = base_dir if base_dir is not None and base_dir.is_dir() else folder
    try:
        raw = yaml.safe_load((folder / SPEC).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelError(f"{folder / SPEC}: not a readable YAML spec ({err}); {DAMAGED}") from None
    return parse_spec(raw, base_dir=base_dir, source=str(folder / SPEC))


def _read_preprocessing(path: Path) -> Preprocessor:
    """The fitted preprocessing state, its tokenizer folders resolved against the model folder."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not a JSON preprocessing state ({err}); {DAMAGED}") from None
    return Preprocessor.from_dict(resolve_preprocessing_paths(data, path.parent), source=str(path))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a safetensors file, every floating-point value finite."""
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(
            f"{path}: not a readable safetensors file ({err}); it may be truncated or "
            f"overwritten; {DAMAGED}"
        ) from None
    bad = [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise ModelError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({', '.join(bad[:5])}); "
            "the model would predict nothing usable. The training diverged (lower train.lr, "
            f"check the inputs with `polymodal validate`) or {DAMAGED}"
        )
    return state


def without_pretrained_weights(config: ModelConfig) -> ModelConfig:
    """The config with the ``pretrained`` weights of image encoders and of the core (a ViT
    backbone inside it) left out.

    The folder's safetensors overwrite every weight anyway; loading the ImageNet weights first
    would read a large file for nothing and fail where the weights package is not installed or
    the training machine's weights file is not there.
    """
    encoders = {
        name: choice.model_copy(update={"options": _without_pretrained(choice.options)})
        for name, choice in config.encoders.items()
    }
    core_options = _without_pretrained(config.core_options)
    return config.model_copy(update={"encoders": encoders, "core_options": core_options})


def _without_pretrained(options: dict) -> dict:
    return {k: v for k, v in options.items() if k != "pretrained"}
