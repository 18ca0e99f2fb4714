"""What an element is and how it is removed: exactly as real data goes missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.serialize import TabularToText
from polymodal.data.spec import ImageModality, TextModality, VolumeModality, load_spec
from polymodal.explain import occlusions, split_sentences, text_sentences
from polymodal.explain.elements import text_without

NOTE = "Seen in clinic. The weather was rainy. Follow up in 3 weeks."


@pytest.fixture(scope="module")
def prep(key_cohort: Path) -> Preprocessor:
    return Preprocessor.fit(load_cohort(load_spec(key_cohort)))


def no_files(cell: str, template: str | None) -> Path:
    raise AssertionError("a column text reads no file")


def test_free_text_splits_on_sentence_punctuation_and_keeps_every_character() -> None:
    text = "Dose 3.5 mg daily.  Stable?\nNo fever; afebrile"
    pieces = split_sentences(text)
    assert "".join(pieces) == text
    assert [p.strip() for p in pieces] == ["Dose 3.5 mg daily.", "Stable?", "No fever;", "afebrile"]


def test_removing_a_sentence_removes_exactly_its_tokens(prep: Preprocessor) -> None:
    sentences = text_sentences(prep, "note", {"note": NOTE}, no_files)
    assert [label for label, _ in sentences] == ["s1", "s2", "s3"]
    full = prep.transform_text("note", NOTE)["input_ids"].tolist()
    elements = occlusions(prep, "note", prep.transform_text("note", NOTE), sentences)
    by_name = {o.element.name: o for o in elements}
    assert by_name["note"].fields is None  # the whole modality: unavailable
    for index, (label, sentence) in enumerate(sentences):
        own = prep.transform_text("note", sentence.strip())["input_ids"].tolist()[1:]  # no [CLS]
        before = "".join(s for _, s in sentences[:index]).strip()
        start = len(prep.transform_text("note", before)["input_ids"]) if before else 1
        assert full[start : start + len(own)] == own
        occluded = by_name[f"note.{label}"].fields["input_ids"].tolist()
        assert occluded == full[:start] + full[start + len(own) :]
    assert text_without(sentences, 1) == "Seen in clinic. Follow up in 3 weeks."


def test_a_clinical_sentence_removed_is_the_text_with_that_value_blank() -> None:
    cfg = TextModality(
        kind="text",
        from_columns=["age", "smoking", "bmi"],
        sentences={"age": "The patient is {value:.0f} years old."},
    )
    prep = Preprocessor({"clinical": cfg}, {}, {})
    cells = {"age": "68", "smoking": "current", "bmi": "27.5"}
    sentences = text_sentences(prep, "clinical", cells, no_files)
    assert [label for label, _ in sentences] == ["age", "smoking", "bmi"]
    serializer = TabularToText.from_modality(cfg)
    for index, (column, _) in enumerate(sentences):
        assert text_without(sentences, index) == serializer({**cells, column: ""}).text


def test_a_field_removed_is_encoded_as_its_blank_cell(prep: Preprocessor) -> None:
    cells = {"key": "0.7", "noise_a": "-1.2", "noise_b": "0.1", "colour": "red"}
    fields = prep.transform_tabular("labs", cells)
    elements = {o.element.name: o for o in occlusions(prep, "labs", fields)}
    assert set(elements) == {"labs", "labs.key", "labs.noise_a", "labs.noise_b", "labs.colour"}
    for column in ("key", "noise_a", "noise_b", "colour"):
        blank = prep.transform_tabular("labs", {**cells, column: ""})
        occluded = elements[f"labs.{column}"].fields
        for name, value in blank.items():
            assert torch.equal(occluded[name], value), (column, name)
    # A value already missing is no element; removing the last value makes the modality absent.
    only_key = prep.transform_tabular("labs", {"key": "0.7"})
    last = {o.element.name: o for o in occlusions(prep, "labs", only_key)}
    assert set(last) == {"labs", "labs.key"} and last["labs.key"].fields is None


def test_an_image_region_is_replaced_by_the_view_mean() -> None:
    cfg = ImageModality(kind="image", columns=["front", "side"], size=(8, 12), channels=1)
    prep = Preprocessor({"xray": cfg}, {}, {})
    pixels = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 1, 8, 12)
    fields = {"pixels": pixels, "view_mask": torch.tensor([True, False])}
    regions = [o for o in occlusions(prep, "xray", fields) if o.element.kind == "region"]
    assert len(regions) == 16  # 4 × 4 over the present view only
    first = regions[0]
    assert first.element.name == "xray.front.r0c0"
    changed = first.fields["pixels"] != pixels
    assert changed[0, 0, :2, :3].all() and not changed[0, 0, 2:].any()
    assert torch.allclose(first.fields["pixels"][0, 0, 0, 0], pixels[0].mean())
    assert torch.equal(pixels, torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 1, 8, 12))


def test_a_volume_has_two_by_four_by_four_regions() -> None:
    cfg = VolumeModality(kind="volume", column="ct", size=[4, 8, 8])
    prep = Preprocessor({"ct": cfg}, {}, {})
    voxels = torch.rand(1, 4, 8, 8)
    regions = [
        o
        for o in occlusions(prep, "ct", {"voxels": voxels, "spacing": torch.ones(3)})
        if o.element.kind == "region"
    ]
    assert len(regions) == 32
    last = regions[-1]
    assert last.element.name == "ct.d1h3w3"
    assert torch.allclose(last.fields["voxels"][0, 2:, 6:, 6:], voxels.mean().expand(2, 2, 2))
    assert torch.equal(last.fields["voxels"][0, :2], voxels[0, :2])
