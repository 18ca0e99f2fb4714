"""``polymodal demo-data``: write the synthetic demo cohort (every modality, a planted rule)."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli import app, console


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the cohort into (created if needed)."),
    n: int = typer.Option(2000, "--n", help="Number of samples."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    missing_rate: float = typer.Option(
        0.2, "--missing-rate", help="Per-modality probability that a sample lacks it."
    ),
    label_noise: float = typer.Option(0.0, "--label-noise", help="Fraction of labels flipped."),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder that is not a demo cohort."
    ),
) -> None:
    """Write a synthetic cohort of every modality whose label needs several of them at once.

    PNG images, NIfTI volumes (per-sample voxel spacing), notes, labs and vital-sign series,
    with random missing modalities; docs/demo_cohort.md describes the planted rule.
    """
    from polymodal.data.demo import make_demo_cohort

    spec = make_demo_cohort(
        out,
        n=n,
        seed=seed,
        missing_rate=missing_rate,
        label_noise=label_noise,
        force=force,
        progress=console.print,
    )
    console.print(f"cohort spec: {spec}", highlight=False, soft_wrap=True)
    console.print(f"next: polymodal validate {spec}", highlight=False, soft_wrap=True)
