"""``polymodal compare``: paired tests between models scored on the same rows."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console


def predictions_file(path: Path) -> Path:
    """The predictions file an argument names: the ``.parquet`` itself, an evaluation JSON
    (``r.json`` → ``r.predictions.parquet``) or a folder holding exactly one such file."""
    from polymodal.evaluation.compare import ComparisonError

    if path.is_dir():
        found = sorted(path.glob("*.predictions.parquet"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise ComparisonError(
                f"{path}: no *.predictions.parquet here; write one with "
                f"`polymodal evaluate MODEL_DIR --json {path / 'eval.json'}`"
            )
        names = ", ".join(f.name for f in found)
        raise ComparisonError(f"{path}: several predictions files ({names}); name one of them")
    if path.suffix == ".json":
        return path.with_name(f"{path.stem}.predictions.parquet")
    return path


def default_names(files: list[Path], models: list[str | None]) -> list[str]:
    """A name per model: its run folder (``RUN`` of ``RUN/eval/x.predictions.parquet``), else its
    model folder, else its file name, else A, B, C…: the first rule that tells them apart."""

    def run_folder(file: Path) -> str:
        folder = file.resolve().parent
        return folder.parent.name if folder.name == "eval" else folder.name

    def model_folder(model: str | None) -> str:
        folder = Path(model or "")
        return folder.parent.name if folder.name == "model" else folder.name

    rules = (
        [run_folder(f) for f in files],
        [model_folder(m) for m in models],
        [f.name.removesuffix(".predictions.parquet") for f in files],
    )
    for names in rules:
        if all(names) and len(set(names)) == len(names):
            return names
    return [chr(ord("A") + i) if i < 26 else f"model{i + 1}" for i in range(len(files))]


@app.command()
def compare(
    evaluations: list[Path] = typer.Argument(
        ...,
        metavar="EVAL...",
        help="Per model: an evaluation folder, its eval JSON or its .predictions.parquet "
        "(written by `polymodal evaluate`); two or more, on the same rows.",
    ),
    name: list[str] | None = typer.Option(
        None, "--name", help="Model name for each EVAL, in order (default: the run folders)."
    ),
    out: Path = typer.Option(Path("compare"), help="Folder for compare.json and compare.md."),
    metric: list[str] | None = typer.Option(
        None,
        "--metric",
        help="Compare only this metric (repeatable; auroc also selects the per-class AUROCs). "
        "Fewer metrics, fewer tests for Holm to adjust for.",
    ),
    n_boot: int = typer.Option(2000, min=100, help="Paired bootstrap resamples of patients."),
    alpha: float = typer.Option(
        0.05, min=0.0, max=1.0, help="Family-wise error rate of the Holm-adjusted verdicts."
    ),
    threshold: float = typer.Option(
        0.5, min=0.0, max=1.0, help="Decision threshold of accuracy, F1 and McNemar's test."
    ),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    own_inputs: bool = typer.Option(
        False,
        "--own-inputs",
        help="Pair each model with all its own modalities (a fused model against its "
        "single-modality twin) instead of the modality subsets the models share.",
    ),
) -> None:
    """Paired differences of every metric with CIs, p-values and Holm-adjusted verdicts."""
    from polymodal.evaluation.compare import ComparisonError, compare_predictions
    from polymodal.evaluation.kept_predictions import read_predictions

    files = [predictions_file(path) for path in evaluations]
    kept = [read_predictions(path) for path in files]
    if name:
        if len(name) != len(kept) or len(set(name)) != len(name):
            raise ComparisonError(
                f"got --name {list(name)} for {len(kept)} EVAL arguments; give each model its "
                "own name, once per EVAL, in order"
            )
        names = list(name)
    else:
        names = default_names(files, [k.settings.get("model") for k in kept])
    comparison = compare_predictions(
        dict(zip(names, kept, strict=True)),
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        threshold=threshold,
        metrics=metric or None,
        own_inputs=own_inputs,
    )
    comparison.print_rich(console)
    out.mkdir(parents=True, exist_ok=True)
    for file_name, text in (
        ("compare.json", comparison.to_json()),
        ("compare.md", comparison.to_markdown()),
    ):
        (out / file_name).write_text(text, encoding="utf-8")
        console.print(f"wrote {out / file_name}", highlight=False, markup=False, soft_wrap=True)
