"""The robustness report: HTML + PNGs comparing models over the missing-modality matrix."""

from __future__ import annotations

import base64
import io
import math
import re
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from polymodal.cli import app, main
from polymodal.evaluation import (
    BootstrapResult,
    EvaluationResult,
    MetricCI,
    SubsetResult,
    modality_subsets,
)
from polymodal.evaluation.report import build_report
from polymodal.evaluation.report_figures import mean_by_missing
from polymodal.evaluation.report_plan import ReportError, plan_report

MODALITIES = ("image", "tabular", "text")
SCRIPT = "<script>alert(1)</script>"
runner = CliRunner()


def _ci(metrics: dict[str, float], reasons: dict[str, str] | None = None) -> BootstrapResult:
    """A bootstrap result with ±0.03 intervals around the given point estimates."""
    result = BootstrapResult(n_boot=200, level=0.95, n_samples=120, n_groups=80)
    for name, point in metrics.items():
        result[name] = MetricCI(point, point - 0.03, point + 0.03, 200)
    result.reasons.update(reasons or {})
    return result


def _auroc(subset: tuple[str, ...], shift: float) -> float:
    """Higher with more modalities; image carries the most signal."""
    return round(0.55 + 0.08 * len(subset) + (0.1 if "image" in subset else 0.0) + shift, 3)


def _result(
    model: str,
    shift: float,
    *,
    modalities: tuple[str, ...] = MODALITIES,
    target: str = "melanoma",
    with_age: bool = False,
) -> EvaluationResult:
    result = EvaluationResult(
        settings={"model": f"runs/{model}/model", "split": "test", "n_boot": 200}
    )
    for subset in modality_subsets(modalities):
        result.add(target, "binary", subset, _ci({"auroc": _auroc(subset, shift), "f1": 0.5}))
        if with_age:
            rmse = round(2.0 - 0.2 * len(subset) - shift, 3)
            result.add("age", "regression", subset, _ci({"mae": rmse * 0.8, "rmse": rmse}))
    return result


def _subset(modalities: tuple[str, ...], auroc: float | None) -> SubsetResult:
    metrics = {} if auroc is None else {"auroc": MetricCI(auroc, auroc - 0.1, auroc + 0.1, 200)}
    return SubsetResult(modalities, metrics, 100, 60, 200, 0.95)


def test_mean_by_missing_averages_the_defined_subset_estimates_per_count():
    subsets = [
        _subset(("image", "tabular", "text"), 0.9),
        _subset(("image", "tabular"), 0.8),
        _subset(("image", "text"), 0.7),
        _subset(("tabular", "text"), math.nan),  # undefined: left out of the mean
        _subset(("image",), 0.6),
        _subset(("tabular",), 0.5),
        _subset(("text",), None),  # metric absent: left out too
    ]
    counts = mean_by_missing(subsets, "auroc", 3)
    assert [c.n_missing for c in counts] == [0, 1, 2]
    assert [c.points for c in counts] == [(0.9,), (0.8, 0.7), (0.6, 0.5)]
    assert [c.mean for c in counts] == pytest.approx([0.9, 0.75, 0.55])
    # against four modalities the same subsets miss one more, and none has all four
    four = mean_by_missing(subsets, "auroc", 4)
    assert [c.n_missing for c in four] == [0, 1, 2, 3]
    assert math.isnan(four[0].mean) and four[0].points == ()
    assert [c.mean for c in four[1:]] == pytest.approx([0.9, 0.75, 0.55])


def test_html_is_self_contained_names_every_subset_and_escapes_model_names(tmp_path: Path):
    results = {"synergy": _result("synergy", 0.05), SCRIPT: _result("late", 0.0)}
    html_path = build_report(results, tmp_path / "report", title="Melanoma <robustness>")
    assert html_path == tmp_path / "report" / "report.html"
    page = html_path.read_text(encoding="utf-8")

    for subset in modality_subsets(MODALITIES):
        assert f"<td>{' + '.join(subset)}</td>" in page
    assert "<th>synergy</th>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page.lower()
    assert "<h1>Melanoma &lt;robustness&gt;</h1>" in page
    assert "percentile bootstrap interval from 200 resamples" in page
    assert "patient groups, not rows" in page
    assert "runs/synergy/model" in page and "mean of the subset estimates" in page

    # nothing outside the file: every image is a data URI, no links, styles or scripts fetched
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in page and "<link" not in page and "url(" not in page
    for source, stem in zip(sources, ("robustness_melanoma", "subsets_melanoma"), strict=True):
        embedded = base64.b64decode(source.removeprefix("data:image/png;base64,"))
        assert embedded == (tmp_path / "report" / f"{stem}.png").read_bytes()
        image = Image.open(io.BytesIO(embedded))
        assert image.format == "PNG"
        assert 600 <= image.width <= 2000 and 350 <= image.height <= 2000


