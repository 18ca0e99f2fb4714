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
) -> None:
    """Write one CSV row of predictions per manifest row (labels are not needed)."""
    from polymodal.predictor import Predictor

    predictor = Predictor.load(model_dir, batch_size=batch_size)
    table = predictor.predict_manifest(manifest, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    console.print(f"{len(table)} rows → [bold]{out}[/]")
