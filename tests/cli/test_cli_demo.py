"""``polymodal demo`` end to end on a tiny cohort: every section of the run config reaches the fit."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from polymodal.cli import app

runner = CliRunner()

# The demo's own model shrunk to the test encoders: one epoch of 48 rows takes about a second.
TINY = [
    "model.dim=16",
    "model.core_options={num_latents: 4, depth: 1}",
    "model.encoders.lesion={name: image_timm, options: {backbone: test_resnet}}",
    "model.encoders.ct={name: volume_patch, options: {patch_size: 8, depth: 0}}",
    "model.encoders.note={options: {depth: 1}}",
    "train.max_epochs=1",
    "train.batch_size=16",
    "train.log_every_n_steps=1",
]


def test_demo_passes_the_plugin_sections_of_set_to_the_fit(tmp_path: Path) -> None:
    # `--set modulation.…` used to validate and then be dropped: the demo passed only the model
    # and train sections to fit().
    sets = [*TINY, "modulation.alpha=0.25", "modulation.end=0.75"]
    argv = ["demo", "--out", str(tmp_path), "--n", "48", "--n-boot", "1"]
    result = runner.invoke(app, [*argv, *(arg for s in sets for arg in ("--set", s))])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["modulation"]["alpha"] == 0.25 and run["modulation"]["end"] == 0.75
    assert run["model"]["dim"] == 16 and run["train"]["max_epochs"] == 1
    metrics = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/gm/" in metrics  # the modulation plugin ran, not just its config
    assert (tmp_path / "evaluation.md").is_file()
