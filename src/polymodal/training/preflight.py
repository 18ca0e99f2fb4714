"""Before training: the checks of ``polymodal validate`` that block training stop ``fit`` too.

Duplicate sample ids, a patient (group) in two splits, split values that are not
train/val/test, unusable targets, an empty training split: ``validate`` calls these blocking,
and a model trained on such a cohort has leaked or meaningless validation scores. ``fit`` runs
the same checks (every one that opens no file, so the pre-flight reads the manifest only) and
refuses with the same findings, unless the caller passes ``allow_blocking`` explicitly, which
the run folder records.
"""

from __future__ import annotations

import warnings

from polymodal.data.manifest import Cohort
from polymodal.errors import PolymodalError
from polymodal.validation.validate import ValidationReport, validate_cohort

# Problems listed in the message; `polymodal validate --problems-csv` writes them all.
SHOWN_PROBLEMS = 20


class BlockingProblems(PolymodalError):
    """The cohort has problems that ``polymodal validate`` reports as blocking training."""


def describe_blocking(report: ValidationReport) -> str:
    """The blocking reasons and the problems (row id, column, reason, what to do) as text."""
    lines = [f"{report.manifest}: training is not possible:"]
    lines += [f"  - {reason}" for reason in report.blocking]
    errors = [p for p in report.problems if p.severity == "error"]
    if errors:
        lines.append("problems (row id | column | reason | what to do):")
        for p in errors[:SHOWN_PROBLEMS]:
            lines.append(f"  {p.row_id or '-'} | {p.column or '-'} | {p.reason} | {p.action}")
        if len(errors) > SHOWN_PROBLEMS:
            lines.append(
                f"  … {len(errors) - SHOWN_PROBLEMS} more; `polymodal validate SPEC "
                "--problems-csv problems.csv` lists them all"
            )
    return "\n".join(lines)


def check_blocking(cohort: Cohort, *, allow_blocking: bool = False) -> list[str]:
    """Run validate's file-free checks; refuse training on a blocking problem.

    Returns:
        The blocking reasons that ``allow_blocking`` overrode (empty when there were none).

    Raises:
        BlockingProblems: a blocking problem and no ``allow_blocking``.
    """
    report = validate_cohort(cohort, on_error="skip-modality", read_files=False)
    if not report.blocking:
        return []
    message = describe_blocking(report)
    if not allow_blocking:
        raise BlockingProblems(
            f"{message}\nFix them (see `polymodal validate`), or pass --allow-blocking "
            "(allow_blocking=True) to train anyway; the override is recorded in run.json."
        )
    warnings.warn(
        f"{message}\ntraining anyway (allow_blocking); recorded in run.json", stacklevel=4
    )
    return list(report.blocking)
