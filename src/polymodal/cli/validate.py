"""``polymodal validate``: open every file, parse every value, list problems by row and column.

Exit status: 0 when training is possible, 1 when it is not, 2 when the spec or manifest itself
cannot be used (raised as :class:`polymodal.errors.PolymodalError`, printed by ``cli.main``).
"""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from polymodal.cli._app import app, console

if TYPE_CHECKING:
    from polymodal.data.manifest import Cohort
    from polymodal.data.spec import CohortSpec


class OnErrorChoice(str, Enum):
    fail = "fail"
    skip_modality = "skip-modality"


@app.command()
def validate(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="Use this manifest instead of the one the spec names."
    ),
    on_error: OnErrorChoice = typer.Option(
        OnErrorChoice.fail,
        "--on-error",
        help="fail: a bad file or value blocks training; skip-modality: it makes that "
        "modality unavailable for that row (reported).",
    ),
    problems_csv: Path | None = typer.Option(
        None, "--problems-csv", help="Write every problem to this CSV file."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write the whole report to this JSON file."
    ),
    workers: int | None = typer.Option(None, help="Threads that open files (default: auto)."),
    max_problems: int = typer.Option(30, help="Problems to show in the table."),
) -> None:
    """Check a cohort: rows, availability, labels, missing values, problems, leakage."""
    import torch

    from polymodal.data.spec import load_spec
    from polymodal.validation.report import render_report, write_problems_csv, write_report_json
    from polymodal.validation.validate import validate_cohort

    # Files are opened by a thread pool; per-image torch ops are too small to split further.
    torch.set_num_threads(1)
    cohort = _load_with_split_warnings(load_spec(spec), manifest)
    report = validate_cohort(cohort, on_error.value, workers, show_progress=True)
    render_report(report, console, max_problems=max_problems)
    if problems_csv is not None:
        write_problems_csv(report, problems_csv)
        console.print(
            f"all {len(report.problems):,} problem(s) written to {problems_csv}", soft_wrap=True
        )
    if json_path is not None:
        write_report_json(report, json_path)
        console.print(f"report written to {json_path}", soft_wrap=True)
    raise typer.Exit(0 if report.training_possible else 1)


def _load_with_split_warnings(spec: CohortSpec, manifest: Path | None) -> Cohort:
    """Load the cohort; how a split recipe had to bend on a small cohort is printed in yellow."""
    from polymodal.data.manifest import load_cohort
    from polymodal.data.splits import SplitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)
        cohort = load_cohort(spec, manifest)
    for warning in caught:
        if issubclass(warning.category, SplitWarning):
            line = Text.assemble(("warning: ", "yellow"), str(warning.message))
            console.print(line, soft_wrap=True, highlight=False)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return cohort
