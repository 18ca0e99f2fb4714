"""The report's header rows: per model its core, config, training cohort and date, and what it
was evaluated on (cohort, split, date, rows, patients, prevalence), from the evaluation JSON's
settings (:mod:`polymodal.evaluation.provenance`), else from the model folder's config.json,
else from the kept predictions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polymodal.evaluation.kept_predictions import KeptPredictions
from polymodal.evaluation.provenance import label_references, model_provenance
from polymodal.evaluation.tables import EvaluationResult

MISSING = "—"


def provenance(result: EvaluationResult) -> dict[str, Any]:
    """The model's provenance as evaluate recorded it, else read from its folder now."""
    found = result.settings.get("provenance")
    if found:
        return dict(found)
    model = result.settings.get("model")
    return model_provenance(model) if model else {}


def labels(result: EvaluationResult, kept: KeptPredictions | None) -> dict[str, Any]:
    """Per target: n_labelled, summary (prevalence, …), no_skill; from the JSON, else the
    kept predictions' largest subset, else ``{}``."""
    found = result.settings.get("labels")
    if found:
        return dict(found)
    if kept is None:
        return {}
    full = max(kept.subsets, key=len)
    rows = {t: tuple(kept.arrays(full, t)[2:4]) for t in kept.targets}
    specificity = float(kept.settings.get("specificity", 0.9))
    return label_references(rows, kept.targets, specificity)


def config_summary(found: Mapping[str, Any]) -> str:
    """``dim 128; encoders image: image_timm (backbone efficientnet_b0), tabular: default;
    modality dropout 0.1; core options {...}``."""
    parts = []
    if found.get("dim") is not None:
        parts.append(f"dim {found['dim']}")
    encoders = []
    for modality, choice in (found.get("encoders") or {}).items():
        options = choice.get("options") or {}
        detail = f" ({options['backbone']})" if "backbone" in options else ""
        encoders.append(f"{modality}: {choice.get('name') or 'default'}{detail}")
    if encoders:
        parts.append("encoders " + ", ".join(encoders))
    if found.get("modality_dropout"):
        parts.append(f"modality dropout {found['modality_dropout']:g}")
    if found.get("core_options"):
        parts.append(f"core options {found['core_options']}")
    if found.get("monitor"):
        best = found.get("best_score")
        parts.append(f"selected by {found['monitor']}" + (f" = {best:.3f}" if best else ""))
    return "; ".join(parts) or MISSING


def _summary_text(summary: Mapping[str, float]) -> str:
    """``prevalence 0.310`` or, per class, ``prevalence: nevus 0.670, melanoma 0.111, …``."""
    per_class = {k[11:-1]: v for k, v in summary.items() if k.startswith("prevalence[")}
    if per_class:
        return "prevalence: " + ", ".join(f"{k} {v:.3f}" for k, v in per_class.items())
    return ", ".join(f"{k} {v:.3f}" for k, v in summary.items()) or MISSING


def _counts(result: EvaluationResult) -> str:
    for target in result.targets.values():
        if target.subsets:
            first = target.subsets[0]
            return f"{first.n_samples} rows, {first.n_groups} patients"
    return MISSING


def model_rows(
    results: Mapping[str, EvaluationResult], kept: Mapping[str, KeptPredictions | None]
) -> list[dict[str, Any]]:
    """One dict of header cells per model (every value a string)."""
    rows = []
    for model, result in results.items():
        found, settings = provenance(result), result.settings
        per_target = labels(result, kept.get(model))
        training = found.get("training_cohort") or MISSING
        if found.get("training_rows"):
            training += " (" + ", ".join(f"{s} {n}" for s, n in found["training_rows"].items())
            training += " rows)"
        rows.append(
            {
                "name": model,
                "core": str(found.get("core") or MISSING),
                "config": config_summary(found),
                "training": training,
                "saved": str(found.get("saved_at") or MISSING),
                "evaluated": " · ".join(
                    str(settings[k]) for k in ("cohort", "split", "evaluated_at") if k in settings
                )
                or MISSING,
                "counts": _counts(result),
                "labels": {t: _summary_text(v.get("summary", {})) for t, v in per_target.items()},
                "kept": "yes" if kept.get(model) is not None else "no",
            }
        )
    return rows


def no_skill_levels(
    results: Mapping[str, EvaluationResult], kept: Mapping[str, KeptPredictions | None]
) -> dict[str, dict[str, float]]:
    """Per target the no-skill level of each metric (the first model that records them: the
    models are scored on the same labels)."""
    out: dict[str, dict[str, float]] = {}
    for model, result in results.items():
        for target, found in labels(result, kept.get(model)).items():
            out.setdefault(target, dict(found.get("no_skill", {})))
    return out
