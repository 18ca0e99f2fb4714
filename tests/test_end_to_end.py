"""End to end through the CLI: fusion must beat every single modality on the demo cohort.

The demo cohort's label needs several modalities at once (docs/demo_cohort.md), so a model
that truly fuses them has to beat the best single-modality model clearly. Small, fast encoders
keep the whole test within a couple of minutes on one CPU core.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.datasets.demo import make_demo_cohort

MODALITIES = ("lesion", "ct", "labs", "note", "vitals")
COMMON = [
    "model.dim=32",
    "model.encoders.lesion={name: image_timm, options: {backbone: resnet10t}}",
    "model.encoders.ct={name: volume_monai, options: {network_options: "
    "{init_features: 8, growth_rate: 8, block_config: [2, 2]}}}",
    "model.encoders.note={options: {depth: 1}}",
    "train.batch_size=32",
    "train.lr=3e-3",
    "train.early_stopping_patience=null",
]


def _fit_and_score(
    runner: CliRunner, spec: Path, out: Path, cache: Path, overrides: list[str], epochs: int
) -> float:
    args = [
        "fit",
        str(spec),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--set",
        f"train.cache_dir={cache}",
    ]
    for item in [*COMMON, *overrides]:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = out / "evaluation.json"
    result = runner.invoke(
        app,
        ["evaluate", str(out / "model"), "--no-subsets", "--n-boot", "20", "--json", str(report)],
    )
    assert result.exit_code == 0, result.output
    subset = json.loads(report.read_text())["targets"]["label"]["subsets"][0]
    return subset["metrics"]["auroc"]["point"]


def test_synergy_beats_the_best_single_modality_by_a_clear_margin(tmp_path: Path) -> None:
    spec = make_demo_cohort(tmp_path / "cohort", n=1000, seed=3, image_size=32, volume_size=16)
    runner = CliRunner()
    cache = tmp_path / "cache"
    single = {
        m: _fit_and_score(
            runner,
            spec,
            tmp_path / f"single_{m}",
            cache,
            ["model.core=single", f"model.core_options.modality={m}"],
            epochs=6,
        )
        for m in MODALITIES
    }
    fused = _fit_and_score(
        runner,
        spec,
        tmp_path / "synergy",
        cache,
        [
            "model.core=synergy",
            "model.core_options={num_latents: 8, depth: 2}",
            "model.modality_dropout=0.1",
        ],
        epochs=14,
    )
    best = max(single, key=single.get)
    assert fused >= single[best] + 0.10, (
        f"synergy {fused:.3f} vs best single ({best}) {single[best]:.3f}; all: {single}"
    )
