"""``polymodal card``: add a split's evidence (the test split) to a model folder's model card."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console
from polymodal.cli.device_option import DEVICE_HELP


@app.command()
def card(
    model_dir: Path = typer.Argument(
        ..., help="Model folder written by `polymodal fit` (OUT/model)."
    ),
    spec: Path | None = typer.Option(
        None, help="Cohort spec (default: the one saved with the model)."
    ),
    manifest: Path | None = typer.Option(
        None,
        help="Score this manifest instead of the spec's; its relative file paths start from its "
        "own folder (or --root).",
    ),
    root: Path | None = typer.Option(
        None, help="Folder that relative file paths start from; every file must lie inside it."
    ),
    split: str = typer.Option("test", help="Split to add to the card: test, val or train."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Keep decoded files here between runs (as for evaluate)."
    ),
    n_boot: int | None = typer.Option(
        None, min=10, help="Bootstrap resamples by patient group (default: the card's n_boot)."
    ),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Add a split's metrics on every modality subset and per subgroup (card.subgroups), with
    patient-grouped bootstrap CIs, to MODEL_DIR/model_card.md and model_card.json."""
    from polymodal.data.manifest import load_cohort
    from polymodal.data.spec import load_spec
    from polymodal.devices import resolve_device
    from polymodal.model_card.evidence import add_split_evidence
    from polymodal.predictor import Predictor
    from polymodal.runtime import setup_process

    setup_process()
    predictor = Predictor.load(model_dir, device=resolve_device(device), cache_dir=cache_dir)
    cohort_spec = load_spec(spec) if spec is not None else predictor.loaded.spec
    other = manifest.expanduser().resolve() if manifest is not None else None
    if root is None and other is not None and other != cohort_spec.manifest_path:
        root = other.parent
    cohort = load_cohort(cohort_spec, manifest_override=manifest, root=root)
    path = add_split_evidence(
        predictor, cohort, split=split, n_boot=n_boot, seed=seed, progress=True
    )
    console.print(f"wrote {path} (and model_card.json; checksums re-listed)", highlight=False)
