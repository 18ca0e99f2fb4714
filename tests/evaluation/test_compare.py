"""compare_predictions on synthetic kept predictions: paired differences, patient grouping,
verdicts, refusals, and the command's files and exit status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.cli import main
from polymodal.evaluation import KeptPredictions, compare_predictions, read_predictions
from polymodal.evaluation.compare import UNDECIDED, ComparisonError
from polymodal.evaluation.kept_predictions import predictions_table, write_predictions
from polymodal.targets.predictions import PredictionCollector

BINARY = {"kind": "binary", "classes": ["no", "yes"], "n_outputs": 1}
CLASSES = ["a", "b", "c"]
MULTICLASS = {"kind": "multiclass", "classes": CLASSES, "n_outputs": 3}


def keep(
    path: Path,
    ids: list[str],
    groups: list[str],
    y: np.ndarray,
    prediction: np.ndarray,
    *,
    info: dict = BINARY,
    model: str = "runs/x/model",
    subset: tuple[str, ...] = ("image",),
) -> KeptPredictions:
    """Write and read back a predictions file of one target 'label' and one subset, through
    the same collector and writer evaluate uses."""
    collector = PredictionCollector({"label": info})
    output = "probability" if info["kind"] == "binary" else "probabilities"
    predictions = {"label": {output: torch.as_tensor(prediction, dtype=torch.float32)}}
    if info["kind"] == "multiclass":
        predictions["label"]["label"] = torch.as_tensor(prediction).argmax(dim=1)
    batch = {
        "ids": ids,
        "groups": groups,
        "targets": {"label": torch.as_tensor(y)},
        "target_mask": {"label": torch.ones(len(ids), dtype=torch.bool)},
    }
    collector.add(batch, predictions)
    table = predictions_table(
        {subset: collector},
        {modality: np.ones(len(ids), dtype=bool) for modality in subset},
        {"label": info},
        {"model": model, "split": "test", "specificity": 0.9, "cohort": "synthetic"},
    )
    return read_predictions(write_predictions(path, table))


def binary_pair(n: int = 300, seed: int = 0, gap: float = 0.0):
    """Labels and two correlated probabilities; B is ``gap`` worse in signal."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.float32)
    shared = rng.normal(size=n)
    a = 1 / (1 + np.exp(-(2.0 * y - 1 + shared + 0.5 * rng.normal(size=n))))
    b = 1 / (1 + np.exp(-((2.0 - gap) * y - 1 + gap / 2 + shared + 0.5 * rng.normal(size=n))))
    return y, a.astype(np.float32), b.astype(np.float32)


def rows(comparison, metric: str):
    return [r for r in comparison.rows if r.metric == metric]


def test_a_model_compared_with_itself_differs_by_exactly_zero_with_p_one(tmp_path: Path) -> None:
    y, a, _ = binary_pair()
    ids = [f"s{i}" for i in range(len(y))]
    groups = [f"p{i // 2}" for i in range(len(y))]
    first = keep(tmp_path / "a.parquet", ids, groups, y, a)
    again = keep(tmp_path / "b.parquet", ids, groups, y, a)
    comparison = compare_predictions({"A": first, "B": again}, n_boot=200)
    assert {r.metric for r in comparison.rows} >= {"auroc", "accuracy", "brier", "ece"}
    for row in comparison.rows:
        assert (row.difference, row.low, row.high) == (0.0, 0.0, 0.0), row
        assert row.p == 1.0 and row.p_holm == 1.0 and row.verdict == UNDECIDED
    assert rows(comparison, "auroc")[0].delong_p == 1.0
    assert rows(comparison, "accuracy")[0].mcnemar_p == 1.0


