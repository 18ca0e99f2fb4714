"""bench/_common.py: the machine line and the Markdown tables every benchmark script writes."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from polymodal.evaluation.bootstrap import MetricCI

BENCH = Path(__file__).resolve().parents[2] / "bench"
spec = importlib.util.spec_from_file_location("bench_common", BENCH / "_common.py")
common = importlib.util.module_from_spec(spec)
spec.loader.exec_module(common)


def test_a_cell_shows_point_and_interval_from_every_shape_the_scripts_hold() -> None:
    expected = "0.812 (0.790–0.834)"
    assert common.cell(MetricCI(0.8123, 0.79, 0.834, 200)) == expected
    assert common.cell({"point": 0.8123, "low": 0.79, "high": 0.834}) == expected
    assert common.cell([0.8123, 0.79, 0.834]) == expected
    assert common.cell(None) == common.cell({"point": None}) == "n/a"
    assert common.cell(MetricCI(float("nan"), 0.0, 0.0, 0)) == "n/a"


def test_a_table_has_header_rule_and_rows_aligned_as_asked() -> None:
    lines = common.table(["model", "AUROC"], [("a", 0.5)], align="lr")
    assert lines == ["| model | AUROC |", "|---|---:|", "| a | 0.5 |"]
    assert common.table(["x", "y"])[1] == "|---|---|"
    assert common.table_row(["b", 1]) == "| b | 1 |"


def test_the_machine_line_names_cpus_torch_and_threads() -> None:
    line = common.machine(threads=3)
    assert f"{os.cpu_count()} CPUs" in line and f"torch {torch.__version__}" in line
    assert line.endswith("3 thread(s)") and "3 thread(s)" not in common.machine()


def test_a_report_is_written_with_its_folder_and_one_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "results" / "x.md"
    text = common.write_report(path, ["# x", "", "| a |"])
    assert path.read_text() == text == "# x\n\n| a |\n"
