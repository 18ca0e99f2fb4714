"""Property: ``load_cohort`` on any manifest file either loads or raises a PolymodalError, and
``validate_cohort`` and its rendering never raise on a cohort that loaded.

The spec is fixed and valid; the manifest is generated: BOMs, CRLF or CR line ends, ``;`` or
tab separators, blank or duplicated headers, ragged rows, quotes, huge numbers, ``inf``/``nan``,
non-UTF-8 bytes and empty files.
"""

from __future__ import annotations

import warnings
from io import StringIO
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from rich.console import Console

from polymodal.data.manifest import load_cohort
from polymodal.data.spec import parse_spec
from polymodal.data.splits import SplitWarning
from polymodal.errors import PolymodalError
from polymodal.validation.report import render_report
from polymodal.validation.validate import validate_cohort

COLUMNS = ["id", "patient", "split", "y", "age", "sex", "note", "scan"]
SPEC = {
    "manifest": "manifest.csv",
    "id_column": "id",
    "group_column": "patient",
    "split": {"column": "split", "aliases": {"valid": "val"}},
    "targets": {"y": {"kind": "binary", "column": "y", "positive": "1"}},
    "modalities": {
        "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]},
        "note": {"kind": "text", "column": "note"},
        "scan": {"kind": "image", "columns": ["scan"], "size": [4, 4], "channels": 1},
    },
}
# Every target kind, on the same columns, so the label checks meet every kind of cell.
MULTITASK_SPEC = {
    **SPEC,
    "targets": {
        "y": {"kind": "binary", "column": "y", "positive": "1"},
        "kind": {"kind": "multiclass", "column": "sex"},
        "tags": {"kind": "multilabel", "columns": ["y", "split"]},
        "level": {"kind": "regression", "column": "age"},
        "surv": {"kind": "time_to_event", "time_column": "age", "event_column": "y"},
        "risk": {
            "kind": "cumulative_risk",
            "time_column": "age",
            "event_column": "y",
            "horizons": [1, 5],
        },
        "count": {"kind": "digits", "column": "age", "num_digits": 2},
    },
    # Every file-based kind, on cells that rarely name a file (and sometimes a folder or NUL).
    "modalities": {
        **SPEC["modalities"],
        "note": {"kind": "text", "column": "note", "source": "file", "path_template": "n/{}.txt"},
        "ct": {"kind": "volume", "column": "scan", "size": [2, 2, 2]},
        "vitals": {"kind": "series", "column": "patient", "channels": ["hr"]},
        "history": {"kind": "text", "from_columns": ["sex", "age"]},
    },
}
RECIPE_SPEC = {**SPEC, "split": {"recipe": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1}}}

cells = st.sampled_from(
    [
        "",
        " ",
        "1",
        "0",
        "train",
        "val",
        "valid",
        "test",
        "p1",
        "p2",
        "F",
        "M",
        "NA",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "1e400",
        "1e308",
        "-0",
        "1_000",
        "12,5",
        "0x1A",
        "é",
        "\x00",
        "a;b",
        'say "hi"',
        "two\nlines",
        "../outside.png",
        "/etc/passwd",
        "scan.png",
        "[red]x[/]",
    ]
) | st.text(max_size=8)
headers = st.lists(
    st.sampled_from(COLUMNS)
    | st.sampled_from(["", " ", "Unnamed: 0", "id ", "\ufeffid"])
    | st.text(max_size=5),
    min_size=0,
    max_size=10,
)


@st.composite
def manifests(draw) -> bytes:
    """A manifest file; half of them well-formed enough to load, so validate gets exercised."""
    clean = draw(st.booleans())
    if clean:
        header = draw(st.permutations(COLUMNS)) + draw(st.lists(st.text(max_size=4), max_size=2))
    else:
        header = draw(st.one_of(st.just(COLUMNS), headers))
    ragged = not clean and draw(st.booleans())
    n_rows = draw(st.integers(1 if clean else 0, 12))
    rows = []
    for _ in range(n_rows):
        width = draw(st.integers(0, len(header) + 2)) if ragged else len(header)
        rows.append([draw(cells) for _ in range(width)])
    sep = "," if clean else draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote = clean or draw(st.booleans())

    def line(values: list[str]) -> str:
        if quote:
            values = ['"' + v.replace('"', '""') + '"' for v in values]
        return sep.join(values)

    text = newline.join(line(r) for r in [header, *rows])
    if draw(st.booleans()):
        text += newline
    encodings = ["utf-8", "utf-8-sig"] + ([] if clean else ["latin-1", "utf-16"])
    data = text.encode(draw(st.sampled_from(encodings)), errors="replace")
    return data + (b"" if clean else draw(st.sampled_from([b"", b"\xff\xfe\x00", b"\x00"])))


def _check(folder: Path, spec_data: dict, content: bytes, suffix: str = ".csv") -> None:
    manifest = folder / f"manifest{suffix}"
    manifest.write_bytes(content)
    spec = parse_spec({**spec_data, "manifest": manifest.name}, base_dir=folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitWarning)
            cohort = load_cohort(spec)
    except PolymodalError as err:
        event(f"refused: {type(err).__name__}")
        return
    event("loaded")
    assert len(cohort.split) == len(cohort.frame)
    for read_files in (False, True):
        report = validate_cohort(cohort, on_error="skip-modality", workers=1, read_files=read_files)
        render_report(report, Console(width=80, file=StringIO()))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("manifest_fuzz")


@given(manifests())
def test_generated_manifest_with_a_split_column(folder, content):
    _check(folder, SPEC, content)


@given(manifests())
def test_generated_manifest_with_a_split_recipe(folder, content):
    _check(folder, RECIPE_SPEC, content)


@given(manifests())
def test_generated_manifest_with_every_target_kind(folder, content):
    _check(folder, MULTITASK_SPEC, content)


@given(st.binary(max_size=200), st.sampled_from([".csv", ".tsv", ".txt", ".csv.gz", ".parquet"]))
def test_any_bytes_as_a_manifest(folder, content, suffix):
    _check(folder, SPEC, content, suffix)
