"""Render a :class:`~polymodal.validation.validate.ValidationReport` as rich tables, CSV and JSON.

Values from the cohort (ids, labels, column names, paths) are printed as plain text, never
parsed as rich markup, and problems are one soft-wrapped line each so that no path is broken.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from polymodal.data.spec import SPLITS
from polymodal.validation.validate import Problem, ValidationReport

PROBLEM_FIELDS = ("row_id", "column", "severity", "reason", "action")


def _share(count: int, total: int) -> str:
    return f"{count:,} ({count / total:.1%})" if total else f"{count:,}"


def _overview(report: ValidationReport) -> Table:
    table = Table(title="rows per split", title_justify="left")
    table.add_column("split")
    table.add_column("rows", justify="right")
    for split, count in report.split_counts.items():
        table.add_row(split, _share(count, report.n_rows))
    return table


def _availability(report: ValidationReport) -> Table:
    table = Table(title="modality availability (rows)", title_justify="left")
    table.add_column("modality")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for name, per_split in report.availability.items():
        cells = [_share(per_split[s], report.split_counts.get(s, 0)) for s in SPLITS]
        skipped = len(report.skipped.get(name, []))
        label = f"{name} ({skipped} skipped)" if skipped else name
        table.add_row(Text(label), *cells)
    return table


def _labels(report: ValidationReport) -> Table:
    table = Table(title="label counts per split", title_justify="left")
    table.add_column("target")
    table.add_column("label")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for target, per_split in report.label_counts.items():
        labels = sorted({label for counts in per_split.values() for label in counts})
        for i, label in enumerate(labels):
            cells = [f"{per_split[s].get(label, 0):,}" for s in SPLITS]
            table.add_row(Text(target if i == 0 else ""), Text(label), *cells)
    return table


def _missing(report: ValidationReport) -> Table:
    table = Table(title="missing values per tabular column", title_justify="left")
    table.add_column("column")
    table.add_column("missing", justify="right")
    for column, rate in report.missing_rates.items():
        table.add_row(Text(column), f"{rate:.2%} ({round(rate * report.n_rows):,} rows)")
    return table


def _problem_counts(report: ValidationReport) -> Table:
    """Errors and warnings per column: a compact overview, short cells only."""
    table = Table(title="problems per column", title_justify="left")
    table.add_column("column")
    table.add_column("errors", justify="right")
    table.add_column("warnings", justify="right")
    counts: dict[str, list[int]] = {}
    for p in report.problems:
        counts.setdefault(p.column or "-", [0, 0])[p.severity == "warning"] += 1
    for column, (errors, warnings) in counts.items():
        table.add_row(Text(column), f"{errors:,}", f"{warnings:,}")
    return table


def _problem_line(problem: Problem) -> Text:
    """``error  row ID · column · reason → action`` as plain text (no markup is parsed)."""
    style = "red" if problem.severity == "error" else "yellow"
    return Text.assemble(
        (f"{problem.severity:<7}", style),
        f" row {problem.row_id or '-'} · column {problem.column or '-'} · {problem.reason}",
        (f" → {problem.action}", "dim"),
    )


def _print_problems(report: ValidationReport, console: Console, max_problems: int) -> None:
    """The per-column counts, then one line per problem.

    Lines are soft-wrapped (never broken by rich), so a path or row id stays whole in a log
    file or an 80-column terminal and searching the output for a file name finds it.
    """
    console.print(
        f"problems: {report.n_errors:,} error(s), {report.n_warnings:,} warning(s)",
        highlight=False,
    )
    console.print(_problem_counts(report))
    shown = report.problems[:max_problems]
    for problem in shown:
        console.print(_problem_line(problem), soft_wrap=True, highlight=False)
    more = len(report.problems) - len(shown)
    if more:
        console.print(
            f"first {len(shown)} shown, {more:,} more (use --problems-csv for all)",
            highlight=False,
        )


def render_report(report: ValidationReport, console: Console, max_problems: int = 30) -> None:
    """Print the report's tables and a verdict line."""
    console.print(
        Text.assemble(
            "cohort ", (report.name, "bold"), f": {report.n_rows:,} rows from {report.manifest}"
        ),
        highlight=False,
        soft_wrap=True,
    )
    console.print(_overview(report))
    console.print(_availability(report))
    console.print(_labels(report))
    if report.missing_rates:
        console.print(_missing(report))
    if report.problems:
        _print_problems(report, console, max_problems)
    if report.leakage_columns:
        console.print(
            Text.assemble(
                ("possible leakage", "yellow"),
                " in column(s): " + ", ".join(report.leakage_columns),
            ),
            soft_wrap=True,
        )
    if report.training_possible:
        console.print(f"[green]training is possible[/] (checked in {report.seconds:.1f} s)")
    else:
        console.print("[bold red]training is not possible:[/]")
        for reason in report.blocking:
            console.print(Text(f"  - {reason}"), highlight=False, soft_wrap=True)


def write_problems_csv(report: ValidationReport, path: Path) -> None:
    """Every problem, one per line, with the columns row_id, column, severity, reason, action."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PROBLEM_FIELDS)
        writer.writeheader()
        for p in report.problems:
            writer.writerow({name: getattr(p, name) or "" for name in PROBLEM_FIELDS})


def write_report_json(report: ValidationReport, path: Path) -> None:
    """The whole report as JSON (problems included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
