"""``polymodal predict``: probabilities for new rows with any subset of modalities."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli import app, console


@app.command()
def predict(
    model_dir: Path = typer.Argument(
        ..., help="Model folder written by `polymodal fit` (OUT/model)."
    ),
    manifest: Path = typer.Argument(..., help="CSV/Parquet laid out like the training manifest."),
    out: Path = typer.Option(
        Path("predictions.csv"), "--out", "-o", help="Where to write the CSV."
    ),
    batch_size: int = typer.Option(64, help="Rows per batch."),
    prompt: list[str] = typer.Option(
        [],
        "--prompt",
        help="TASK=TEXT: ask a task of a 'prompted' model in your own words, e.g. "
        "--prompt 'cancer=How likely is lung cancer within six years?' (repeatable).",
    ),
) -> None:
    """Write one CSV row of predictions per manifest row (labels are not needed)."""
    from polymodal.predictor import Predictor

    predictor = Predictor.load(model_dir, batch_size=batch_size, prompts=_parse_prompts(prompt))
    table = predictor.predict_manifest(manifest, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    console.print(f"{len(table)} rows → [bold]{out}[/]")


def _parse_prompts(values: list[str]) -> dict[str, str]:
    """``["task=text", ...]`` -> ``{task: text}``."""
    prompts = {}
    for value in values:
        task, sep, text = value.partition("=")
        if not sep or not task.strip() or not text.strip():
            raise typer.BadParameter(
                f"{value!r} is not TASK=TEXT; write e.g. --prompt 'cancer=Lung cancer risk?'",
                param_hint="--prompt",
            )
        prompts[task.strip()] = text.strip()
    return prompts
