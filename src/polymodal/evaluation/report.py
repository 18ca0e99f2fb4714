"""The robustness report: models side by side over the missing-modality matrix, as HTML + PNGs.

:func:`build_report` takes one :class:`EvaluationResult` per model (what ``polymodal evaluate
--json`` writes) and writes, per target, a figure of the chosen metric against the number of
missing modalities, a forest plot of every modality subset, a side-by-side table of the models,
and each model's full metric table, into one self-contained ``report.html``.

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
import html
import math
import re
from collections.abc import Mapping
from pathlib import Path

from polymodal import __version__
from polymodal.evaluation.report_plan import TargetPlan, lower_is_better, plan_report
from polymodal.evaluation.tables import (
    MAIN_METRICS,
    EvaluationResult,
    _cell,
    _header,
    _notes,
)

DEFAULT_TITLE = "polymodal robustness report"

# Settings shown first in the settings table; any others follow in the order they appear.
SETTINGS_ORDER = ("model", "split", "n_boot", "population")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: 0.9em; }
ul.notes { color: #555; font-size: 0.85em; }
.wide { overflow-x: auto; } td:first-child { white-space: nowrap; }
"""


def build_report(
    results: Mapping[str, EvaluationResult],
    out_dir: Path,
    *,
    metric: str | None = None,
    title: str = DEFAULT_TITLE,
    shared_subsets: bool = False,
) -> Path:
    """Write ``report.html`` and its figures into ``out_dir``; return the HTML path.

    Args:
        results: model name → its evaluation result (``EvaluationResult.from_json``).
        out_dir: created if needed; gets ``robustness_<target>.png``, ``subsets_<target>.png``
            and ``report.html`` (the PNGs embedded as base64, so the HTML stands alone).
        metric: the metric of the figures and side-by-side table (default per target kind:
            AUROC, macro AUROC, RMSE, C-index).
        title: the report's heading.
        shared_subsets: compare models over different modalities on the subsets they share.

    Raises:
        ReportError: the results cannot be compared (see :func:`plan_report`).
    """
    # matplotlib is imported only when a report is drawn
    from polymodal.evaluation.report_figures import png_bytes, robustness_figure, subsets_figure

    plans = plan_report(results, metric=metric, shared_subsets=shared_subsets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = list(results)
    stems = _file_stems([plan.name for plan in plans])
    body = [f"<h1>{_e(title)}</h1>", _settings_html(results), _method_note(results)]
    for plan in plans:
        figures = []
        for prefix, figure, caption in (
            ("robustness", robustness_figure(plan, models), _robustness_caption(plan)),
            ("subsets", subsets_figure(plan, models), _subsets_caption(plan)),
        ):
            data = png_bytes(figure)
            path = out_dir / f"{prefix}_{stems[plan.name]}.png"
            path.write_bytes(data)
            figures.append((path.name, data, caption))
        body.append(_target_html(plan, results, figures))
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f'\n<p class="note">Written by polymodal {_e(__version__)}.</p>\n</body>\n</html>\n'
    )
    html_path = out_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return html_path


