"""The robustness report: models side by side over the missing-modality matrix, as HTML + PNGs.

:func:`build_report` takes one :class:`EvaluationResult` per model (what ``polymodal evaluate
--json`` writes) and, where given, each model's kept per-sample predictions, and writes one
self-contained ``report.html`` (rendered with jinja2 from ``templates/report.html.j2``, every
figure embedded) and the figures as PNGs:

- a header per model: core, configuration, training cohort and date, evaluation cohort, split,
  date, rows, patients and prevalence (:mod:`polymodal.evaluation.report_models`);
- per target, the chosen metric against the number of missing modalities, a forest plot of every
  modality subset, and a side-by-side table where a model is bold only when a paired test
  (:mod:`polymodal.evaluation.report_verdicts`) finds it better than every other model and it
  is better than no skill; numbers that do not mean what they seem are flagged
  (:mod:`polymodal.evaluation.report_flags`) against the kind's no-skill levels;
- per target, from the kept predictions, the clinical figures (ROC/PR with bands, reliability,
  decision curve, confusion matrix, Kaplan–Meier by risk group;
  :mod:`polymodal.evaluation.figures`) for the full modality set and each single modality;
- each model's model card (collapsed; :mod:`polymodal.evaluation.report_cards`), its full
  metric tables (collapsed), training curves from each run's metrics.csv, and the evaluation
  settings; a side-by-side table of more than :data:`OPEN_ROWS` subsets starts collapsed.

Which models can be compared:

- Every model must report the same targets with the same kinds; otherwise :class:`ReportError`.
- Models over the same modalities are compared on every subset any of them evaluated (a cell is
  "not evaluated" where one model skipped a subset, e.g. ``evaluate --no-subsets``).
- Models over different modalities raise :class:`ReportError` unless ``shared_subsets=True``
  (``--shared-subsets``): then they are compared only on the subsets every model evaluated, the
  number of missing modalities counts from the modalities those shared subsets span, and the
  report lists each model's subsets that were left out.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polymodal import __version__, targets
from polymodal.evaluation.kept_predictions import KeptPredictions
from polymodal.evaluation.report_cards import card_sections
from polymodal.evaluation.report_flags import FLAGS, NO_SKILL, flags, symbols
from polymodal.evaluation.report_models import model_rows, no_skill_levels
from polymodal.evaluation.report_plan import TargetPlan, lower_is_better, plan_report
from polymodal.evaluation.report_verdicts import Verdicts, paired_verdicts
from polymodal.evaluation.tables import MAIN_METRICS, EvaluationResult, _cell, _header, _notes

DEFAULT_TITLE = "polymodal robustness report"
# A side-by-side table with more modality subsets than this starts collapsed.
OPEN_ROWS = 8
TEMPLATE = "report.html.j2"

# Settings shown first in the settings table; any others follow in the order they appear.
SETTINGS_ORDER = ("model", "split", "n_boot", "population")
# Settings shown in the models table instead (nested records).
IN_HEADER = ("provenance", "labels")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.text { min-width: 8em; max-width: 28em; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: 0.9em; }
ul.notes, ul.legend { color: #555; font-size: 0.85em; }
.flag { font-weight: bold; color: #b45309; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
.card { border-left: 3px solid #ddd; padding-left: 1em; }
.wide, .card { overflow-x: auto; max-width: 100%; } td:first-child { white-space: nowrap; }
.metrics table { font-size: 0.85em; } .metrics td:first-child { white-space: normal; min-width: 9em; }
td.num .ci { font-size: 0.85em; color: #444; white-space: normal; }
"""


