"""Clinical data to text: templates, missing values, categories, spec checks, the dataset path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.serialize import TabularToText
from polymodal.data.spec import parse_spec
from polymodal.errors import ReadError, SpecError
from polymodal.validation.validate import validate_cohort

SENTENCES = {
    "age": "The patient is {value:.0f} years old.",
    "smoking": {"current": "Current smoker.", "former": "Former smoker.", "never": "Never smoked."},
    "diabetes": {1: "Has diabetes.", 0: ""},
}
COLUMNS = ["age", "smoking", "pack_years", "diabetes"]


def serializer() -> TabularToText:
    return TabularToText(COLUMNS, SENTENCES, missing_values=["NA", "unknown"])


def test_templates_categories_and_default_sentence() -> None:
    row = {"age": "68", "smoking": "current", "pack_years": "37.5", "diabetes": "1"}
    out = serializer()(row)
    assert out.text == (
        "The patient is 68 years old. Current smoker. The pack years is 37.5. Has diabetes."
    )
    assert out.elements == [
        ("age", "The patient is 68 years old."),
        ("smoking", "Current smoker."),
        ("pack_years", "The pack years is 37.5."),
        ("diabetes", "Has diabetes."),
    ]
    # A category the mapping lacks gets the default sentence; an empty sentence says nothing.
    out = serializer()({"age": "70.4", "smoking": "occasional", "diabetes": "0"})
    assert out.text == "The patient is 70 years old. The smoking is occasional."


def test_missing_values_leave_their_sentence_out() -> None:
    out = serializer()({"age": " ", "smoking": "unknown", "pack_years": "NA"})
    assert out.text == "" and out.elements == []
    out = serializer()({"age": "55", "smoking": "NA", "pack_years": "", "diabetes": "1"})
    assert [column for column, _ in out.elements] == ["age", "diabetes"]


def test_value_that_does_not_fit_its_template() -> None:
    row = {"age": "old", "smoking": "never"}
    with pytest.raises(ReadError, match=r"column 'age': 'old' is not a number.*':\.0f'"):
        serializer()(row)
    bad: list[tuple[str, str]] = []
    assert serializer()(row, bad).text == "Never smoked."
    assert bad == [("age", "'old' is not a number, but the template formats it with ':.0f'")]


def spec_data(sentences: dict, **text_options) -> dict:
    return {
        "manifest": "manifest.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"label": {"kind": "binary", "column": "label"}},
        "modalities": {
            "clinical": {
                "kind": "text",
                "from_columns": COLUMNS,
                "sentences": sentences,
                "max_tokens": 32,
                **text_options,
            }
        },
    }


@pytest.mark.parametrize(
    ("sentences", "options", "message"),
    [
        ({"age": "Aged {years}."}, {}, r"sentences: .*column 'age'.*uses \{years\}"),
        ({"age": "Aged {value."}, {}, r"sentences: .*column 'age'.*is malformed"),
        ({"age": "Aged {value:.0q}."}, {}, r"sentences: .*column 'age'.*Unknown format code"),
        ({"smoking": {"current": 3}}, {}, r"sentences: .*category 'current' must be text"),
        ({"weight": "{value} kg"}, {}, r"sentences for \['weight'\], which are not in"),
        ({}, {"column": "note"}, "give exactly one of 'column' or 'from_columns'"),
        ({}, {"source": "file"}, "'from_columns' reads manifest cells"),
    ],
)
def test_bad_templates_are_spec_errors_naming_the_field(sentences, options, message) -> None:
    with pytest.raises(SpecError, match=r"modalities\.clinical"):
        parse_spec(spec_data(sentences, **options))
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_data(sentences, **options))


def test_sentences_need_from_columns() -> None:
    data = spec_data({})
    data["modalities"]["clinical"] = {"kind": "text", "column": "note", "missing_values": ["-"]}
    with pytest.raises(SpecError, match="'sentences' and 'missing_values' need 'from_columns'"):
        parse_spec(data)
    # A spec written back out (every field, defaults included) reads again.
    data = spec_data(SENTENCES)
    data["modalities"]["note"] = {"kind": "text", "column": "note"}
    spec = parse_spec(data)
    again = parse_spec({k: v for k, v in spec.model_dump(mode="json").items() if k != "base_dir"})
    assert again.modalities == spec.modalities


def write_cohort(root: Path):
    rows = [
        ("a", "train", "1", "68", "current", "37.5", "1"),
        ("b", "train", "0", "45", "never", "", "0"),
        ("c", "train", "1", "", "former", "12", ""),
        ("d", "train", "0", "", "", "", ""),  # no clinical data at all
        ("e", "val", "1", "old", "never", "5", "0"),  # 'old' does not fit {value:.0f}
    ]
    columns = ["id", "split", "label", *COLUMNS]
    pd.DataFrame(rows, columns=columns).to_csv(root / "manifest.csv", index=False)
    # Four training patients: min_count 1 keeps the words of each one's sentences.
    return load_cohort(parse_spec(spec_data(SENTENCES, min_count=1), base_dir=root))


def test_dataset_gives_text_tokens_from_tabular_columns(tmp_path: Path) -> None:
    cohort = write_cohort(tmp_path)
    prep = Preprocessor.fit(cohort)
    assert prep.input_info("clinical")["kind"] == "text"
    dataset = CohortDataset(cohort, prep, split=None)
    first = dataset[0]
    assert first["available"]["clinical"]
    ids = first["inputs"]["clinical"]["input_ids"]
    expected = prep.transform_text(
        "clinical",
        "The patient is 68 years old. Current smoker. The pack years is 37.5. Has diabetes.",
    )["input_ids"]
    assert torch.equal(ids, expected) and (ids != 1).all()  # every word is in the vocabulary
    assert not dataset[3]["available"]["clinical"]  # nothing to say: unavailable, not ""
    # The value that does not fit its template is left out and reported, the rest is kept.
    fifth = dataset[4]
    assert fifth["available"]["clinical"]
    assert [(i.row_id, i.column) for i in dataset.issues] == [("e", "age")]
    assert "the sentence is left out" in dataset.issues[0].reason
    strict = CohortDataset(cohort, prep, split="val", on_error="fail")
    with pytest.raises(ReadError, match=r"row 'e', 'clinical'.*column 'age': 'old' is not"):
        strict[0]


def test_validate_counts_clinical_text_and_names_bad_values(tmp_path: Path) -> None:
    report = validate_cohort(write_cohort(tmp_path), on_error="skip-modality")
    assert report.availability["clinical"] == {"train": 3, "val": 0, "test": 0}
    assert [(p.row_id, p.column) for p in report.problems if p.severity == "error"] == [
        ("e", "age")
    ]
