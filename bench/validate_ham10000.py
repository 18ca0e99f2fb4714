"""Time ``polymodal validate configs/ham10000.yaml`` end to end on the 8,011 HAM10000 images.

Runs the real command in a fresh process (start-up, imports, reading the manifest, opening and
decoding every JPEG, leakage check, tables), then reads its JSON report and writes the numbers
to ``bench/results/validate_ham10000.md``. Target: under 60 s on a 2-core machine.

Usage::

    python bench/validate_ham10000.py [--workers N]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_average, machine, write_report

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / "configs" / "ham10000.yaml"
RESULTS = REPO_ROOT / "bench" / "results" / "validate_ham10000.md"
TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="threads that open files")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-m",
            "polymodal",
            "validate",
            str(SPEC),
            "--json",
            str(report_path),
        ]
        if args.workers:
            command += ["--workers", str(args.workers)]
        load_before = load_average()
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if not report_path.is_file():
            sys.exit(f"validate failed (exit {completed.returncode}):\n{completed.stderr}")
        report = json.loads(report_path.read_text())

    flagged = "dx_type" in report["leakage_columns"]
    leak = next((p for p in report["problems"] if p["column"] == "dx_type"), None)
    lines = [
        "# `polymodal validate` on HAM10000",
        "",
        f"Command: `polymodal validate configs/ham10000.yaml` (run by `python {Path(__file__).relative_to(REPO_ROOT)}`)",
        "",
        f"- machine: {machine()}, Python {platform.python_version()}; load average before the "
        f"run {load_before:.2f}",
        f"- exit status: {completed.returncode} (0 = training possible)",
        f"- rows: {report['n_rows']:,} "
        f"({', '.join(f'{s} {n:,}' for s, n in report['split_counts'].items())})",
        f"- images opened and decoded: {sum(report['availability']['skin'].values()):,}",
        "- missing rates: "
        + ", ".join(f"`{c}` {r:.2%}" for c, r in report["missing_rates"].items()),
        f"- `dx_type` flagged as possible leakage: {'yes' if flagged else 'NO'}",
        f"- leakage columns: {report['leakage_columns']}",
        f"- problems: {len(report['problems'])} "
        f"({sum(p['severity'] == 'error' for p in report['problems'])} error(s))",
        f"- validation itself (inside the process): {report['seconds']:.1f} s",
        f"- **wall time end to end: {wall:.1f} s** (target < {TARGET_SECONDS:.0f} s: "
        f"{'met' if wall < TARGET_SECONDS else 'NOT met'})",
        "",
    ]
    if leak is not None:
        lines += ["The leakage warning as printed:", "", f"> {leak['reason']}", ""]
    print(write_report(RESULTS, lines), end="")


if __name__ == "__main__":
    main()