def build_report(
    results: Mapping[str, EvaluationResult],
    out_dir: Path,
    *,
    metric: str | None = None,
    title: str = DEFAULT_TITLE,
    shared_subsets: bool = False,
    predictions: Mapping[str, KeptPredictions | None] | None = None,
    n_boot_paired: int = 1000,
    figure_boot: int = 200,
    seed: int = 0,
    clinical_figures: bool = True,
) -> Path:
    """Write ``report.html`` and its figures into ``out_dir``; return the HTML path.

    Args:
        results: model name → its evaluation result (``EvaluationResult.from_json``).
        out_dir: created if needed; gets the PNGs and ``report.html`` (the PNGs embedded as
            base64, so the HTML stands alone).
        metric: the metric of the figures and side-by-side table (default: each kind's
            headline: AUROC, macro AUROC, RMSE, C-index, …).
        title: the report's heading.
        shared_subsets: compare models over different modalities on the subsets they share.
        predictions: model name → its kept predictions (``read_predictions``), None where it has
            none: paired tests and clinical figures need them.
        n_boot_paired: paired bootstrap resamples of the tests. figure_boot: resamples of the
            figures' bands. seed: of both.
        clinical_figures: draw the clinical figures from the kept predictions (the slow part).

    Raises:
        ReportError: the results cannot be compared (see :func:`plan_report`).
    """
    # matplotlib is imported only when a report is drawn
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    plans = plan_report(results, metric=metric, shared_subsets=shared_subsets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = {m: (predictions or {}).get(m) for m in results}
    no_skill = no_skill_levels(results, kept)
    verdicts = paired_verdicts(
        plans, kept, _below_chance(plans, no_skill), n_boot=n_boot_paired, seed=seed
    )
    clinical = _clinical(plans, kept, out_dir, figure_boot, seed) if clinical_figures else {}
    training, training_note = _training(results, plans, out_dir)
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        keep_trailing_newline=True,
    )
    page = environment.get_template(TEMPLATE).render(
        title=title,
        css=_CSS,
        models=model_rows(results, kept),
        cards=card_sections(results),
        model_names=list(results),
        target_names=[plan.name for plan in plans],
        method=_method_note(results),
        verdict_rule=_verdict_rule(verdicts, len(results)),
        verdict_notes=verdicts.notes,
        flags=FLAGS,
        targets=[
            _target(plan, results, out_dir, stem, no_skill.get(plan.name, {}), verdicts, clinical)
            for plan, stem in zip(plans, _file_stems([p.name for p in plans]).values(), strict=True)
        ],
        training=training,
        training_note=training_note,
        settings=_settings_rows(results),
        version=__version__,
    )
    html_path = out_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return html_path


def _file_stems(names: list[str]) -> dict[str, str]:
    """A file-name-safe, unique stem per target name (``"age/sex"`` → ``"age_sex"``)."""
    stems: dict[str, str] = {}
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "target"
        candidate, i = stem, 2
        while candidate in stems.values():
            candidate, i = f"{stem}_{i}", i + 1
        stems[name] = candidate
    return stems


def _figure(file_name: str, data: bytes, caption: str, alt: str) -> dict[str, str]:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return {"file": file_name, "uri": uri, "caption": caption, "alt": alt}


def _below_chance(plans: list[TargetPlan], no_skill: Mapping[str, Mapping[str, float]]):
    """(target, subset) → the models whose estimate of the plan's metric is at or worse than
    no skill (never marked better)."""
    out: dict[tuple[str, frozenset[str]], set[str]] = {}
    for plan in plans:
        for subset in plan.subsets:
            out[(plan.name, frozenset(subset))] = {
                model
                for model in plan.by_model
                if (r := plan.result(model, subset)) is not None
                and NO_SKILL
                in flags(r.metrics.get(plan.metric), plan.metric, no_skill.get(plan.name, {}))
            }
    return out


def _verdict_rule(verdicts: Verdicts, n_models: int) -> str:
    if n_models < 2:
        return "One model: there is nothing to compare."
    if verdicts.tested:
        return (
            "A model is bold only where a paired, patient-grouped bootstrap test of the "
            "difference finds it better than every other model (Holm-adjusted p < 0.05) and its "
            "estimate is better than no skill; elsewhere the data cannot tell the models apart."
        )
    return "No model is bold: there is no paired test behind this report (see below)."


def _method_note(results: Mapping[str, EvaluationResult]) -> str:
    draws = sorted(
        {
            (s.level, s.n_boot)
            for r in results.values()
            for t in r.targets.values()
            for s in t.subsets
            if s.n_boot > 0
        }
    )
    if not draws:
        return "No intervals: the models were evaluated without bootstrap resamples."
    if len(draws) == 1:
        level, n_boot = draws[0]
        how = f"{level * 100:g}% percentile bootstrap interval from {n_boot} resamples"
    else:
        how = "percentile bootstrap interval (differs between models: " + ", ".join(
            f"{level * 100:g}% from {n_boot} resamples" for level, n_boot in draws
        )
        how += ")"
    return (
        f"Every interval is a {how}: patient groups, not rows, are drawn with replacement and "
        "the metric is recomputed on each resample (grouped percentile bootstrap), so the rows "
        "of one patient move together. Each model scores every modality subset on the same "
        "rows with the other modalities masked, so the rows of a table are paired: the overlap "
        "of two intervals is not a test."
    )