def test_without_kept_predictions_no_model_is_bold_and_the_report_says_why(tmp_path: Path):
    results = {
        "synergy": _result("synergy", 0.05, with_age=True),
        "concat": _result("concat", 0.0, with_age=True),
    }
    page = build_report(results, tmp_path).read_text(encoding="utf-8")
    # synergy's estimates are higher (AUROC) and lower (RMSE), but no paired test backs them
    assert "<strong>0." not in page and "<strong>1." not in page
    assert '<td class="num">0.940 (0.910–0.970)</td>' in page  # synergy, all three modalities
    assert '<td class="num">1.350 (1.320–1.380)</td>' in page
    assert "No model is marked better: a paired test needs every model&#39;s kept" in page
    assert "none were found for synergy, concat" in page
    assert "RMSE (lower is better)" in page
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "robustness_melanoma.png",
        "subsets_melanoma.png",
        "robustness_age.png",
        "subsets_age.png",
    }


def test_same_results_give_the_same_files(tmp_path: Path):
    results = {"synergy": _result("synergy", 0.05), "concat": _result("concat", 0.0)}
    first = build_report(results, tmp_path / "a")
    second = build_report(results, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    for name in ("robustness_melanoma.png", "subsets_melanoma.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_models_with_different_targets_are_refused():
    results = {"a": _result("a", 0.0), "b": _result("b", 0.0, target="nevus")}
    with pytest.raises(ReportError, match="models must report the same targets: 'a' has"):
        plan_report(results)


def test_unknown_metric_lists_the_available_ones():
    with pytest.raises(ReportError, match=r"metric 'c_index' is not in .* available: auroc, f1"):
        plan_report({"a": _result("a", 0.0)}, metric="c_index")


def test_different_modality_sets_compare_on_shared_subsets_only_when_asked(tmp_path: Path):
    results = {
        "trimodal": _result("trimodal", 0.0),
        "bimodal": _result("bimodal", 0.0, modalities=("tabular", "image")),
    }
    with pytest.raises(ReportError, match="pass --shared-subsets"):
        plan_report(results)

    (plan,) = plan_report(results, shared_subsets=True)
    # matched as sets, whatever order each model listed its modalities in
    assert plan.subsets == [("image", "tabular"), ("image",), ("tabular",)]
    assert plan.modalities == ("image", "tabular")
    assert plan.left_out == {
        "trimodal": ["image + tabular + text", "image + text", "tabular + text", "text"],
        "bimodal": [],
    }
    assert plan.result("bimodal", ("image", "tabular")).modalities == ("tabular", "image")

    page = build_report(results, tmp_path, shared_subsets=True).read_text(encoding="utf-8")
    assert "Left out for trimodal (not evaluated by every model): image + tabular + text" in page
    assert "not evaluated" not in page.split("<h3>")[0].split("Left out")[0]


def test_same_modalities_with_a_skipped_subset_show_not_evaluated(tmp_path: Path):
    full_only = EvaluationResult()
    full_only.add("melanoma", "binary", MODALITIES, _ci({"auroc": 0.9}))
    results = {"every subset": _result("a", 0.0), "full only": full_only}
    (plan,) = plan_report(results)
    assert len(plan.subsets) == 7
    page = build_report(results, tmp_path).read_text(encoding="utf-8")
    assert page.count('<td class="num">not evaluated</td>') == 6


def _write(path: Path, result: EvaluationResult) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_json())
    return path


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    """The real entry point with its error handling: (exit status, everything printed)."""
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_cli_report_from_two_json_files_names_models_after_their_folders(tmp_path: Path):
    synergy = _write(tmp_path / "synergy" / "eval.json", _result("synergy", 0.05))
    concat = _write(tmp_path / "concat" / "eval.json", _result("concat", 0.0))
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(synergy), str(concat), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'}" in result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<th>synergy</th><th>concat</th>" in page

    # JSONs side by side in one folder: named after their model folders (runs/NAME/model)
    same = [_write(tmp_path / "all" / f"{n}.json", _result(n, 0.0)) for n in ("syn", "cat")]
    named = runner.invoke(
        app, ["report", *map(str, same), "--out", str(out), "--metric", "f1", "--title", "T"]
    )
    assert named.exit_code == 0, named.output
    assert "<th>syn</th><th>cat</th>" in (out / "report.html").read_text(encoding="utf-8")


def test_cli_mismatched_targets_exit_2_with_a_message(monkeypatch, capsys, tmp_path: Path):
    a = _write(tmp_path / "a" / "eval.json", _result("a", 0.0))
    b = _write(tmp_path / "b" / "eval.json", _result("b", 0.0, target="nevus"))
    status, output = _run_main(monkeypatch, capsys, "report", str(a), str(b), "--out", "x")
    assert status == 2
    assert "models must report the same targets" in output and "'nevus'" in output
    assert "Traceback" not in output

    args = ["report", str(a), str(a), "--name", "only-one", "--out", str(tmp_path / "r")]
    status, output = _run_main(monkeypatch, capsys, *args)
    assert status == 2 and "got 1 --name for 2 RESULT files" in output

    status, output = _run_main(
        monkeypatch, capsys, "report", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")
    )
    assert status == 2 and "none.json: evaluation result not found" in output
    assert "Traceback" not in output
