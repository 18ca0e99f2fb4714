"""Where an evaluated model and its labels come from: what ``polymodal evaluate`` records in the
evaluation JSON's settings so that a report names each model's core, config, training cohort
and date, and each target's prevalence and no-skill levels.

``settings["provenance"]`` (:func:`model_provenance`)::

    {"core": "synergy", "dim": 128, "core_options": {...}, "encoders": {"image": {...}},
     "modality_dropout": 0.1, "training_cohort": "ham10000", "training_rows": {"train": 7000},
     "saved_at": "2026-12-07T10:03:11+00:00", "polymodal_version": "…",
     "monitor": "val/dx/auroc_macro", "best_score": 0.91}

``settings["labels"]`` (:func:`label_references`): per target the labelled rows of the split,
the kind's label summary (``prevalence``, …) and its no-skill metric levels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from polymodal import targets
from polymodal.targets import MetricOptions


def model_provenance(folder: Path | str) -> dict[str, Any]:
    """The model folder's core, config, training cohort and save date (from ``config.json``,
    read as JSON only); ``{}`` when the folder or its config is not readable."""
    path = Path(folder) / "config.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        model = payload["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    cohort = payload.get("training_cohort") or {}
    saved = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return {
        "core": model.get("core"),
        "dim": model.get("dim"),
        "core_options": model.get("core_options") or {},
        "encoders": model.get("encoders") or {},
        "modality_dropout": model.get("modality_dropout"),
        "training_cohort": _spec_name(Path(folder)),
        "training_rows": cohort.get("rows"),
        "training_patients": cohort.get("patients"),
        "saved_at": saved.isoformat(timespec="seconds"),
        "polymodal_version": payload.get("polymodal_version"),
        "monitor": payload.get("monitor"),
        "best_score": payload.get("best_score"),
    }


def _spec_name(folder: Path) -> str | None:
    """The ``name:`` of the folder's spec.yaml (the cohort it was trained on), read as YAML."""
    import yaml

    try:
        spec = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return spec.get("name") if isinstance(spec, dict) else None


def label_references(
    labelled: Mapping[str, tuple[Any, Any]],
    target_infos: Mapping[str, Mapping[str, Any]],
    specificity: float,
) -> dict[str, dict[str, Any]]:
    """Per target: ``n_labelled``, the kind's ``summary`` and ``no_skill`` levels.

    Args:
        labelled: target → (scored labels ``(n, …)``, predictions) of the split's labelled rows.
    """
    out = {}
    for target, (y, _) in labelled.items():
        info = target_infos[target]
        kind = targets.get(info["kind"])
        options = MetricOptions(
            classes=info.get("classes"), specificity=specificity, horizons=info.get("horizons")
        )
        if len(y) == 0:
            continue
        y = kind.label_array(y)
        out[target] = {
            "n_labelled": len(y),
            "summary": kind.label_summary(y, options),
            "no_skill": kind.no_skill(y, options),
        }
    return out


def evaluated_at() -> str:
    """Now, in UTC, as ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
