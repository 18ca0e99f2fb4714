"""Evaluation results: every target × every modality subset, as JSON, Markdown and rich tables.

The missing-modality matrix evaluates one trained model on the same test samples with only a
subset of its modalities available, for every non-empty subset (:func:`modality_subsets`). An
:class:`EvaluationResult` holds those tables and renders them.

JSON schema (``EvaluationResult.to_json``), version 1::

    {
      "format": "polymodal-evaluation",
      "version": 1,
      "settings": {...},                    # free-form: model, split, specificity, threshold
      "targets": {
        "<target name>": {
          "kind": "binary",                 # binary | multiclass | multilabel | regression |
                                            # time_to_event | cumulative_risk | digits
          "classes": null,                  # class / label names (multiclass, multilabel)
          "subsets": [                      # in the order they were added (largest first)
            {
              "modalities": ["image", "tabular"],
              "n_samples": 1500, "n_groups": 1203,   # rows and patients scored
              "n_boot": 1000, "level": 0.95,         # resamples drawn, interval coverage
              "metrics": {
                "auroc": {"point": 0.873, "low": 0.851, "high": 0.894, "n_valid": 1000},
                ...
              },
              "reasons": {"f1": "no positive labels and no positive predictions"}
            }
          ]
        }
      }
    }

Undefined numbers (NaN) are written as ``null``; ``reasons`` says why a point value is undefined
or why some resamples were left out (then ``n_valid < n_boot``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polymodal import targets
from polymodal.evaluation.bootstrap import BootstrapResult, MetricCI
from polymodal.evaluation.metrics import EvaluationError

FORMAT = "polymodal-evaluation"
VERSION = 1

# Up to this many subsets the terminal table has one column per subset; beyond, one row each.
SIDEWAYS_MAX_SUBSETS = 3
# Metrics shown per subset row in the terminal (the first of MAIN_METRICS).
TERMINAL_METRICS = 3

# Per target kind, as each kind declares them (polymodal.targets): the columns of the summary
# table (every metric is in the JSON), the readable header of each metric, and the title of the
# detail (per class, per horizon) table of the kinds that have one.
MAIN_METRICS: dict[str, tuple[str, ...]] = {k.name: k.table_metrics for k in targets.kinds()}
HEADERS: dict[str, str] = {m: h for k in targets.kinds() for m, h in k.headers.items()}
DETAIL_TABLES: dict[str, str] = {
    k.name: k.detail_table for k in targets.kinds() if k.detail_table is not None
}


def modality_subsets(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``names`` (2^M − 1), largest first, in the order of ``names``.

    ``modality_subsets(["image", "tabular", "text"])`` →
    ``[("image", "tabular", "text"), ("image", "tabular"), ("image", "text"),
    ("tabular", "text"), ("image",), ("tabular",), ("text",)]``.
    """
    names = list(names)
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise EvaluationError(f"modality names repeat: {duplicates}; give each modality once")
    return [
        subset
        for size in range(len(names), 0, -1)
        for subset in itertools.combinations(names, size)
    ]


@dataclass
class SubsetResult:
    """All metrics of one target with one subset of modalities available."""

    modalities: tuple[str, ...]
    metrics: dict[str, MetricCI]
    n_samples: int
    n_groups: int
    n_boot: int
    level: float
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the subset is named in tables: ``"image + tabular"``."""
        return " + ".join(self.modalities)


@dataclass
class TargetResult:
    """One target's missing-modality matrix: a :class:`SubsetResult` per modality subset."""

    kind: str
    classes: list[str] | None = None
    subsets: list[SubsetResult] = field(default_factory=list)