def _robustness_caption(plan: TargetPlan) -> str:
    return (
        f"{_header(plan.metric)} against the number of missing modalities (of "
        f"{len(plan.modalities)}: {', '.join(plan.modalities)}). Light points with bars: each "
        "modality subset's estimate and its bootstrap CI. Line: the mean of the subset "
        "estimates with that many modalities missing (an average over subsets, not a pooled "
        "estimate, so it has no interval of its own)."
    )


def _subsets_caption(plan: TargetPlan) -> str:
    return (
        f"{_header(plan.metric)} with its bootstrap CI for every modality subset and model, "
        "largest subset on top; the dashed line marks each model's estimate on the first "
        "(largest) subset, so a point left of it (right, for a lower-is-better metric) shows "
        "what losing the missing modalities costs."
    )


def _alt(plan: TargetPlan, what: str) -> str:
    """Alt text naming the numbers of the figure: each model's estimate on the full set."""
    full = plan.subsets[0]
    values = []
    for model in plan.by_model:
        result = plan.result(model, full)
        values.append(f"{model} {_cell(result, plan.metric) if result else 'not evaluated'}")
    return (
        f"{what} of {_header(plan.metric)} for {plan.name}; with {' + '.join(full)}: "
        + "; ".join(values)
    )


def _target(plan, results, out_dir: Path, stem: str, no_skill, verdicts, clinical):
    """The template's context of one target."""
    from polymodal.evaluation.report_figures import png_bytes, robustness_figure, subsets_figure

    models = list(results)
    figures = []
    for prefix, figure, caption, what in (
        ("robustness", robustness_figure(plan, models), _robustness_caption(plan), "Line plot"),
        ("subsets", subsets_figure(plan, models), _subsets_caption(plan), "Forest plot"),
    ):
        data = png_bytes(figure)
        path = out_dir / f"{prefix}_{stem}.png"
        path.write_bytes(data)
        figures.append(_figure(path.name, data, caption, _alt(plan, what)))
    rows, show_verdicts = _side_rows(plan, no_skill, verdicts)
    notes = [
        f"{model}, {subset.label}: {subset.reasons[plan.metric]}"
        for model in models
        for s in plan.subsets
        if (subset := plan.result(model, s)) is not None and plan.metric in subset.reasons
    ]
    notes += [
        f"Left out for {model} (not evaluated by every model): {', '.join(subsets)}."
        for model, subsets in plan.left_out.items()
        if subsets
    ]
    sections, clinical_note = clinical.get(plan.name, ([], None))
    return {
        "name": plan.name,
        "kind": plan.kind,
        "no_skill": ", ".join(f"{_header(m)} {v:.3f}" for m, v in no_skill.items()),
        "figures": figures,
        "metric_header": _header(plan.metric),
        "direction": "lower is better" if lower_is_better(plan.metric) else "higher is better",
        "model_names": models,
        "rows": rows,
        "show_verdicts": show_verdicts,
        "open": len(rows) <= OPEN_ROWS,
        "notes": notes,
        "clinical": sections,
        "clinical_note": clinical_note,
        "full_tables": [
            table
            for model, result in results.items()
            for table in _full_tables(model, plan, result, no_skill)
        ],
    }


def _side_rows(plan: TargetPlan, no_skill, verdicts: Verdicts):
    """Rows of the side-by-side table: flagged cells, bold only for a paired test's winner."""
    rows = []
    for subset in plan.subsets:
        verdict = verdicts.get(plan.name, subset)
        cells = []
        for model in plan.by_model:
            result = plan.result(model, subset)
            if result is None:
                cells.append({"text": "not evaluated", "bold": False})
                continue
            found = flags(result.metrics.get(plan.metric), plan.metric, no_skill)
            text = _cell(result, plan.metric) + symbols(found)
            bold = verdict is not None and verdict.better == model
            cells.append({"text": text, "bold": bold})
        rows.append(
            {
                "label": " + ".join(subset),
                "missing": ", ".join(m for m in plan.modalities if m not in subset) or "—",
                "cells": cells,
                "verdict": verdict.text if verdict else "no paired test",
            }
        )
    return rows, verdicts.tested


