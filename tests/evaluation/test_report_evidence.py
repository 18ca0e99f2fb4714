"""The report's evidence: "better" only with a significant paired test, degenerate and no-skill
numbers flagged, each model's provenance, and the clinical figures from kept predictions.

Models are synthetic: kept-prediction Parquet files written with evaluate's own collector and
writer, and evaluation results bootstrapped from the same predictions (no training)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.evaluation import EvaluationResult, bootstrap_metrics, read_predictions
from polymodal.evaluation.figures.clinical import ClinicalFigures
from polymodal.evaluation.kept_predictions import predictions_table, write_predictions
from polymodal.evaluation.provenance import label_references
from polymodal.evaluation.report import build_report
from polymodal.targets.predictions import PredictionCollector

BINARY = {"kind": "binary", "classes": ["benign", "malignant"], "n_outputs": 1}
SUBSETS = [("image", "tabular"), ("image",), ("tabular",)]
N_BOOT = 60


def labels_and_signal(n: int = 240, seed: int = 0):
    """Patients with two rows each; labels at prevalence ~0.35 and a shared latent signal."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(np.float32)
    groups = [f"p{i // 2}" for i in range(n)]
    return y, groups, rng


def write_model(folder: Path, y, groups, probability: dict[tuple[str, ...], np.ndarray]):
    """``folder/eval.json`` and ``folder/eval.predictions.parquet`` of one binary model with
    the given P(malignant) per modality subset; returns the JSON path."""
    ids = [f"s{i}" for i in range(len(y))]
    collectors, result = {}, EvaluationResult(settings={"model": str(folder / "model")})
    for subset, prob in probability.items():
        collector = PredictionCollector({"melanoma": BINARY})
        batch = {
            "ids": ids,
            "groups": groups,
            "targets": {"melanoma": torch.as_tensor(y)},
            "target_mask": {"melanoma": torch.ones(len(ids), dtype=torch.bool)},
        }
        output = {"melanoma": {"probability": torch.as_tensor(prob, dtype=torch.float32)}}
        collector.add(batch, output)
        collectors[subset] = collector
        y_true, pred, g = collector.arrays("melanoma")
        ci = bootstrap_metrics("binary", y_true, pred, g, n_boot=N_BOOT, classes=BINARY["classes"])
        result.add("melanoma", "binary", subset, ci, classes=BINARY["classes"])
    first = collectors[SUBSETS[0]].arrays("melanoma")[:2]
    result.settings.update(
        split="test",
        cohort="synthetic-melanoma",
        evaluated_at="2026-12-07T12:00:00+00:00",
        labels=label_references({"melanoma": first}, {"melanoma": BINARY}, 0.9),
        provenance={"core": "synergy", "dim": 32, "training_cohort": "synthetic-train"},
    )
    available = {m: np.ones(len(ids), dtype=bool) for m in ("image", "tabular")}
    table = predictions_table(collectors, available, {"melanoma": BINARY}, result.settings)
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(folder / "eval.predictions.parquet", table)
    path = folder / "eval.json"
    path.write_text(result.to_json(), encoding="utf-8")
    return path


def probabilities(y, rng, strength: float) -> dict[tuple[str, ...], np.ndarray]:
    """A model's P(malignant) per subset: ``strength`` of label signal plus noise."""
    return {
        s: 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(size=len(y))))) for s in SUBSETS
    }


def report(tmp_path: Path, models: dict[str, Path], *, figures: bool = False) -> str:
    """The report's HTML; the clinical figures (slow to draw) only when asked."""
    results = {m: EvaluationResult.from_json(p.read_text()) for m, p in models.items()}
    kept = {m: read_predictions(p.with_name("eval.predictions.parquet")) for m, p in models.items()}
    out = tmp_path / "report"
    html = build_report(
        results,
        out,
        predictions=kept,
        n_boot_paired=200,
        figure_boot=30,
        clinical_figures=figures,
    )
    return html.read_text(encoding="utf-8")


def side_by_side(page: str) -> str:
    """The side-by-side table of the target (the one whose caption names the paired test)."""
    start = page.index("models side by side")
    return page[start : page.index("</table>", start)]