@dataclass
class EvaluationResult:
    """Metrics with bootstrap intervals per target and per modality subset."""

    targets: dict[str, TargetResult] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        target: str,
        kind: str,
        modalities: Sequence[str],
        ci: BootstrapResult,
        *,
        classes: Sequence[str] | None = None,
    ) -> SubsetResult:
        """Record the bootstrap result of ``target`` evaluated with ``modalities`` available."""
        if kind not in targets.TARGETS:
            known = tuple(targets.TARGETS.names())
            raise EvaluationError(f"unknown target kind {kind!r}; expected one of {known}")
        entry = self.targets.setdefault(
            target, TargetResult(kind, None if classes is None else [str(c) for c in classes])
        )
        if entry.kind != kind:
            raise EvaluationError(
                f"target {target!r} was recorded as {entry.kind}, now given as {kind}"
            )
        subset = tuple(modalities)
        if not subset:
            raise EvaluationError(f"target {target!r}: a modality subset cannot be empty")
        if any(s.modalities == subset for s in entry.subsets):
            raise EvaluationError(
                f"target {target!r}: subset {' + '.join(subset)} was already recorded"
            )
        result = SubsetResult(
            subset, dict(ci), ci.n_samples, ci.n_groups, ci.n_boot, ci.level, dict(ci.reasons)
        )
        entry.subsets.append(result)
        return result

    # ----------------------------------------------------------------------------------------
    # JSON
    # ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready structure of the module docstring (NaN → None)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "settings": self.settings,
            "targets": {
                name: {
                    "kind": target.kind,
                    "classes": target.classes,
                    "subsets": [
                        {
                            "modalities": list(s.modalities),
                            "n_samples": s.n_samples,
                            "n_groups": s.n_groups,
                            "n_boot": s.n_boot,
                            "level": s.level,
                            "metrics": {
                                metric: {
                                    "point": _none_if_nan(ci.point),
                                    "low": _none_if_nan(ci.low),
                                    "high": _none_if_nan(ci.high),
                                    "n_valid": ci.n_valid,
                                }
                                for metric, ci in s.metrics.items()
                            },
                            "reasons": s.reasons,
                        }
                        for s in target.subsets
                    ],
                }
                for name, target in self.targets.items()
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The result as JSON text (schema in the module docstring)."""
        # default=str: settings may hold paths; NaN never reaches JSON (it is written as null)
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResult:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EvaluationError(f"not a polymodal evaluation result (expected format {FORMAT})")
        if data.get("version") != VERSION:
            raise EvaluationError(
                f"evaluation result version {data.get('version')!r} is not supported "
                f"(this polymodal reads version {VERSION})"
            )
        try:
            targets = {
                name: TargetResult(
                    kind=target["kind"],
                    classes=target["classes"],
                    subsets=[
                        SubsetResult(
                            modalities=tuple(s["modalities"]),
                            metrics={
                                metric: MetricCI(
                                    _nan_if_none(ci["point"]),
                                    _nan_if_none(ci["low"]),
                                    _nan_if_none(ci["high"]),
                                    int(ci["n_valid"]),
                                )
                                for metric, ci in s["metrics"].items()
                            },
                            n_samples=int(s["n_samples"]),
                            n_groups=int(s["n_groups"]),
                            n_boot=int(s["n_boot"]),
                            level=float(s["level"]),
                            reasons=dict(s["reasons"]),
                        )
                        for s in target["subsets"]
                    ],
                )
                for name, target in data["targets"].items()
            }
        except (KeyError, TypeError, ValueError) as err:
            raise EvaluationError(
                f"evaluation result is incomplete or malformed ({type(err).__name__}: {err}); "
                "write it again with EvaluationResult.to_json"
            ) from None
        return cls(targets=targets, settings=dict(data.get("settings", {})))

    @classmethod
    def from_json(cls, text: str) -> EvaluationResult:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvaluationError(f"evaluation result is not valid JSON: {err}") from None
        return cls.from_dict(data)

    # ----------------------------------------------------------------------------------------
    # Markdown and terminal tables
    # ----------------------------------------------------------------------------------------

    def to_markdown(self, *, per_class: bool = False) -> str:
        """One table per target: rows are modality subsets, cells ``0.873 (0.851–0.894)``.

        A cell is ``n/a`` where the metric is undefined and carries a † where its interval rests
        on fewer resamples than were drawn; the notes under the table say why. ``per_class``
        adds a table of per-class AUROC/AUPRC for multiclass and multilabel targets.
        """
        parts = []
        for name, target in self.targets.items():
            for title, columns in self._tables(name, target, per_class):
                header = ["modalities", "n (groups)", *(_header(c) for c in columns)]
                lines = [
                    f"## {_md(title)}",
                    "",
                    _caption(target),
                    "",
                    "| " + " | ".join(_md(h) for h in header) + " |",
                    "|" + "---|" + "---:|" * (len(header) - 1),
                ]
                for s in target.subsets:
                    cells = [_md(s.label), f"{s.n_samples} ({s.n_groups})"]
                    cells += [_md(_cell(s, c)) for c in columns]
                    lines.append("| " + " | ".join(cells) + " |")
                notes = _notes(target, columns)
                if notes:
                    lines += ["", *(f"- {_md(note)}" for note in notes)]
                parts.append("\n".join(lines))
        return "\n\n".join(parts) + "\n"

    def rich_tables(self, *, per_class: bool = False) -> list[tuple[Table, list[str]]]:
        """The Markdown tables for the terminal, turned sideways to fit its width.

        Rows are metrics and columns modality subsets (a terminal is narrower than a page);
        each cell shows the point estimate over its interval. Returns (table, notes) pairs:
        the notes say why a cell is n/a or marked †, as in the Markdown.
        """
        tables = []
        for name, target in self.targets.items():
            if len(target.subsets) > SIDEWAYS_MAX_SUBSETS:
                tables.append(self._subset_rows_table(name, target))
                continue
            for title, columns in self._tables(name, target, per_class):
                table = Table(
                    title=escape(title), caption=escape(_caption(target)), caption_justify="left"
                )
                table.add_column("metric")
                for s in target.subsets:
                    table.add_column(escape(s.label), justify="right")
                table.add_row(
                    "n (groups)", *(f"{s.n_samples} ({s.n_groups})" for s in target.subsets)
                )
                for column in columns:
                    cells = [
                        _styled(_cell(s, column).replace(" (", "\n(", 1)) for s in target.subsets
                    ]
                    table.add_row(escape(_header(column)), *cells)
                tables.append((table, _notes(target, columns)))
        return tables

    def _subset_rows_table(self, name: str, target: TargetResult) -> tuple[Table, list[str]]:
        """A long missing-modality matrix: one row per subset, the first few main metrics."""
        present = {metric for s in target.subsets for metric in s.metrics}
        columns = [m for m in MAIN_METRICS[target.kind] if m in present][:TERMINAL_METRICS]
        caption = _caption(target) + " Every metric is in the JSON and Markdown output."
        table = Table(
            title=escape(f"{name} ({target.kind})"), caption=escape(caption), caption_justify="left"
        )
        table.add_column("modalities")
        table.add_column("n (groups)", justify="right")
        for column in columns:
            table.add_column(escape(_header(column)), justify="right")
        for s in target.subsets:
            table.add_row(
                escape(s.label),
                f"{s.n_samples}\n({s.n_groups})",
                *(_styled(_cell(s, c).replace(" (", "\n(", 1)) for c in columns),
            )
        return table, _notes(target, columns)

    def print_rich(self, console: Console | None = None, *, per_class: bool = False) -> None:
        """Print every table and its notes to ``console`` (stdout when None)."""
        console = console or Console()
        for table, notes in self.rich_tables(per_class=per_class):
            console.print(table)
            for note in notes:
                console.print(f"  [dim]•[/dim] {escape(note)}", highlight=False)
            console.print()

    def _tables(self, name: str, target: TargetResult, per_class: bool):
        """(title, metric columns) of the summary table and, if asked, the per-class table."""
        present = {metric for s in target.subsets for metric in s.metrics}
        main = [m for m in MAIN_METRICS[target.kind] if m in present]
        yield f"{name} ({target.kind})", main
        if per_class and target.kind in DETAIL_TABLES:
            ordered = list(dict.fromkeys(m for s in target.subsets for m in s.metrics))
            columns = [m for m in ordered if "[" in m]
            if columns:
                yield f"{name} ({target.kind}, {DETAIL_TABLES[target.kind]})", columns


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _cell(subset: SubsetResult, metric: str) -> str:
    ci = subset.metrics.get(metric)
    if ci is None or math.isnan(ci.point):
        return "n/a"
    text = _number(ci.point)
    if not (math.isnan(ci.low) or math.isnan(ci.high)):
        text += f" ({_number(ci.low)}–{_number(ci.high)})"
    if ci.n_valid < subset.n_boot:
        text += " †"
    return text


def _header(metric: str) -> str:
    if metric in HEADERS:
        return HEADERS[metric]
    base, _, rest = metric.partition("[")  # "auroc[melanoma]" → "AUROC melanoma"
    return f"{HEADERS.get(base, base)} {rest.rstrip(']')}"


def _caption(target: TargetResult) -> str:
    if not target.subsets:
        return "No modality subset evaluated."
    first = target.subsets[0]
    return (
        f"Point estimate ({first.level * 100:g}% CI: percentile bootstrap over patient groups, "
        f"{first.n_boot} resamples)."
    )


def _notes(target: TargetResult, columns: list[str]) -> list[str]:
    """Why a cell is n/a or marked †, one line per subset and metric."""
    return [
        f"{s.label}, {_header(metric)}: {s.reasons[metric]}"
        for s in target.subsets
        for metric in columns
        if metric in s.reasons
    ]


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _styled(text: str) -> str:
    return "[dim]n/a[/dim]" if text == "n/a" else escape(text)
