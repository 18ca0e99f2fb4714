"""``polymodal shards``: write a cohort once as LitData shards that many nodes train from."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console


@app.command()
def shards(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the shards into."),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="A sample cache (e.g. a fit's OUT/cache) whose decoded files are reused.",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes decoding and writing rows."),
) -> None:
    """Fit the preprocessing on the training split as `fit` does, then write every split's
    decoded, preprocessed rows as LitData chunks; train from them with `fit --shards OUT`."""
    from polymodal.data.shards import write_shards
    from polymodal.data.spec import load_spec

    written = write_shards(load_spec(spec), out, cache_dir=cache_dir, workers=workers)
    rows = ", ".join(f"{split} {n}" for split, n in written.rows.items())
    console.print(f"shards: {written.folder} ({rows} rows)", highlight=False, soft_wrap=True)
    if written.issues:
        console.print(
            f"[yellow]{len(written.issues)} values or files could not be used and were treated "
            f"as missing; see {written.folder / 'data_issues.csv'}[/]"
        )
    console.print(f"next: polymodal fit {spec} --shards {written.folder} --out RUN")
