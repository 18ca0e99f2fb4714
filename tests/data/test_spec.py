"""The cohort spec: every error names the field a user has to fix."""

from __future__ import annotations

import pytest

from polymodal.data.spec import load_spec, parse_spec
from polymodal.errors import SpecError
from polymodal.modalities import MODALITIES

BASE = {
    "manifest": "manifest.csv",
    "id_column": "id",
    "split": {"column": "split"},
    "targets": {"y": {"kind": "binary", "column": "y"}},
    "modalities": {"xray": {"kind": "image", "columns": ["xray_path"]}},
}


def _error(**changes) -> str:
    data = {**BASE, **changes}
    with pytest.raises(SpecError) as err:
        parse_spec({k: v for k, v in data.items() if v is not None}, source="cohort.yaml")
    return str(err.value)


def test_valid_spec_resolves_paths_against_its_folder(tmp_path):
    spec = parse_spec(BASE, base_dir=tmp_path)
    assert spec.manifest_path == tmp_path / "manifest.csv"
    assert spec.data_root == tmp_path
    assert spec.required_columns() == {
        "id": "id_column",
        "split": "split.column",
        "y": "targets.y",
        "xray_path": "modalities.xray",
    }


def test_unknown_modality_kind_names_the_modality_and_the_known_kinds():
    message = _error(modalities={"scan": {"kind": "audio", "column": "a"}})
    assert "cohort.yaml: the cohort spec is not valid" in message
    assert "modalities.scan: unknown kind 'audio'" in message
    assert str(tuple(MODALITIES.names())) in message  # every registered kind, by name


def test_missing_kind():
    assert "modalities.scan: missing 'kind'" in _error(modalities={"scan": {"column": "a"}})


def test_missing_column_field_names_the_field():
    message = _error(modalities={"xray": {"kind": "image"}})
    assert "modalities.xray.columns: Field required" in message


def test_bad_spacing_names_the_field_and_the_value():
    message = _error(modalities={"ct": {"kind": "volume", "column": "c", "spacing": [1, 0, 1]}})
    assert (
        "modalities.ct.spacing: spacing: expected three positive numbers, got [1.0, 0.0, 1.0]"
        in (message)
    )
    message = _error(modalities={"ct": {"kind": "volume", "column": "c", "size": [8, 8]}})
    assert "modalities.ct.size: expected three positive integers, got [8, 8]" in message


def test_typo_in_a_key_is_an_error_not_ignored():
    message = _error(modalities={"xray": {"kind": "image", "columns": ["p"], "chanels": 1}})
    assert "modalities.xray.chanels: Extra inputs are not permitted" in message


def test_split_needs_exactly_one_of_column_or_recipe_and_fractions_sum_to_one():
    assert "split: give exactly one of 'column' or 'recipe'" in _error(
        split={"column": "s", "recipe": {}}
    )
    message = _error(split={"recipe": {"train": 0.5, "val": 0.1, "test": 0.1}})
    assert "split.recipe: train + val + test must be 1, got 0.7" in message


def test_unknown_target_kind_and_missing_id_column():
    assert "targets.y: unknown kind 'grade'" in _error(
        targets={"y": {"kind": "grade", "column": "y"}}
    )
    assert "id_column: Field required" in _error(id_column=None)


def test_excluded_column_used_as_input_is_an_error():
    message = _error(exclude_columns=["xray_path"])
    assert "column 'xray_path' is in exclude_columns but modality 'xray' uses it" in message


def test_tabular_needs_columns():
    message = _error(modalities={"labs": {"kind": "tabular"}})
    assert "modalities.labs: declare at least one 'numeric' or 'categorical' column" in message


def test_load_spec_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="cohort spec not found; give the path to a YAML file"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping at the top level, got list"):
        load_spec(listed)


# ------------------------------------------------------------------ loading never tracebacks


def _load_error(tmp_path, content: bytes) -> str:
    path = tmp_path / "cohort.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return str(err.value)