def test_a_clearly_better_model_is_named_and_a_close_one_is_not(tmp_path: Path) -> None:
    y, a, b = binary_pair(n=600, gap=1.6)
    ids = [f"s{i}" for i in range(len(y))]
    kept_a = keep(tmp_path / "a.parquet", ids, ids, y, a)
    kept_b = keep(tmp_path / "b.parquet", ids, ids, y, b)
    comparison = compare_predictions({"good": kept_a, "weak": kept_b}, n_boot=500)
    auroc = rows(comparison, "auroc")[0]
    assert auroc.difference > 0 and auroc.low > 0
    assert auroc.p_holm < 0.05 and auroc.verdict == "good better"
    assert auroc.delong_p < 0.05  # DeLong agrees; every row is its own patient here
    brier = rows(comparison, "brier")[0]  # lower is better: the sign flips, the name does not
    assert brier.difference < 0
    assert brier.verdict in ("good better", UNDECIDED)
    # Holm never lowers a p-value, and the verdict follows the adjusted one only.
    for row in comparison.rows:
        assert row.p_holm >= row.p
        assert row.verdict.endswith("better") == (row.p_holm < 0.05)
    swapped = compare_predictions({"weak": kept_b, "good": kept_a}, n_boot=500)
    assert rows(swapped, "auroc")[0].verdict == "good better"
    assert rows(swapped, "auroc")[0].difference == pytest.approx(-auroc.difference)


def test_the_bootstrap_resamples_patients_not_rows(tmp_path: Path) -> None:
    y, a, b = binary_pair(n=200, gap=0.5)
    ids = [f"s{i}" for i in range(len(y))]
    base = compare_predictions(
        {
            "A": keep(tmp_path / "a.parquet", ids, ids, y, a),
            "B": keep(tmp_path / "b.parquet", ids, ids, y, b),
        },
        n_boot=400,
    )
    # Every patient's row three times (new sample ids, same patient): the same patients, so
    # the same information. Resampling patients gives exactly the intervals of the original…
    tripled = [f"{i}-copy{k}" for k in range(3) for i in ids]
    same_patients = ids * 3
    y3, a3, b3 = np.tile(y, 3), np.tile(a, 3), np.tile(b, 3)
    grouped = compare_predictions(
        {
            "A": keep(tmp_path / "a3.parquet", tripled, same_patients, y3, a3),
            "B": keep(tmp_path / "b3.parquet", tripled, same_patients, y3, b3),
        },
        n_boot=400,
    )
    # …while treating the copies as other patients (rows) makes them about √3 narrower.
    as_rows = compare_predictions(
        {
            "A": keep(tmp_path / "a3r.parquet", tripled, tripled, y3, a3),
            "B": keep(tmp_path / "b3r.parquet", tripled, tripled, y3, b3),
        },
        n_boot=400,
    )
    for metric in ("auroc", "accuracy", "brier"):
        original = rows(base, metric)[0]
        by_patient = rows(grouped, metric)[0]
        by_row = rows(as_rows, metric)[0]
        assert by_patient.difference == pytest.approx(original.difference)
        assert (by_patient.low, by_patient.high) == pytest.approx((original.low, original.high))
        width = original.high - original.low
        assert (by_row.high - by_row.low) < 0.75 * width, metric
    assert "600 samples come from 200 patients" in grouped.notes[0]
    assert "independent rows" in grouped.notes[0]


def test_multiclass_targets_get_one_vs_rest_delong_per_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 240
    y = rng.integers(0, 3, n)
    logits_a = np.eye(3)[y] * 1.5 + rng.normal(size=(n, 3))
    logits_b = np.eye(3)[y] * 1.0 + rng.normal(size=(n, 3))
    prob_a = np.exp(logits_a) / np.exp(logits_a).sum(1, keepdims=True)
    prob_b = np.exp(logits_b) / np.exp(logits_b).sum(1, keepdims=True)
    ids = [f"s{i}" for i in range(n)]
    comparison = compare_predictions(
        {
            "A": keep(tmp_path / "a.parquet", ids, ids, y, prob_a, info=MULTICLASS),
            "B": keep(tmp_path / "b.parquet", ids, ids, y, prob_b, info=MULTICLASS),
        },
        n_boot=200,
        metrics=["auroc", "accuracy"],
    )
    names = [r.metric for r in comparison.rows]
    assert names == ["accuracy", "auroc[a]", "auroc[b]", "auroc[c]"]
    for row in comparison.rows[1:]:
        assert row.delong_p is not None and 0 <= row.delong_p <= 1
    assert comparison.rows[0].mcnemar_p is not None
    assert comparison.settings["n_tests"] == 4


