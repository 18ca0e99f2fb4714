"""Paths in a model folder's files, stored relative to the folder.

A model folder is copied to other machines: an absolute path of the training machine
(``/home/alice/cohorts/ham``) would tell where its data lay and would point nowhere there. So
each path field is written relative to the model folder (``../../cohorts/ham``), which still
finds what moved along with the folder, and left out where the only way up is through the
filesystem root (a file name stays where the field needs one).

The path fields: config.json's ``spec_base_dir``, each text input's ``tokenizer`` folder and
each encoder's ``model_path``, and any absolute path in the run record (``train.cache_dir``,
a teacher folder, ...); preprocessing.json's tokenizer folders; spec.yaml's ``manifest``,
``root`` and ``tokenizer`` (relative to the spec's folder, as the spec reads them). Loading
resolves the fields it needs against the model folder; absolute paths of folders saved
before still load.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from polymodal.data.spec import CohortSpec

# config.json keys that hold data or names rather than settings: never rewritten wholesale.
_NOT_SETTINGS = ("input_infos", "target_infos", "training_cohort", "spec_base_dir")
_PACKAGE_PREFIX = "package:"


def relative_path(path: str | Path, start: Path) -> str | None:
    """``path`` relative to the folder ``start``, or None when the two share nothing below the
    filesystem root (the relative path would spell out the absolute one)."""
    path, start_text = os.path.abspath(path), os.path.abspath(start)
    try:
        common = os.path.commonpath([path, start_text])
    except ValueError:  # another drive (Windows): no relative path exists
        return None
    if os.path.dirname(common) == common:
        return None
    return Path(os.path.relpath(path, start_text)).as_posix()


def _is_absolute(value: Any) -> bool:
    return isinstance(value, str) and os.path.isabs(value)


def _portable_or_name(value: Any, start: Path) -> Any:
    """An absolute path made relative to ``start`` (its last part where it cannot be);
    any other value as it is."""
    if not _is_absolute(value):
        return value
    return relative_path(value, start) or Path(value).name


def _portable_setting(value: Any, start: Path) -> Any:
    """Every absolute path inside a settings value made relative to ``start`` (None where it
    cannot be)."""
    if isinstance(value, dict):
        return {k: _portable_setting(v, start) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable_setting(v, start) for v in value]
    return relative_path(value, start) if _is_absolute(value) else value


def portable_config(payload: dict[str, Any], folder: Path) -> dict[str, Any]:
    """config.json's payload with its paths relative to the model folder ``folder``."""
    out = {
        k: (v if k in _NOT_SETTINGS else _portable_setting(v, folder)) for k, v in payload.items()
    }
    base = payload.get("spec_base_dir")
    out.pop("spec_base_dir", None)
    if base is not None and (relative := relative_path(base, folder)) is not None:
        out["spec_base_dir"] = relative
    out["input_infos"] = copy.deepcopy(payload.get("input_infos", {}))
    for info in out["input_infos"].values():
        if "tokenizer" in info:
            info["tokenizer"] = _portable_or_name(info["tokenizer"], folder)
    # Encoders' folders (Hugging Face models) keep at least their name, as tokenizers do.
    for name, choice in (payload.get("model") or {}).get("encoders", {}).items():
        original = (choice or {}).get("options", {}).get("model_path")
        if original is not None:
            out["model"]["encoders"][name]["options"]["model_path"] = _portable_or_name(
                original, folder
            )
    return out


def portable_preprocessing(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """preprocessing.json's data with tokenizer folders relative to ``folder``."""
    out = copy.deepcopy(data)
    for entry in out.get("modalities", {}).values():
        state, config = entry.get("state", {}), entry.get("config", {})
        if "tokenizer_folder" in state:
            state["tokenizer_folder"] = _portable_or_name(state["tokenizer_folder"], folder)
        if config.get("tokenizer") is not None:
            config["tokenizer"] = _portable_or_name(config["tokenizer"], folder)
    return out


def portable_spec(spec: CohortSpec) -> dict[str, Any]:
    """The spec as data (like :func:`~polymodal.data.spec.dump_spec`) with its absolute paths
    relative to the spec's own folder, against which they are read."""
    data = spec.model_dump(mode="json", exclude_none=True)
    base = spec.base_dir.resolve()
    for key in ("manifest", "root"):
        if key in data:
            data[key] = _portable_or_name(data[key], base)
    for section in data.get("modalities", {}).values():
        if section.get("tokenizer") is not None:
            section["tokenizer"] = _portable_or_name(section["tokenizer"], base)
    return data


def resolve_stored_path(value: Any, folder: Path) -> Path | None:
    """A stored path as a path: absolute as it is (folders saved before), relative against the
    model folder; None for no value."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else (folder / path).resolve()


def _resolved_if_there(value: Any, folder: Path) -> Any:
    """A relative folder that exists beside the model folder, made absolute; else unchanged (a
    ``package:`` name, an absolute path, or a path relative to the working folder as before)."""
    if not isinstance(value, str) or value.startswith(_PACKAGE_PREFIX) or os.path.isabs(value):
        return value
    candidate = (folder / value).resolve()
    return str(candidate) if candidate.exists() else value


def resolve_config_paths(payload: dict[str, Any], folder: Path) -> None:
    """Resolve, in place, the paths config.json's model needs to be built: tokenizer folders
    and encoders' ``model_path``."""
    for info in payload.get("input_infos", {}).values():
        if isinstance(info, dict) and info.get("tokenizer") is not None:
            info["tokenizer"] = _resolved_if_there(info["tokenizer"], folder)
    model = payload.get("model")
    encoders = model.get("encoders") if isinstance(model, dict) else None
    for choice in (encoders or {}).values():
        options = choice.get("options") if isinstance(choice, dict) else None
        if isinstance(options, dict) and options.get("model_path") is not None:
            options["model_path"] = _resolved_if_there(options["model_path"], folder)


def resolve_preprocessing_paths(data: Any, folder: Path) -> Any:
    """preprocessing.json's data with its tokenizer folders resolved against ``folder``."""
    if not isinstance(data, dict) or not isinstance(data.get("modalities"), dict):
        return data  # not a state: Preprocessor.from_dict says so
    out = copy.deepcopy(data)
    for entry in out["modalities"].values():
        state = entry.get("state") if isinstance(entry, dict) else None
        if isinstance(state, dict) and state.get("tokenizer_folder") is not None:
            state["tokenizer_folder"] = _resolved_if_there(state["tokenizer_folder"], folder)
    return out
