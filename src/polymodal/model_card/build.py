"""What a model card holds, gathered when ``polymodal fit`` has written the model folder.

:func:`fit_card` reads the folder (its config, recalibration and conformal files), the training
cohort (counts only: :mod:`polymodal.model_card.cohort`) and the model's predictions on the
validation split (metrics and subgroups with patient-grouped bootstrap CIs). JSON layout
(``model_card.json``)::

    {"format": "polymodal-model-card", "version": 1, "written_at": "...",
     "model": {"core", "dim", "encoders", "modalities", "targets", "polymodal_version"},
     "card": {...the card: section...}, "unfilled": ["limitations", ...],
     "cohort": {...}, "recipe": {...}, "calibration": {...},
     "validation": {"split": "val", "targets": {...}, "subgroups": {...}},
     "evaluations": {"test": {...}},       # added by `polymodal card`
     "limitations": [...], "tripod": [...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polymodal import __version__
from polymodal.calibration.folder_files import read_folder_json
from polymodal.data.manifest import Cohort
from polymodal.evaluation.provenance import evaluated_at
from polymodal.model_card.cohort import cohort_section
from polymodal.model_card.config import PLACEHOLDERS, CardConfig
from polymodal.model_card.performance import scored_targets
from polymodal.model_card.subgroups import subgroup_performance

FORMAT = "polymodal-model-card"
# The training settings a card's recipe shows (every setting is in the folder's config.json).
RECIPE_SETTINGS = (
    "max_epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "schedule",
    "label_smoothing",
    "mixup",
    "sampling",
    "early_stopping_patience",
    "seed",
)
# Fewer rows than this in a subgroup level: its interval is too wide to read much into.
SMALL_GROUP = 30


def fit_card(
    folder: Path,
    cohort: Cohort,
    card: CardConfig,
    recipe: dict[str, Any],
    *,
    device: Any = "cpu",
    cache_dir: Path | None = None,
    feature_store: bool = True,
) -> dict[str, Any]:
    """The card of a freshly fitted model folder (see the module docstring for its layout).

    ``recipe``: the training recipe (epochs run, monitor, best score, plugins, settings).
    """
    from polymodal.predictor import Predictor

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    predictor = Predictor.load(
        folder, device=device, cache_dir=cache_dir, feature_store=feature_store
    )
    collector, _ = predictor.collect(cohort, split="val")
    classed = [t for t, info in config["target_infos"].items() if info.get("classes")]
    payload = {
        "format": FORMAT,
        "version": 1,
        "written_at": evaluated_at(),
        "model": model_details(config, predictor.modalities),
        "card": card.model_dump(mode="json"),
        "intended": {field: card.text(field) for field in PLACEHOLDERS},
        "unfilled": card.unfilled(),
        "cohort": cohort_section(cohort, classed),
        "recipe": recipe,
        "calibration": calibration_settings(folder),
        "validation": {
            "split": "val",
            "targets": scored_targets(collector, n_boot=card.n_boot),
            "subgroups": subgroup_performance(
                cohort, card.subgroups, collector, split="val", n_boot=card.n_boot
            ),
        },
        "evaluations": {},
    }
    return payload


def fit_recipe(run: Any, epochs_run: int, monitor: str, best_score: float | None) -> dict[str, Any]:
    """The training recipe of a fit: epochs run, the monitored metric and its best value, the
    training plugins, and the main training settings of ``run`` (a RunConfig)."""
    return {
        "epochs run": epochs_run,
        "monitor": monitor,
        "best score": None if best_score is None else round(best_score, 4),
        "plugins": ", ".join(run.plugin_sections()) or "none",
        "train": {k: getattr(run.train, k) for k in RECIPE_SETTINGS},
    }


def model_details(config: dict[str, Any], modalities: list[str]) -> dict[str, Any]:
    """Core, size, encoders, modalities, targets and version, from ``config.json``."""
    model = config.get("model") or {}
    return {
        "core": model.get("core"),
        "dim": model.get("dim"),
        "core_options": model.get("core_options") or {},
        "encoders": {
            m: (model.get("encoders") or {}).get(m, {}).get("name") or "default" for m in modalities
        },
        "modality_dropout": model.get("modality_dropout"),
        "modalities": {m: config["input_infos"][m].get("kind") for m in modalities},
        "targets": {t: info.get("kind") for t, info in config["target_infos"].items()},
        "polymodal_version": config.get("polymodal_version", __version__),
    }


def calibration_settings(folder: Path) -> dict[str, Any]:
    """The recalibration and conformal settings in the folder (empty without them)."""
    out: dict[str, Any] = {}
    recalibration = read_folder_json(folder, "calibration.json")
    if recalibration:
        out["recalibration"] = {
            "method": recalibration.get("method"),
            "targets": sorted(recalibration.get("targets") or {}),
            "fitted_on": "val",
        }
    conformal = read_folder_json(folder, "conformal.json")
    if conformal:
        out["conformal"] = {
            "coverage": conformal.get("coverage"),
            "score": conformal.get("score"),
            "targets": sorted(conformal.get("targets") or {}),
            "fitted_on": "val",
        }
    return out


def limitations(payload: dict[str, Any]) -> list[str]:
    """What the card's own numbers say to be careful about, after the user's text."""
    out = [payload["intended"]["limitations"]]
    if "test" not in payload.get("evaluations", {}):
        out.append(
            "Performance is shown on the validation split only, which selected the epoch (and "
            "fitted any recalibration): it is optimistic. Add the test split with "
            "`polymodal card MODEL --split test`."
        )
    for modality, per_split in payload["cohort"]["missing"].items():
        share = per_split.get("train", {}).get("share", 0.0)
        if share >= 0.2:
            out.append(
                f"{modality} is missing for {share:.0%} of the training rows; the model's "
                "performance without it is in the per-subset table."
            )
    for split, evidence in _evidence(payload):
        for column, found in evidence.get("subgroups", {}).items():
            small = [
                level
                for level, per_target in found["levels"].items()
                if "suppressed" in per_target
                or any(t.get("n", 0) < SMALL_GROUP for t in per_target.values())
            ]
            if small:
                out.append(
                    f"{split}: subgroups of {column} with fewer than {SMALL_GROUP} rows "
                    f"({', '.join(small)}) have wide intervals."
                )
    return out


def _evidence(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("val", payload["validation"]), *payload.get("evaluations", {}).items()]