def _file_stems(targets: list[str]) -> dict[str, str]:
    """A file-name-safe, unique stem per target name (``"age/sex"`` → ``"age_sex"``)."""
    stems: dict[str, str] = {}
    for target in targets:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("._") or "target"
        candidate, i = stem, 2
        while candidate in stems.values():
            candidate, i = f"{stem}_{i}", i + 1
        stems[target] = candidate
    return stems


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _settings_html(results: Mapping[str, EvaluationResult]) -> str:
    keys = list(SETTINGS_ORDER) + [
        k for r in results.values() for k in r.settings if k not in SETTINGS_ORDER
    ]
    keys = [k for k in dict.fromkeys(keys) if any(k in r.settings for r in results.values())]
    header = "".join(f"<th>{_e(model)}</th>" for model in results)
    rows = [
        f"<tr><th>{_e(key)}</th>"
        + "".join(f"<td>{_e(r.settings.get(key, '—'))}</td>" for r in results.values())
        + "</tr>"
        for key in keys
    ]
    return (
        "<h2>Settings</h2>\n<table>\n<caption>What each model was evaluated on "
        "(from its evaluation result).</caption>\n"
        f"<tr><th>setting</th>{header}</tr>\n" + "\n".join(rows) + "\n</table>"
    )


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
        how = "<p>No intervals: the models were evaluated without bootstrap resamples.</p>"
        return "<h2>How to read this report</h2>\n" + how
    if len(draws) == 1:
        level, n_boot = draws[0]
        how = f"{level * 100:g}% percentile bootstrap interval from {n_boot} resamples"
    else:
        how = "percentile bootstrap interval (differs between models: " + ", ".join(
            f"{level * 100:g}% from {n_boot} resamples" for level, n_boot in draws
        )
        how += ")"
    return (
        "<h2>How to read this report</h2>\n<p>Every interval is a "
        + _e(how)
        + ": patient groups, not rows, are drawn with replacement and the metric is recomputed "
        "on each resample (grouped percentile bootstrap), so the rows of one patient move "
        "together. A † marks an interval that rests on fewer resamples than were drawn because "
        "the metric was undefined in some of them; the notes under a table say why. Each model "
        "scores every modality subset on the same rows with the other modalities masked, so "
        "the rows of a table are paired: the overlap of two intervals is not a test.</p>"
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


def _target_html(plan: TargetPlan, results: Mapping[str, EvaluationResult], figures) -> str:
    parts = [f"<h2>Target {_e(plan.name)} ({_e(plan.kind)})</h2>"]
    for file_name, data, caption in figures:
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img src="{uri}" alt="{_e(file_name)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append(_side_by_side(plan))
    for model, subsets in plan.left_out.items():
        if subsets:
            parts.append(
                f'<p class="note">Left out for {_e(model)} (not evaluated by every model): '
                f"{_e(', '.join(subsets))}.</p>"
            )
    parts.append("<h3>Every metric, per model</h3>")
    for model, result in results.items():
        parts.append(_full_tables(model, plan, result))
    return "\n".join(parts)


def _side_by_side(plan: TargetPlan) -> str:
    models = list(plan.by_model)
    direction = "lower is better" if lower_is_better(plan.metric) else "higher is better"
    rows = []
    for subset in plan.subsets:
        results = {m: plan.result(m, subset) for m in models}
        points = {
            m: r.metrics[plan.metric].point
            for m, r in results.items()
            if r is not None
            and plan.metric in r.metrics
            and not math.isnan(r.metrics[plan.metric].point)
        }
        best = None
        if len(points) > 1:
            best = (min if lower_is_better(plan.metric) else max)(points.values())
        cells = []
        for model, result in results.items():
            text = "not evaluated" if result is None else _cell(result, plan.metric)
            cell = _e(text)
            if best is not None and points.get(model) == best:
                cell = f"<strong>{cell}</strong>"
            cells.append(f'<td class="num">{cell}</td>')
        missing = [m for m in plan.modalities if m not in subset]
        rows.append(
            f"<tr><td>{_e(' + '.join(subset))}</td><td>{_e(', '.join(missing) or '—')}</td>"
            + "".join(cells)
            + "</tr>"
        )
    header = "".join(f"<th>{_e(m)}</th>" for m in models)
    notes = [
        f"{model}, {subset.label}: {subset.reasons[plan.metric]}"
        for model in models
        for s in plan.subsets
        if (subset := plan.result(model, s)) is not None and plan.metric in subset.reasons
    ]
    return (
        f"<table>\n<caption>{_e(_header(plan.metric))} ({direction}), point estimate "
        "(CI), models side by side; the best model per subset in bold.</caption>\n"
        f"<tr><th>modalities</th><th>missing</th>{header}</tr>\n"
        + "\n".join(rows)
        + "\n</table>"
        + _notes_html(notes)
    )


def _full_tables(model: str, plan: TargetPlan, result: EvaluationResult) -> str:
    target = result.targets[plan.name]
    ordered = list(dict.fromkeys(m for s in target.subsets for m in s.metrics))
    tables = [("", [m for m in MAIN_METRICS[plan.kind] if m in ordered])]
    per_class = [m for m in ordered if "[" in m]
    if per_class:
        tables.append((" per class", per_class))
    parts = []
    for suffix, columns in tables:
        header = "".join(f"<th>{_e(_header(c))}</th>" for c in columns)
        rows = [
            f'<tr><td>{_e(s.label)}</td><td class="num">{s.n_samples} ({s.n_groups})</td>'
            + "".join(f'<td class="num">{_stacked(_cell(s, c))}</td>' for c in columns)
            + "</tr>"
            for s in target.subsets
        ]
        parts.append(
            f'<div class="wide"><table>\n<caption>{_e(model)}{_e(suffix)}: point estimate '
            "(CI) per modality subset; n = rows (patient groups) scored.</caption>\n"
            f"<tr><th>modalities</th><th>n (groups)</th>{header}</tr>\n"
            + "\n".join(rows)
            + "\n</table></div>"
            + _notes_html(_notes(target, columns))
        )
    return "\n".join(parts)


def _stacked(cell: str) -> str:
    """``0.873 (0.851–0.894)`` with the interval on its own line, so wide tables fit a page."""
    point, bracket, interval = cell.partition(" (")
    return _e(point) + (f"<br>{_e(bracket.strip() + interval)}" if bracket else "")


def _notes_html(notes: list[str]) -> str:
    if not notes:
        return ""
    return '\n<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
