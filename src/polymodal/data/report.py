"""Render a :class:`~polymodal.data.validate.ValidationReport` as rich tables, CSV and JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from polymodal.data.spec import SPLITS
from polymodal.data.validate import ValidationReport

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
        table.add_row(label, *cells)
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
            table.add_row(target if i == 0 else "", label, *cells)
    return table


def _missing(report: ValidationReport) -> Table:
    table = Table(title="missing values per tabular column", title_justify="left")
    table.add_column("column")
    table.add_column("missing", justify="right")
    for column, rate in report.missing_rates.items():
        table.add_row(column, f"{rate:.2%} ({round(rate * report.n_rows):,} rows)")
    return table


def _problems(report: ValidationReport, max_problems: int) -> Table:
    shown = report.problems[:max_problems]
    more = len(report.problems) - len(shown)
    title = f"problems: {report.n_errors:,} error(s), {report.n_warnings:,} warning(s)"
    if more:
        title += f"; first {len(shown)} shown, {more:,} more (use --problems-csv for all)"
    table = Table(title=title, title_justify="left", show_lines=True)
    for name in PROBLEM_FIELDS:
        table.add_column(name.replace("_", " "), overflow="fold")
    for p in shown:
        style = "red" if p.severity == "error" else "yellow"
        table.add_row(
            p.row_id or "-",
            p.column or "-",
            f"[{style}]{p.severity}[/]",
            p.reason,
            p.action,
        )
    return table


def render_report(report: ValidationReport, console: Console, max_problems: int = 30) -> None:
    """Print the report's tables and a verdict line."""
    console.print(
        f"cohort [bold]{report.name}[/]: {report.n_rows:,} rows from {report.manifest}",
        highlight=False,
    )
    console.print(_overview(report))
    console.print(_availability(report))
    console.print(_labels(report))
    if report.missing_rates:
        console.print(_missing(report))
    if report.problems:
        console.print(_problems(report, max_problems))
    if report.leakage_columns:
        console.print(
            "[yellow]possible leakage[/] in column(s): " + ", ".join(report.leakage_columns)
        )
    if report.training_possible:
        console.print(f"[green]training is possible[/] (checked in {report.seconds:.1f} s)")
    else:
        console.print("[bold red]training is not possible:[/]")
        for reason in report.blocking:
            console.print(f"  - {reason}", highlight=False)


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
