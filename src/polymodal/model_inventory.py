"""What a model folder holds, for a review before it is shared (``polymodal inspect``).

Read from the folder's JSON and YAML files alone (the weights are not loaded): the modalities
with their kinds, columns and encoders, the targets with their kinds and classes, how much
fitted preprocessing state each modality keeps (vocabulary sizes, statistics), the summary of
the training cohort when it was recorded, the fusion core and training settings, and whether
the files match their checksums.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from polymodal import modalities
from polymodal.checksums import CHECKSUMS, verify_checksums
from polymodal.errors import ModelError
from polymodal.json_object import read_json_object

_CONFIG, _PREPROCESSING, _SPEC, _WEIGHTS = (
    "config.json",
    "preprocessing.json",
    "spec.yaml",
    "model.safetensors",
)


def model_inventory(folder: Path | str, *, words: bool = False) -> dict[str, Any]:
    """A JSON-ready description of a model folder.

    Args:
        words: also list each fitted word vocabulary (its words, in id order).

    Raises:
        ModelError: the folder lacks a model folder's files or one is not readable.
    """
    folder = Path(folder)
    config = _read_json(folder / _CONFIG)
    prep = _read_json(folder / _PREPROCESSING)
    spec = _read_spec(folder / _SPEC)
    model = config.get("model", {})
    states = {n: e.get("state", {}) for n, e in prep.get("modalities", {}).items()}
    return {
        "folder": str(folder),
        "polymodal_version": config.get("polymodal_version"),
        "files": _files(folder),
        "checksums": _checksum_status(folder),
        "cohort": spec.get("name"),
        "core": {k: model.get(k) for k in ("core", "dim", "core_options", "modality_dropout")},
        "modalities": {
            name: _modality(name, section, states.get(name, {}), model, words)
            for name, section in spec.get("modalities", {}).items()
        },
        "targets": {
            name: {
                "kind": info.get("kind"),
                "classes": info.get("classes"),
                "column": (spec.get("targets", {}).get(name) or {}).get("column"),
            }
            for name, info in config.get("target_infos", {}).items()
        },
        "training_cohort": config.get("training_cohort"),
        "training": {
            "monitor": config.get("monitor"),
            "best_score": config.get("best_score"),
            **{k: (config.get("train") or {}).get(k) for k in ("max_epochs", "batch_size", "lr")},
        },
    }


def _modality(name: str, section: dict, state: dict, model: dict, words: bool) -> dict[str, Any]:
    """One modality: kind, columns, encoder and the size of its fitted state."""
    kind = section.get("kind")
    choice = (model.get("encoders") or {}).get(name) or {}
    encoder = choice.get("name")
    if encoder is None and kind in modalities.MODALITIES.names():
        encoder = modalities.get(kind).default_encoder
    out: dict[str, Any] = {
        "kind": kind,
        "columns": _columns(section),
        "encoder": encoder,
        "state": _state_sizes(state),
    }
    if words and "tokenizer_json" in state:
        vocab = json.loads(state["tokenizer_json"])["model"]["vocab"]
        out["words"] = sorted(vocab, key=vocab.get)
    return out


def _columns(section: dict) -> list[str]:
    """The manifest columns a modality section reads."""
    columns: list[str] = []
    for key in ("column", "time_column"):
        if isinstance(section.get(key), str):
            columns.append(section[key])
    for key in ("columns", "numeric", "categorical", "from_columns"):
        if isinstance(section.get(key), list):
            columns.extend(str(c) for c in section[key])
    return columns


def _state_sizes(state: dict) -> dict[str, Any]:
    """How much each fitted value holds: a vocabulary's size, a statistic's length."""
    sizes: dict[str, Any] = {}
    for key, value in state.items():
        if key == "tokenizer_json":
            sizes["word_vocabulary"] = len(json.loads(value)["model"]["vocab"])
        elif key == "vocabularies" and isinstance(value, dict):
            sizes["category_vocabularies"] = {c: len(v) for c, v in value.items()}
        elif isinstance(value, list):
            sizes[key] = len(value)
        elif isinstance(value, int | float | str | bool) or value is None:
            sizes[key] = value
        else:
            sizes[key] = f"{type(value).__name__} of {len(value)}"
    return sizes


def _files(folder: Path) -> dict[str, int]:
    """Each file of the folder and its size in bytes."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _checksum_status(folder: Path) -> str:
    """'verified', 'absent' (a folder saved before checksums) or what does not match."""
    if not (folder / CHECKSUMS).is_file():
        return "absent: the files cannot be verified"
    try:
        verify_checksums(folder)
    except ModelError as err:
        return f"FAILED: {err}"
    return "verified"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(
            f"{path.parent}: not a polymodal model folder ({path.name} is missing); give the "
            "folder that `polymodal fit` wrote (OUT/model)"
        )
    return read_json_object(path, "the model folder is damaged")


def _read_spec(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path.parent}: not a polymodal model folder ({path.name} is missing)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not a readable YAML spec ({err})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a YAML mapping; the model folder is damaged")
    return data
