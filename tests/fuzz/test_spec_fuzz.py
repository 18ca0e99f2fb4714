"""Property: ``load_spec`` on any file either returns a spec or raises a PolymodalError.

Inputs: arbitrary bytes (non-UTF-8, BOMs, NUL), YAML-like text built from tricky tokens (tags,
anchors, dates, tabs), YAML dumped from random nested values (huge ints, inf, dates, binary),
and valid specs with one or more parts replaced, deleted or retyped.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from polymodal.data.spec import dump_spec, load_spec, parse_spec
from polymodal.errors import PolymodalError

VALID_SPEC: dict = {
    "name": "fuzz",
    "manifest": "manifest.csv",
    "id_column": "id",
    "group_column": "patient",
    "split": {"recipe": {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 3}},
    "targets": {
        "y": {"kind": "binary", "column": "y", "positive": "1", "class_weights": [1.0, 2.0]},
        "grade": {"kind": "multiclass", "column": "grade", "classes": ["a", "b"]},
        "tags": {"kind": "multilabel", "columns": ["t1", "t2"]},
        "age_next": {"kind": "regression", "column": "age_next"},
        "surv": {"kind": "time_to_event", "time_column": "time", "event_column": "event"},
        "risk": {
            "kind": "cumulative_risk",
            "time_column": "time",
            "event_column": "event",
            "horizons": [1, 2, 6],
        },
        "count": {"kind": "digits", "column": "count", "num_digits": 2},
    },
    "modalities": {
        "xray": {"kind": "image", "columns": ["front", "side"], "size": [16, 16]},
        "ct": {"kind": "volume", "column": "ct", "size": [8, 8, 8], "spacing": [1, 1, 2]},
        "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]},
        "note": {"kind": "text", "column": "note", "source": "file", "path_template": "n/{}"},
        "history": {
            "kind": "text",
            "from_columns": ["smoker", "age"],
            "sentences": {"smoker": "Smoker: {value}."},
        },
        "vitals": {"kind": "series", "column": "vitals", "channels": ["hr"], "bin_width": 1.5},
    },
    "exclude_columns": ["leaky"],
}

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=10)
    | st.dates()
    | st.datetimes()
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=12,
)
TOKENS = [
    "name: x\n",
    "manifest: m.csv\n",
    "id_column: id\n",
    "split:\n",
    "  column: s\n",
    "  recipe:\n",
    "    train: 0.7\n",
    "targets:\n",
    "modalities:\n",
    "  y:\n",
    "    kind: binary\n",
    "    kind: image\n",
    "    column: y\n",
    "    columns: [a]\n",
    "    size: [0, -1]\n",
    "2026-13-45",
    "2026-02-30 25:61:00",
    "!!timestamp x",
    "!!int 0x",
    "!!float abc",
    "!!binary ===",
    "!!python/object:os.system",
    "!!set {a}",
    "!!omap [a]",
    "&a [*a]",
    "*b",
    "<<: *a\n",
    "<<: [1]\n",
    "? [a, b]\n: c\n",
    "{",
    "}",
    "[",
    "]",
    "- ",
    ": ",
    "\t",
    "\n",
    "  ",
    "'",
    '"',
    "\\x00",
    "\x00",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "1e999",
    ".inf",
    ".nan",
    "~",
    "0o777",
    "0x1F",
    "1_000",
    "yes",
    "null",
    "True",
    "\ufeff",
    "é",
    "\ud7ff",
    "#",
    "|\n",
    ">-\n",
]
yaml_like = st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=30).map("".join)


def _write(folder: Path, content: str | bytes) -> Path:
    path = folder / "spec.yaml"
    if isinstance(content, str):
        content = content.encode("utf-8", errors="surrogatepass")
    path.write_bytes(content)
    return path


def _load_or_refuse(folder: Path, content: str | bytes) -> None:
    """load_spec returns a spec that dumps and reloads, or raises a PolymodalError."""
    try:
        spec = load_spec(_write(folder, content))
    except PolymodalError:
        return
    spec.required_columns()
    # A spec polymodal accepted is saved beside each model; it must load back the same.
    again = parse_spec(yaml.safe_load(dump_spec(spec)), base_dir=spec.base_dir)
    assert again == spec


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spec_fuzz")


def test_the_valid_spec_loads(folder):
    spec = load_spec(_write(folder, yaml.safe_dump(VALID_SPEC)))
    assert set(spec.modalities) == set(VALID_SPEC["modalities"])


@given(st.binary(max_size=300))
def test_any_bytes(folder, content):
    _load_or_refuse(folder, content)


@given(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]), st.binary(max_size=40))
def test_valid_spec_with_a_bom_or_bad_bytes(folder, prefix, tail):
    _load_or_refuse(folder, prefix + yaml.safe_dump(VALID_SPEC).encode() + tail)


@given(yaml_like)
def test_yaml_like_text(folder, text):
    _load_or_refuse(folder, text)


@given(values)
def test_yaml_of_random_values(folder, value):
    _load_or_refuse(folder, yaml.safe_dump(value, allow_unicode=True))


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a nested dict/list, the root included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*prefix, i))
    return found


ALL_PATHS = _paths(VALID_SPEC)[1:]
mutation = st.tuples(
    st.sampled_from(ALL_PATHS),
    st.sampled_from(["replace", "delete", "add"]),
    values | st.sampled_from([dt.date(2026, 1, 1), float("inf"), float("nan"), -1, 0, 10**30]),
)


@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_spec(folder, mutations):
    spec = copy.deepcopy(VALID_SPEC)
    for path, how, value in mutations:
        parent = spec
        try:
            for key in path[:-1]:
                parent = parent[key]
            if how == "replace":
                parent[path[-1]] = value
            elif how == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[f"extra_{len(parent)}"] = value
            else:
                parent.append(value)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier mutation removed or retyped this path
    _load_or_refuse(folder, yaml.safe_dump(spec, allow_unicode=True))


VALID_TEXT = yaml.safe_dump(VALID_SPEC, sort_keys=False)
edit = st.tuples(
    st.integers(0, len(VALID_TEXT)),
    st.integers(0, 12),
    st.sampled_from(TOKENS) | st.text(max_size=4),
)


@given(st.lists(edit, min_size=1, max_size=5))
def test_edited_valid_spec_text(folder, edits):
    """A spec file a person mistyped: pieces of the valid text replaced by other text."""
    text = VALID_TEXT
    for position, length, insert in edits:
        text = text[:position] + insert + text[position + length :]
    _load_or_refuse(folder, text)
