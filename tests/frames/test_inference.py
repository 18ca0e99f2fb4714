"""What polymodal.fit guesses from a DataFrame's columns, and the text it reads them as."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.errors import SpecError
from polymodal.frames.spec_from_frame import spec_from_frame, with_row_ids
from polymodal.frames.text_table import as_text_table
from polymodal.modalities.inference import guess_modalities, guess_modality
from polymodal.targets.inference import guess_target


def text(values) -> pd.Series:
    return as_text_table(pd.DataFrame({"c": values}))["c"]


def test_whole_numbers_with_gaps_read_as_integers() -> None:
    table = as_text_table(
        pd.DataFrame({"n": [1, None, 3], "x": [0.5, np.nan, 2.0], "b": [True, False, None]})
    )
    assert table["n"].tolist() == ["1", "", "3"]
    assert table["x"].tolist() == ["0.5", "", "2.0"]
    assert table["b"].tolist() == ["True", "False", ""]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1, 0], {"kind": "binary", "positive": "1"}),
        (["no", "yes", "no"], {"kind": "binary", "positive": "yes"}),
        (["benign", "malignant"], {"kind": "binary", "positive": "malignant"}),
        (["mel", "nv", "bcc", "nv"], {"kind": "multiclass", "classes": ["bcc", "mel", "nv"]}),
        ([3, 1, 2, 10, 2], {"kind": "multiclass", "classes": ["1", "2", "3", "10"]}),
        ([0.5, 1.25, 3.0, 2.5], {"kind": "regression"}),
    ],
)
def test_the_target_kind_follows_the_labels(values, expected) -> None:
    section = guess_target("y", text(values))
    assert section == {"column": "y", **expected}


def test_a_constant_target_is_refused_with_what_to_do() -> None:
    with pytest.raises(SpecError, match=r"'y' holds 1 distinct label.*kind"):
        guess_target("y", text(["a", "a", ""]))


def test_file_columns_become_images_or_volumes_and_long_text_a_note() -> None:
    table = as_text_table(
        pd.DataFrame(
            {
                "xray": ["a/1.png", "a/2.PNG", ""],
                "ct": ["c/1.nii.gz", "c/2.nii.gz", "c/3.nii.gz"],
                "note": ["a long free-text clinical note about the patient today"] * 3,
                "age": [50, 60, 70],
                "site": ["x", "y", "x"],
            }
        )
    )
    assert guess_modality("x", ["xray"], table) == {"kind": "image", "columns": ["xray"]}
    assert guess_modalities(table, list(table.columns)) == {
        "xray": {"kind": "image", "columns": ["xray"]},
        "ct": {"kind": "volume", "column": "ct"},
        "note": {"kind": "text", "column": "note"},
        "clinical": {"kind": "tabular", "numeric": ["age"], "categorical": ["site"]},
    }
    with pytest.raises(SpecError, match=r"'mixed'.*own modality"):
        guess_modality("mixed", ["xray", "age"], table)
    with pytest.raises(SpecError, match=r"'absent'.*not in the DataFrame"):
        guess_modality("m", ["absent"], table)


def test_the_spec_keeps_given_sections_and_holds_out_validation_groups() -> None:
    frame, id_column = with_row_ids(pd.DataFrame({"age": [1, 2, 3], "y": [0, 1, 0]}), None)
    assert id_column == "row_id" and frame["row_id"].tolist() == ["0", "1", "2"]
    spec = spec_from_frame(
        as_text_table(frame),
        {"y": {"kind": "binary", "positive": "0"}},
        {"clinical": {"kind": "tabular", "numeric": ["age"]}},
        id_column=id_column,
    )
    assert spec["targets"] == {"y": {"column": "y", "kind": "binary", "positive": "0"}}
    assert spec["modalities"] == {"clinical": {"kind": "tabular", "numeric": ["age"]}}
    assert spec["split"]["recipe"]["val"] > 0 and spec["split"]["recipe"]["test"] == 0
