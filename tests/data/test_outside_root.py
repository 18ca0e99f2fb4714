"""A cohort's files must lie inside its data root: a cell pointing elsewhere is an unreadable file.

The danger is concrete: a text modality read from files stores the words of its training texts
in the tokenizer of ``preprocessing.json``, a file meant to be shared with the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_files import write_png, write_table

from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import parse_spec
from polymodal.errors import ReadError
from polymodal.validation.validate import validate_cohort

SECRET = "zqxvorpalsecret"  # a word no training text holds
LINKED = "qjwlinkedsecret"


def outside_cohort(tmp_path: Path, **spec_changes: object):
    """Eight rows with a text report per row read from a file; row s0's cell climbs out of the
    cohort with ``..`` and row s1's file is a symbolic link to a file outside it."""
    root = tmp_path / "cohort"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"patient history {SECRET}")
    (outside / "linked.txt").write_text(f"patient history {LINKED}")
    reports = root / "reports"
    reports.mkdir(parents=True)
    for i in range(2, 8):
        (reports / f"s{i}.txt").write_text(f"report of sample {i} with mild findings")
    (reports / "s1.txt").symlink_to(outside / "linked.txt")
    cells = ["../outside/secret.txt", "reports/s1.txt"] + [f"reports/s{i}.txt" for i in range(2, 8)]
    write_table(
        root / "manifest.csv",
        {
            "id": [f"s{i}" for i in range(8)],
            "split": ["train"] * 6 + ["val"] * 2,
            "y": [str(i % 2) for i in range(8)],
            "age": [str(40 + i) for i in range(8)],
            "report": cells,
        },
    )
    spec = {
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"y": {"kind": "binary", "column": "y", "positive": "1"}},
        "modalities": {
            "labs": {"kind": "tabular", "numeric": ["age"]},
            # min_count 1: each word is in one patient's report, and the leak must be seen.
            "report": {"kind": "text", "column": "report", "source": "file", "min_count": 1},
        },
        **spec_changes,
    }
    return load_cohort(parse_spec(spec, base_dir=root))


def test_validate_reports_each_file_outside_the_root_by_row_and_column(tmp_path: Path) -> None:
    cohort = outside_cohort(tmp_path)
    report = validate_cohort(cohort, on_error="skip-modality", workers=1)
    outside = {p.row_id: p for p in report.problems if "outside the cohort root" in p.reason}
    assert set(outside) == {"s0", "s1"}
    assert outside["s0"].column == "report" and outside["s0"].severity == "error"
    assert "secret.txt" in outside["s0"].reason
    assert "set allow_outside_root: true in the spec" in outside["s0"].reason
    assert f"it leads to {tmp_path / 'outside' / 'linked.txt'}" in outside["s1"].reason
    assert report.skipped["report"] == ["s0", "s1"]


def test_the_fitted_state_holds_no_word_of_a_file_outside_the_root(tmp_path: Path) -> None:
    cohort = outside_cohort(tmp_path)
    prep = Preprocessor.fit(cohort)
    saved = prep.save(tmp_path / "model" / "preprocessing.json").read_text()
    assert "mild" in saved  # the texts inside the root were fitted
    assert SECRET not in saved and LINKED not in saved
    assert {issue.row_id for issue in prep.fit_issues} == {"s0", "s1"}
    assert all("outside the cohort root" in issue.reason for issue in prep.fit_issues)
    with pytest.raises(ReadError, match="outside the cohort root"):
        Preprocessor.fit(cohort, on_error="fail")


def test_the_spec_may_allow_files_outside_the_root(tmp_path: Path) -> None:
    # The owner's explicit choice; it also shows the test above would catch a leak.
    cohort = outside_cohort(tmp_path, allow_outside_root=True)
    saved = Preprocessor.fit(cohort).save(tmp_path / "preprocessing.json").read_text()
    assert SECRET in saved and LINKED in saved


def test_a_sample_goes_on_without_a_text_file_outside_the_root(tmp_path: Path) -> None:
    cohort = outside_cohort(tmp_path)
    prep = Preprocessor.fit(cohort)
    dataset = CohortDataset(cohort, prep, "train")
    samples = [dataset[i] for i in range(len(dataset))]
    assert [s["available"]["report"] for s in samples] == [False, False, *[True] * 4]
    assert all(s["available"]["labs"] for s in samples)
    assert {(i.row_id, i.column) for i in dataset.issues} == {("s0", "report"), ("s1", "report")}


def image_cohort(tmp_path: Path):
    """Two training rows with an image: row a's cell climbs out of the cohort, row b's does not."""
    root = tmp_path / "cohort"
    write_png(tmp_path / "elsewhere.png", np.full((12, 16), 200, dtype=np.uint8))
    write_png(root / "inside.png", np.full((12, 16), 10, dtype=np.uint8))
    write_table(
        root / "manifest.csv",
        {
            "id": ["a", "b"],
            "split": ["train", "train"],
            "y": ["1", "0"],
            "xray": ["../elsewhere.png", "inside.png"],
        },
    )
    spec = {
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"y": {"kind": "binary", "column": "y", "positive": "1"}},
        "modalities": {"xray": {"kind": "image", "columns": ["xray"], "size": [8, 8]}},
    }
    return load_cohort(parse_spec(spec, base_dir=root))


def test_an_image_outside_the_root_is_never_decoded(tmp_path: Path) -> None:
    cohort = image_cohort(tmp_path)
    root = cohort.data_root
    with pytest.raises(ReadError, match=r"elsewhere\.png: lies outside the cohort root"):
        cohort.file_paths(0, "xray")
    assert cohort.file_paths(1, "xray") == [root / "inside.png"]
    report = validate_cohort(cohort, on_error="skip-modality", workers=1)
    [problem] = [p for p in report.problems if "outside the cohort root" in p.reason]
    assert (problem.row_id, problem.column) == ("a", "xray")
    assert report.skipped["xray"] == ["a"]


def test_a_sample_goes_on_without_an_image_outside_the_root(tmp_path: Path) -> None:
    cohort = image_cohort(tmp_path)
    dataset = CohortDataset(cohort, Preprocessor.fit(cohort), "train")
    assert [dataset[i]["available"]["xray"] for i in range(2)] == [False, True]
    assert [(i.row_id, i.column) for i in dataset.issues] == [("a", "xray")]


def test_a_refused_path_is_refused_at_every_read_and_a_new_root_is_followed(
    tmp_path: Path,
) -> None:
    # resolve_path remembers what it resolved (a fifth of reading a cached sample was realpath):
    # a refusal must not be remembered as an answer, and a changed root must not see old ones.
    cohort = outside_cohort(tmp_path)
    inside = cohort.resolve_path("reports/s2.txt")
    assert inside == tmp_path / "cohort" / "reports" / "s2.txt"
    for _ in range(2):
        with pytest.raises(ReadError, match="outside the cohort root"):
            cohort.resolve_path("../outside/secret.txt")
    cohort.root = tmp_path / "outside"
    assert cohort.resolve_path("secret.txt") == tmp_path / "outside" / "secret.txt"
    # The same cell resolved against the old root before; now against the new one.
    assert cohort.resolve_path("reports/s2.txt") == tmp_path / "outside" / "reports" / "s2.txt"
    with pytest.raises(ReadError, match="outside the cohort root"):
        cohort.resolve_path("../cohort/reports/s2.txt")