def _full_tables(model: str, plan: TargetPlan, result: EvaluationResult, no_skill):
    target = result.targets[plan.name]
    ordered = list(dict.fromkeys(m for s in target.subsets for m in s.metrics))
    tables = [("", [m for m in MAIN_METRICS[plan.kind] if m in ordered])]
    per_class = [m for m in ordered if "[" in m]
    if per_class:
        tables.append((" per class", per_class))
    out = []
    for suffix, columns in tables:
        rows = []
        for s in target.subsets:
            cells = []
            for column in columns:
                point, _, interval = _cell(s, column).partition(" (")
                mark = symbols(flags(s.metrics.get(column), column, no_skill))
                cells.append(
                    {"point": point + mark, "interval": f"({interval}" if interval else ""}
                )
            rows.append({"label": s.label, "n": f"{s.n_samples} ({s.n_groups})", "cells": cells})
        out.append(
            {
                "title": f"{model}{suffix}",
                "headers": [_header(c) for c in columns],
                "rows": rows,
                "notes": _notes(target, columns),
            }
        )
    return out


def _clinical(plans, kept, out_dir: Path, n_boot: int, seed: int):
    """target → (subset sections of figures, or a note why there are none)."""
    from polymodal.evaluation.compare import ComparisonError, shared_subsets, shared_targets
    from polymodal.evaluation.figures.clinical import ClinicalFigures

    have = {m: k for m, k in kept.items() if k is not None}
    if not have:
        note = (
            "No clinical figures (ROC, PR, calibration, decision curve, confusion matrix): they "
            "are drawn from the per-sample predictions polymodal evaluate keeps beside each "
            "RESULT.json (RESULT.predictions.parquet), and none were found."
        )
        return {plan.name: ([], note) for plan in plans}
    try:
        names, subsets = shared_targets(have), shared_subsets(have)
    except ComparisonError as err:
        return {plan.name: ([], f"No clinical figures: {err}") for plan in plans}
    drawer = ClinicalFigures(have, out_dir, n_boot, seed)
    lacking = [m for m in kept if m not in have]
    out = {}
    for plan in plans:
        if plan.name not in names:
            continue
        sections = [
            {"label": s.label, "figures": [_figure(*f.__dict__.values()) for f in s.figures]}
            for s in drawer.target(plan.name, subsets)
        ]
        note = f"Without {', '.join(lacking)} (no kept predictions)." if lacking else None
        out[plan.name] = (sections, note)
    return out


def _training(results: Mapping[str, EvaluationResult], plans, out_dir: Path):
    """Training curves of the models whose run folder has a metrics.csv, and a note on the
    others."""
    from polymodal.evaluation.figures.training_curves import metrics_csv, per_epoch, training_figure
    from polymodal.evaluation.report_figures import png_bytes

    runs, without = {}, []
    for model, result in results.items():
        folder = result.settings.get("model")
        path = metrics_csv(folder) if folder else None
        try:
            runs[model] = per_epoch(path)
        except (OSError, ValueError, TypeError):
            without.append(model)
    note = (
        f"No training curves for {', '.join(without)}: no RUN/logs/metrics.csv beside the model "
        "folder (polymodal fit --out RUN writes it)."
        if without
        else None
    )
    if not runs:
        return [], note
    headlines = {plan.name: targets.get(plan.kind).headline for plan in plans}
    figure = training_figure(runs, headlines, "training curves")
    data = png_bytes(figure)
    (out_dir / "training_curves.png").write_bytes(data)
    last = "; ".join(f"{m}: {len(e)} epochs" for m, e in runs.items())
    caption = (
        "Training (solid) and validation (dashed) loss per epoch, and each target's headline "
        "validation metric, from each run's metrics.csv."
    )
    return [_figure("training_curves.png", data, caption, f"Training curves. {last}.")], note


def _settings_rows(results: Mapping[str, EvaluationResult]) -> list[dict[str, Any]]:
    keys = list(SETTINGS_ORDER) + [
        k for r in results.values() for k in r.settings if k not in SETTINGS_ORDER
    ]
    keys = [
        k
        for k in dict.fromkeys(keys)
        if k not in IN_HEADER and any(k in r.settings for r in results.values())
    ]
    return [
        {"key": key, "cells": [_setting(r.settings.get(key, "—")) for r in results.values()]}
        for key in keys
    ]


def _setting(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return str(value)
