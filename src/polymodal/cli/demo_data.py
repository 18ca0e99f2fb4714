"""``polymodal demo-data``: write the synthetic demo cohort (every modality, a planted rule)."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console
from polymodal.errors import PolymodalError


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the cohort into (created if needed)."),
    n: int = typer.Option(2000, "--n", help="Number of samples."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same files."),
    missing_rate: float = typer.Option(
        0.2, "--missing-rate", help="Per-modality probability that a sample lacks it."
    ),
    label_noise: float = typer.Option(0.0, "--label-noise", help="Fraction of labels flipped."),
    multitask: bool = typer.Option(
        False,
        "--multitask",
        help="Write the multitask lung-screening cohort instead: CT volume, labs, clinical text, "
        "note and five prompted tasks (docs/demo_cohort.md).",
    ),
    censoring: float = typer.Option(
        0.05,
        "--censoring",
        help="With --multitask: yearly rate of loss to follow-up for the lung-cancer risk task.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder that is not a demo cohort."
    ),
    two_view: bool = typer.Option(
        False,
        "--two-view",
        help="Add an RGB close-up of each lesion and the target lesion_type that needs both "
        "images; also writes two_view.yaml (the two images only).",
    ),
) -> None:
    """Write a synthetic cohort of every modality whose label needs several of them at once.

    PNG images, NIfTI volumes (per-sample voxel spacing), notes, labs and vital-sign series,
    with random missing modalities; docs/demo_cohort.md describes the planted rule.
    With --multitask: the lung-screening cohort of five prompted tasks of five kinds.
    """
    if multitask:
        from polymodal.datasets.demo_multitask import make_multitask_cohort

        if label_noise or two_view:
            raise PolymodalError(
                "--label-noise and --two-view apply to the single-task demo, not --multitask"
            )
        spec = make_multitask_cohort(
            out,
            n=n,
            seed=seed,
            missing_rate=missing_rate,
            censoring=censoring,
            force=force,
            progress=console.print,
        )
        console.print(f"cohort spec: {spec}", highlight=False, soft_wrap=True)
        console.print(f"next: polymodal validate {spec}", highlight=False, soft_wrap=True)
        return
    from polymodal.datasets.demo import make_demo_cohort

    spec = make_demo_cohort(
        out,
        n=n,
        seed=seed,
        missing_rate=missing_rate,
        label_noise=label_noise,
        force=force,
        progress=console.print,
        second_view=two_view,
    )
    console.print(f"cohort spec: {spec}", highlight=False, soft_wrap=True)
    if two_view:
        console.print(
            f"two-image spec: {spec.parent / 'two_view.yaml'}", highlight=False, soft_wrap=True
        )
    console.print(f"next: polymodal validate {spec}", highlight=False, soft_wrap=True)
