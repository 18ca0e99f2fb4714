"""``polymodal report``: models side by side over the missing-modality matrix, as HTML + PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from polymodal.cli._app import app, console

if TYPE_CHECKING:
    from polymodal.evaluation.tables import EvaluationResult


def load_result(path: Path) -> EvaluationResult:
    """Read one ``polymodal evaluate --json`` file; errors name the file."""
    from polymodal.evaluation.metrics import EvaluationError
    from polymodal.evaluation.report_plan import ReportError
    from polymodal.evaluation.tables import EvaluationResult

    if not path.is_file():
        raise ReportError(
            f"{path}: evaluation result not found; write one with "
            f"`polymodal evaluate MODEL_DIR --json {path}`"
        )
    try:
        return EvaluationResult.from_json(path.read_text(encoding="utf-8"))
    except EvaluationError as err:
        raise ReportError(f"{path}: {err}") from None


def kept_beside(path: Path):
    """The kept predictions ``evaluate`` wrote beside ``path`` (``r.json`` →
    ``r.predictions.parquet``), or None where there are none."""
    from polymodal.evaluation.kept_predictions import read_predictions

    beside = path.with_name(f"{path.stem}.predictions.parquet")
    return read_predictions(beside) if beside.is_file() else None


def default_names(paths: Sequence[Path], results: Sequence[EvaluationResult]) -> list[str]:
    """A name per result: its JSON's folder, else its model folder, else its file name.

    The first rule that tells every model apart wins. A model folder named ``model`` (what
    ``polymodal fit --out RUN`` writes) is named after its run folder.
    """
    from polymodal.evaluation.report_plan import ReportError

    def model_folder(result: EvaluationResult) -> str:
        folder = Path(str(result.settings.get("model", "")))
        return folder.parent.name if folder.name == "model" else folder.name

    rules = (
        [path.resolve().parent.name for path in paths],
        [model_folder(result) for result in results],
        [path.stem for path in paths],
    )
    for names in rules:
        if all(names) and len(set(names)) == len(names):
            return names
    raise ReportError(
        "cannot tell the models apart by folder or file name; give --name once per RESULT"
    )


@app.command()
def report(
    results: list[Path] = typer.Argument(
        ...,
        metavar="RESULT.json",
        help="Evaluation results written by `polymodal evaluate --json`, one per model.",
    ),
    name: list[str] | None = typer.Option(
        None,
        "--name",
        help="Model name for each RESULT, in order (default: the folder names).",
    ),
    out: Path = typer.Option(..., help="Folder for report.html and the PNG figures."),
    metric: str | None = typer.Option(
        None, help="Metric of the figures and side-by-side table (default: AUROC, RMSE, …)."
    ),
    title: str | None = typer.Option(
        None, help="Heading of the report (default: polymodal robustness report)."
    ),
    shared_subsets: bool = typer.Option(
        False,
        "--shared-subsets",
        help="Compare models over different modalities on the subsets every model evaluated.",
    ),
    clinical_figures: bool = typer.Option(
        True,
        help="Draw ROC/PR, calibration, decision and confusion figures (needs kept predictions).",
    ),
) -> None:
    """Compare models' robustness to missing modalities: one HTML report with figures.

    Where each RESULT.json has its RESULT.predictions.parquet beside it (evaluate keeps it),
    the report also runs paired tests (a model is bold only where it is significantly better)
    and draws ROC/PR, calibration, decision-curve and confusion figures.
    """
    # imported here: matplotlib and scikit-learn would slow down every other command's start
    from polymodal.evaluation.report import DEFAULT_TITLE, build_report
    from polymodal.evaluation.report_plan import ReportError

    loaded = [load_result(path) for path in results]
    if name:
        if len(name) != len(results):
            raise ReportError(
                f"got {len(name)} --name for {len(results)} RESULT files; "
                "give --name once per RESULT, in the same order, or leave it out"
            )
        if len(set(name)) != len(name):
            raise ReportError(f"--name values repeat: {list(name)}; give each model its own name")
        names = list(name)
    else:
        names = default_names(results, loaded)
    html_path = build_report(
        dict(zip(names, loaded, strict=True)),
        out,
        metric=metric,
        title=title or DEFAULT_TITLE,
        shared_subsets=shared_subsets,
        # paired tests and clinical figures come from the predictions kept beside each RESULT
        predictions={n: kept_beside(p) for n, p in zip(names, results, strict=True)},
        clinical_figures=clinical_figures,
    )
    for model, path in zip(names, results, strict=True):
        console.print(f"{model}: {path}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {html_path}", highlight=False, markup=False, soft_wrap=True)