def test_rows_that_do_not_match_are_refused_naming_the_ids(tmp_path: Path) -> None:
    y, a, b = binary_pair(n=20)
    ids = [f"s{i}" for i in range(20)]
    kept_a = keep(tmp_path / "a.parquet", ids, ids, y, a)
    other_ids = [*ids[:-2], "x1", "x2"]
    kept_b = keep(tmp_path / "b.parquet", other_ids, other_ids, y, b)
    with pytest.raises(ComparisonError, match=r"2 only in A \(s18, s19\); 2 only in B \(x1, x2\)"):
        compare_predictions({"A": kept_a, "B": kept_b}, n_boot=100)
    relabelled = keep(tmp_path / "c.parquet", ids, ids, 1 - y, b)
    with pytest.raises(ComparisonError, match=r"other labels .* different cohorts"):
        compare_predictions({"A": kept_a, "B": relabelled}, n_boot=100)
    regrouped = keep(tmp_path / "d.parquet", ids, ["p"] * 20, y, b)
    with pytest.raises(ComparisonError, match=r"other patients .* different cohorts"):
        compare_predictions({"A": kept_a, "B": regrouped}, n_boot=100)


def test_a_fused_model_is_paired_with_its_single_modality_twin_on_own_inputs(
    tmp_path: Path,
) -> None:
    # The fused model was scored with both its modalities, its image-only twin with the image:
    # no subset is shared, so the plain comparison refuses and names --own-inputs.
    y, a, b = binary_pair(n=400, gap=1.6)
    ids = [f"s{i}" for i in range(len(y))]
    fused = keep(tmp_path / "f.parquet", ids, ids, y, a, subset=("image", "table"))
    image = keep(tmp_path / "i.parquet", ids, ids, y, b, subset=("image",))
    with pytest.raises(ComparisonError, match="--own-inputs"):
        compare_predictions({"fused": fused, "image": image}, n_boot=200)
    comparison = compare_predictions({"fused": fused, "image": image}, n_boot=200, own_inputs=True)
    auroc = rows(comparison, "auroc")[0]
    assert auroc.subset == "image + table vs image"
    assert auroc.verdict == "fused better" and auroc.low > 0
    assert comparison.settings["subsets"] == "each model's own inputs"
    # The pairing is by sample id: the twin's rows in another order give the same difference.
    order = np.random.default_rng(1).permutation(len(y))
    shuffled = keep(
        tmp_path / "s.parquet",
        [ids[i] for i in order],
        [ids[i] for i in order],
        y[order],
        b[order],
        subset=("image",),
    )
    again = compare_predictions({"fused": fused, "image": shuffled}, n_boot=200, own_inputs=True)
    assert rows(again, "auroc")[0].difference == pytest.approx(auroc.difference)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_the_command_writes_json_and_markdown_and_refuses_other_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    y, a, b = binary_pair(n=200, gap=1.6)
    ids = [f"s{i}" for i in range(200)]
    keep(tmp_path / "run_a" / "eval" / "eval.predictions.parquet", ids, ids, y, a)
    keep(tmp_path / "run_b" / "eval" / "eval.predictions.parquet", ids, ids, y, b)
    out = tmp_path / "cmp"
    code, printed = run_main(
        monkeypatch,
        capsys,
        "compare",
        str(tmp_path / "run_a" / "eval"),
        str(tmp_path / "run_b" / "eval" / "eval.json"),  # the JSON names its predictions
        "--name",
        "A",
        "--name",
        "B",
        "--out",
        str(out),
        "--n-boot",
        "200",
        "--metric",
        "auroc",
    )
    assert code in (0, None), printed
    saved = json.loads((out / "compare.json").read_text())
    assert [r["metric"] for r in saved["rows"]] == ["auroc"]
    assert saved["rows"][0]["verdict"] == "A better"
    assert "A better" in (out / "compare.md").read_text()
    assert "Paired comparison" in printed

    keep(tmp_path / "run_c" / "eval" / "eval.predictions.parquet", [*ids[:-1], "new"], ids, y, b)
    code, printed = run_main(
        monkeypatch,
        capsys,
        "compare",
        str(tmp_path / "run_a" / "eval"),
        str(tmp_path / "run_c" / "eval"),
        "--out",
        str(out),
    )
    assert code == 2
    assert "s199" in printed and "new" in printed and "Traceback" not in printed