def test_spec_that_is_not_utf8_names_the_byte(tmp_path):
    message = _load_error(tmp_path, b"name: demo\nmanifest: caf\xe9.csv\n")
    assert "cohort.yaml: the cohort spec is not UTF-8 text: byte 24 (line 2, value 0xe9)" in message


def test_utf8_spec_with_a_byte_order_mark_loads(tmp_path):
    import yaml

    path = tmp_path / "cohort.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(BASE).encode())
    assert load_spec(path).id_column == "id"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-13-45", "line 2: '2026-13-45' cannot be read as a date (month must be in 1..12)"),
        ("!!timestamp tomorrow", "line 2: 'tomorrow' cannot be read as a date"),
        ("!!int 1.5", "line 2: '1.5' cannot be read as an integer"),
    ],
)
def test_yaml_value_that_cannot_be_built_names_its_line(tmp_path, value, expected):
    message = _load_error(tmp_path, f"name: demo\nmanifest: {value}\n".encode())
    assert f"cohort.yaml: not valid YAML: {expected}" in message
    assert "quote it if it is meant as text" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the cohort spec is empty"),
        (b"# only a comment\n", "the cohort spec is empty"),
        (b"just a word\n", "expected a mapping at the top level, got str"),
        (b"42\n", "expected a mapping at the top level, got int"),
        (b"1: a\nmanifest: m.csv\n", "top-level keys must be names, got 1"),
    ],
)
def test_yaml_that_is_not_a_mapping_is_a_spec_error(tmp_path, content, expected):
    assert expected in _load_error(tmp_path, content)


def test_a_folder_is_not_a_spec(tmp_path):
    with pytest.raises(SpecError, match="is a folder; give the path to the cohort spec YAML file"):
        load_spec(tmp_path)


@pytest.mark.parametrize(
    ("modality", "expected"),
    [
        (
            {"kind": "image", "columns": ["x"], "size": [0, 8]},
            "modalities.m.size: expected two positive integers (height, width), got [0, 8]",
        ),
        (
            {"kind": "image", "columns": ["x"], "size": [-4, 8]},
            "modalities.m.size: expected two positive integers (height, width), got [-4, 8]",
        ),
        (
            {"kind": "volume", "column": "c", "size": [8, 0, 8]},
            "modalities.m.size: expected three positive integers, got [8, 0, 8]",
        ),
        (
            {"kind": "volume", "column": "c", "spacing": [1, -1, 1]},
            "modalities.m.spacing: spacing: expected three positive numbers",
        ),
        (
            {"kind": "volume", "column": "c", "window": [400, -1000]},
            "modalities.m.window: expected [low, high] with low < high, got [400.0, -1000.0]",
        ),
        (
            {"kind": "volume", "column": "c", "window": [float("-inf"), 0]},
            "modalities.m.window.0: Input should be a finite number",
        ),
        (
            {"kind": "volume", "column": "c", "spacing": [float("nan"), 1, 1]},
            "modalities.m.spacing.0: Input should be a finite number",
        ),
        (
            {"kind": "series", "column": "c", "channels": ["hr"], "bin_width": 0},
            "modalities.m.bin_width: Input should be greater than 0",
        ),
        (
            {"kind": "image", "columns": "x", "size": "big"},
            "modalities.m.size: Input should be a valid tuple",
        ),
    ],
)
def test_bad_sizes_spacings_and_windows_name_their_field(modality, expected):
    assert expected in _error(modalities={"m": modality})


def test_yaml_nan_and_inf_settings_are_refused(tmp_path):
    import yaml

    text = yaml.safe_dump({**BASE, "split": {"recipe": {"train": 0.7, "seed": 0}}})
    text = text.replace("train: 0.7", "train: .nan")
    message = _load_error(tmp_path, text.encode())
    assert "split.recipe.train: Input should be a finite number" in message
