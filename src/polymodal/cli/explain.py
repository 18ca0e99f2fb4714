"""``polymodal explain``: which data elements drove one task's predictions."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console

TOP_ROWS = 20


@app.command()
def explain(
    model_dir: Path = typer.Argument(
        ..., help="Model folder written by `polymodal fit` (OUT/model)."
    ),
    manifest: Path = typer.Argument(..., help="CSV/Parquet laid out like the training manifest."),
    task: str | None = typer.Option(
        None, "--task", help="Target to explain (may be left out when the model has one)."
    ),
    out: Path = typer.Option(Path("explain"), "--out", "-o", help="Folder for the results."),
    max_samples: int = typer.Option(
        200, "--max-samples", min=1, help="Explain at most this many rows (a seeded subset)."
    ),
    method: str = typer.Option(
        "both",
        "--method",
        help="occlusion, rollout (fusion cores that support attention rollout; another core is "
        "refused with their names) or both.",
    ),
    overlays: int = typer.Option(
        4, "--overlays", min=0, help="PNG region maps for the first N samples with images."
    ),
    device: str = typer.Option("cpu", help="Where the model runs, e.g. cpu or cuda."),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="Folder the rows' relative file paths resolve against (default: MANIFEST's folder).",
    ),
) -> None:
    """Rank data elements (modalities, fields, sentences, image regions) by their effect on a task.

    Writes OUT/elements_per_sample.csv, OUT/elements_cohort.csv and OUT/overlays/*.png.
    """
    from rich.table import Table

    from polymodal.explain import explain_model
    from polymodal.runtime import setup_process

    setup_process()  # threads for this process, allocator buffers kept across batches
    result = explain_model(
        model_dir,
        manifest,
        task,
        method=method,  # type: ignore[arg-type]  # checked by explain_model
        max_samples=max_samples,
        overlays=overlays,
        device=device,
        progress=True,
        root=root,
    )
    written = result.save(out)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.issues:
        console.print(
            f"[yellow]{len(result.issues)} unreadable value(s) or file(s)[/]: those samples went "
            f"on without them (first: {result.issues[0]})"
        )
    table = Table(
        title=f"task {result.task!r}: {result.score} · {', '.join(result.methods)}",
        show_lines=False,
    )
    for header in ("rank", "element", "kind", "n", "mean |effect| (95% CI)", "rollout share"):
        table.add_column(header, justify="left" if header in ("element", "kind") else "right")
    for row in result.cohort.head(TOP_ROWS).itertuples():
        effect = (
            f"{row.mean_abs_effect:.4f} ({row.ci_low:.4f}–{row.ci_high:.4f})"
            if row.mean_abs_effect == row.mean_abs_effect  # not NaN
            else "–"
        )
        share = (
            f"{row.mean_rollout_share:.3f}"
            if row.mean_rollout_share == row.mean_rollout_share
            else "–"
        )
        table.add_row(str(row.rank), row.element, row.kind, str(row.n), effect, share)
    console.print(table)
    n_samples = result.per_sample["sample_id"].nunique()
    console.print(f"{n_samples} samples, {len(result.cohort)} elements → [bold]{out}[/]")
    console.print(f"{len(written) - 2} overlay(s) in [bold]{out / 'overlays'}[/]")