def test_two_identical_models_are_never_marked_better(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    prob = probabilities(y, rng, 1.5)
    a = write_model(tmp_path / "a", y, groups, prob)
    b = write_model(tmp_path / "b", y, groups, prob)
    table = side_by_side(report(tmp_path, {"a": a, "b": b}))
    assert "<strong>" not in table
    assert table.count("cannot tell apart (p Holm 1.000)") == len(SUBSETS)


def test_a_clearly_better_model_is_bold_and_a_close_one_is_not(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    strong = write_model(tmp_path / "strong", y, groups, probabilities(y, rng, 2.5))
    weak = write_model(tmp_path / "weak", y, groups, probabilities(y, rng, 0.3))
    page = report(tmp_path, {"strong": strong, "weak": weak})
    table = side_by_side(page)
    rows = table.split("<tr>")[2:]
    assert len(rows) == len(SUBSETS)
    for row in rows:  # strong's cell bold, weak's not, and the verdict names strong
        cells = re.findall(r'<td class="num">(.*?)</td>', row)
        assert cells[0].startswith("<strong>") and not cells[1].startswith("<strong>")
        assert "strong better than weak (Δ +" in row
    assert "Holm-adjusted over all" in page


def test_a_below_chance_model_is_never_marked_even_when_it_wins(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    # both rank the wrong way round; "less_bad" is significantly less wrong but still < 0.5
    less_bad = write_model(tmp_path / "less_bad", y, groups, probabilities(y, rng, -0.4))
    worse = write_model(tmp_path / "worse", y, groups, probabilities(y, rng, -2.5))
    table = side_by_side(report(tmp_path, {"less_bad": less_bad, "worse": worse}))
    assert "<strong>" not in table
    assert "less_bad better" in table
    assert "not marked: its estimate is no better than no skill" in table
    assert " ⚠" in table  # the AUROC below 0.5 is flagged


def test_degenerate_f1_and_a_no_skill_brier_are_flagged_with_a_legend(tmp_path: Path) -> None:
    y, groups, _ = labels_and_signal()
    # never above 0.5: no positive decision, F1 0.000 (0.000–0.000); a constant at the
    # prevalence: Brier p(1 − p), exactly the no-skill level
    constant = {s: np.full(len(y), float(y.mean())) for s in SUBSETS}
    flat = write_model(tmp_path / "flat", y, groups, constant)
    page = report(tmp_path, {"flat": flat})
    assert "0.000 ∅" in page  # F1 with its zero-width interval
    assert '<td class="num">0.500 (0.500–0.500) ∅⚠</td>' in side_by_side(page)  # AUROC
    brier = f"{y.mean() * (1 - y.mean()):.3f}"
    assert f"{brier} ⚠" in page  # Brier at the no-skill level
    assert "the interval has zero width" in page and "at or worse than the no-skill" in page
    assert (
        f"No-skill reference (a model that always predicts the prevalence): AUROC 0.500, AUPRC {y.mean():.3f}"
        in page
    )


def test_provenance_and_clinical_figures_are_in_the_one_file(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    a = write_model(tmp_path / "a", y, groups, probabilities(y, rng, 2.0))
    b = write_model(tmp_path / "b", y, groups, probabilities(y, rng, 1.0))
    page = report(tmp_path, {"a": a, "b": b}, figures=True)
    assert "<td>synergy</td>" in page and "synthetic-train" in page
    assert "synthetic-melanoma · test · 2026-12-07T12:00:00+00:00" in page
    assert f"prevalence {y.mean():.3f}" in page
    assert "240 rows, 120 patients" in page
    out = tmp_path / "report"
    pngs = {p.name for p in out.glob("*.png")}
    for subset in ("image_tabular", "image", "tabular"):  # the full set and each single one
        for prefix in ("roc_pr", "calibration", "decision", "confusion"):
            assert any(n.startswith(prefix) and f"with_{subset}" in n for n in pngs), (
                prefix,
                subset,
            )
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2 + 4 * len(SUBSETS)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in page and "<script" not in page.lower()
    alts = re.findall(r'alt="([^"]*)"', page)
    assert all(len(alt) > 40 for alt in alts)  # alt text says what is shown, not a file name
    assert any("a: AUROC 0." in alt and "No skill: AUROC 0.5" in alt for alt in alts)


def test_cli_report_finds_the_predictions_beside_each_result(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    a = write_model(tmp_path / "a", y, groups, probabilities(y, rng, 2.5))
    b = write_model(tmp_path / "b", y, groups, probabilities(y, rng, 0.3))
    out = tmp_path / "out"
    args = ["report", str(a), str(b), "--out", str(out), "--no-clinical-figures"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<strong>" in side_by_side(page) and "a better than b (Δ +" in page


def kept_file(path: Path, target_info: dict, y: np.ndarray, outputs: dict[str, np.ndarray]):
    """One model's kept predictions of target 'finding' on one subset ('image')."""
    n = len(y)
    collector = PredictionCollector({"finding": target_info})
    collector.add(
        {
            "ids": [f"s{i}" for i in range(n)],
            "groups": [f"p{i // 2}" for i in range(n)],
            "targets": {"finding": torch.as_tensor(y)},
            "target_mask": {"finding": torch.ones(n, dtype=torch.bool)},
        },
        {"finding": {k: torch.as_tensor(v) for k, v in outputs.items()}},
    )
    table = predictions_table(
        {("image",): collector},
        {"image": np.ones(n, dtype=bool)},
        {"finding": target_info},
        {"split": "test"},
    )
    return read_predictions(write_predictions(path, table))


def test_multiclass_gets_one_vs_rest_curves_per_class_and_no_decision_curve(tmp_path) -> None:
    rng = np.random.default_rng(0)
    info = {"kind": "multiclass", "classes": ["nevus", "melanoma", "bcc"], "n_outputs": 3}
    y = rng.integers(0, 3, 90)
    logits = 2.0 * np.eye(3)[y] + rng.normal(size=(90, 3))
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    kept = kept_file(
        tmp_path / "a.parquet", info, y, {"probabilities": prob, "label": prob.argmax(1)}
    )
    sections = ClinicalFigures({"a": kept}, tmp_path, n_boot=10, seed=0).target(
        "finding", [("image",)]
    )
    names = [f.file_name for s in sections for f in s.figures]
    for cls in info["classes"]:  # one vs rest: ROC/PR and reliability per class
        assert f"roc_pr_finding_with_image_{cls}.png" in names
        assert f"calibration_finding_with_image_{cls}.png" in names
    assert not any(n.startswith("decision_") for n in names)  # not a single yes/no outcome
    assert "confusion_finding_with_image.png" in names
    assert all((tmp_path / n).is_file() for n in names)


def test_time_to_event_gets_kaplan_meier_by_risk_group_and_auroc_over_time(tmp_path) -> None:
    rng = np.random.default_rng(0)
    risk = rng.normal(size=60)
    time = rng.exponential(np.exp(-risk))
    y = np.stack([time, rng.random(60) < 0.7], axis=1).astype(np.float32)
    info = {"kind": "time_to_event", "n_outputs": 1}
    kept = kept_file(tmp_path / "t.parquet", info, y, {"risk": risk.astype(np.float32)})
    sections = ClinicalFigures({"a": kept}, tmp_path, n_boot=10, seed=0).target(
        "finding", [("image",)]
    )
    kaplan_meier, over_time = sections[0].figures
    assert kaplan_meier.file_name == "survival_finding_with_image.png"
    assert over_time.file_name == "time_auroc_finding_with_image.png"
    assert "Calibration at each horizon is not drawn" in over_time.caption  # what is left out


def test_the_page_is_well_formed_html(tmp_path: Path) -> None:
    y, groups, rng = labels_and_signal()
    a = write_model(tmp_path / "a", y, groups, probabilities(y, rng, 2.0))
    page = report(tmp_path, {"a": a}, figures=True)
    void = {"meta", "img", "br", "hr", "link", "input"}
    stack: list[str] = []

    class Checker(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag not in void:
                stack.append(tag)

        def handle_endtag(self, tag):
            assert stack and stack[-1] == tag, f"</{tag}> closes <{stack[-1] if stack else None}>"
            stack.pop()

    Checker().feed(page)
    assert stack == [] and page.startswith("<!DOCTYPE html>")
