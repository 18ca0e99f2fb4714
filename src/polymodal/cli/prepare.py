"""``polymodal prepare``: turn a public dataset into a ready cohort (manifest + spec)."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console

prepare_app = typer.Typer(
    no_args_is_help=True,
    help="Turn a public dataset into a ready cohort folder (manifest.csv + spec.yaml).",
)
app.add_typer(prepare_app, name="prepare")

_FORCE_HELP = "Write into a non-empty folder that is not a previous output of this command."


def _done(spec: Path) -> None:
    console.print(f"cohort spec: {spec}", highlight=False, soft_wrap=True)
    console.print(f"next: polymodal validate {spec}", highlight=False, soft_wrap=True)


@prepare_app.command("adrenalmnist3d")
def adrenalmnist3d(
    src_npz: Path = typer.Argument(..., help="MedMNIST v2 adrenalmnist3d.npz (or _64.npz)."),
    out: Path = typer.Argument(..., help="Folder to write the cohort into."),
    limit: int | None = typer.Option(None, help="Keep at most this many volumes per split."),
    force: bool = typer.Option(False, "--force", help=_FORCE_HELP),
) -> None:
    """One .npy per volume, the official train/val/test split, a binary volume task."""
    from polymodal.datasets.prepare import prepare_adrenalmnist3d

    _done(prepare_adrenalmnist3d(src_npz, out, limit=limit, force=force, progress=console.print))


@prepare_app.command("iu-xray")
def iu_xray(
    src_dir: Path = typer.Argument(
        ..., help="Folder with NLMCXR_reports.tgz and nlmcxr_dicom_metadata.csv.gz."
    ),
    out: Path = typer.Argument(..., help="Folder to write the cohort into."),
    limit: int | None = typer.Option(None, help="Keep only the first N reports."),
    seed: int = typer.Option(0, help="Seed of the grouped split recipe written into the spec."),
    multitask: bool = typer.Option(
        False,
        "--multitask",
        help="Five prompted tasks (abnormal + frequent MeSH findings) from the indication text "
        "and header table only (configs/iu_xray.md).",
    ),
    force: bool = typer.Option(False, "--force", help=_FORCE_HELP),
) -> None:
    """One row per report: indication and findings text, header-table columns, label abnormal."""
    from polymodal.datasets.prepare import prepare_iu_xray

    _done(
        prepare_iu_xray(
            src_dir,
            out,
            limit=limit,
            seed=seed,
            multitask=multitask,
            force=force,
            progress=console.print,
        )
    )
