"""Preprocessing is fitted on the training split only and survives a JSON round trip."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import modalities
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor, event_time_bin
from polymodal.data.spec import parse_spec
from polymodal.errors import ModelError, ReadError, SpecError


def cohort_from(root: Path, columns: dict[str, list[str]], *, targets=None, modalities=None):
    """A cohort from column lists (plus ``id`` and ``split``, given in ``columns``)."""
    pd.DataFrame(columns).to_csv(root / "manifest.csv", index=False)
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "id",
            "split": {"column": "split"},
            "targets": targets or {"y": {"kind": "binary", "column": "y"}},
            "modalities": modalities
            or {"labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]}},
        },
        base_dir=root,
    )
    return load_cohort(spec)


SPLIT = ["train", "train", "train", "val", "val"]


def tabular_cohort(root: Path, **labs):
    return cohort_from(
        root,
        {
            "id": list("abcde"),
            "split": SPLIT,
            "y": ["1", "0", "1", "0", "1"],
            "age": ["20", "40", "", "1000", ""],
            "sex": ["F", "M", "F", "X", "unknown"],
        },
        modalities={
            "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"], **labs}
        },
    )


def test_value_only_in_val_maps_to_unknown(tmp_path):
    prep = Preprocessor.fit(tabular_cohort(tmp_path))
    assert prep.input_info("labs")["categorical"] == {"sex": 4}  # missing, unknown, F, M
    encode = lambda sex: prep.transform_tabular("labs", {"age": "30", "sex": sex})["categorical"]  # noqa: E731
    assert encode("F").tolist() == [2] and encode("M").tolist() == [3]
    assert encode("X").tolist() == [1]  # seen only in val: the unknown bucket
    assert encode("unknown").tolist() == [0] and encode("").tolist() == [0]  # missing markers


def test_numeric_scaling_uses_train_statistics(tmp_path):
    prep = Preprocessor.fit(tabular_cohort(tmp_path))
    # Training ages 20 and 40 (one missing): mean 30, std 10; the val outlier 1000 is not seen.
    fields = prep.transform_tabular("labs", {"age": "1000", "sex": "F"})
    assert fields["numeric"].tolist() == pytest.approx([97.0])
    assert prep.transform_tabular("labs", {"age": "40", "sex": "F"})["numeric"].tolist() == [1.0]


def test_missing_numeric_stays_missing(tmp_path):
    prep = Preprocessor.fit(tabular_cohort(tmp_path))
    for label in ("0", "1"):
        fields = prep.transform_tabular("labs", {"age": "", "sex": "F", "y": label})
        assert fields["numeric"].tolist() == [0.0] and fields["numeric_missing"].tolist() == [True]
    with pytest.raises(ReadError, match="column 'age': 'abc' is not a number"):
        prep.transform_tabular("labs", {"age": "abc"})
    bad: list = []
    fields = prep.transform_tabular("labs", {"age": "abc"}, bad_values=bad)
    assert fields["numeric_missing"].tolist() == [True] and bad[0][0] == "age"


def test_constant_column_gets_std_one_and_rare_categories_are_unknown(tmp_path):
    cohort = cohort_from(
        tmp_path,
        {
            "id": list("abcde"),
            "split": SPLIT,
            "y": ["1", "0", "1", "0", "1"],
            "age": ["7", "7", "7", "8", "9"],
            "sex": ["F", "F", "M", "M", "M"],
        },
        modalities={
            "labs": {
                "kind": "tabular",
                "numeric": ["age"],
                "categorical": ["sex"],
                "min_category_count": 2,
            }
        },
    )
    prep = Preprocessor.fit(cohort)
    assert prep.transform_tabular("labs", {"age": "9"})["numeric"].tolist() == [2.0]
    assert prep.transform_tabular("labs", {"sex": "M"})["categorical"].tolist() == [1]
    assert prep.input_info("labs")["categorical"] == {"sex": 3}


def test_unparsable_training_number_names_row_and_column(tmp_path):
    cohort = cohort_from(
        tmp_path,
        {"id": list("ab"), "split": ["train", "train"], "y": ["1", "0"], "age": ["5", "five"]},
        modalities={"labs": {"kind": "tabular", "numeric": ["age"]}},
    )
    with pytest.raises(ReadError, match=r"column 'age'.*'b' \('five'\)"):
        Preprocessor.fit(cohort)


def text_cohort(root: Path, **note):
    return cohort_from(
        root,
        {
            "id": list("abcde"),
            "split": SPLIT,
            "y": ["1", "0", "1", "0", "1"],
            "note": ["Nodule, RIGHT lung.", "no nodule", "Effusion!", "pneumothorax", ""],
        },
        # Every word is in one patient's note: min_count 1 keeps them all.
        modalities={"note": {"kind": "text", "column": "note", "min_count": 1, **note}},
    )


def test_word_tokenizer_is_fitted_on_train_texts(tmp_path):
    prep = Preprocessor.fit(text_cohort(tmp_path, max_tokens=4))
    info = prep.input_info("note")
    assert info["pad_id"] == 0 and info["tokenizer"] is None and info["max_tokens"] == 4
    tokenizer = modalities.get("text").tokenizer(prep.fitted("note"))
    assert [tokenizer.id_to_token(i) for i in range(3)] == ["[PAD]", "[UNK]", "[CLS]"]
    ids = prep.transform_text("note", "NODULE, right")["input_ids"].tolist()
    assert ids == [2, *[tokenizer.token_to_id(t) for t in ("nodule", ",", "right")]]
    unknown = prep.transform_text("note", "pneumothorax")["input_ids"].tolist()
    assert unknown == [2, 1]  # a word seen only in val is [UNK]
    long = prep.transform_text("note", "no nodule no nodule no nodule")
    assert long["input_ids"].shape == (4,) and long["attention_mask"].all()


def test_word_tokenizer_keeps_the_most_frequent_words(tmp_path):
    words = [f"w{i}" for i in range(40)]
    cohort = cohort_from(
        tmp_path,
        {
            "id": ["a", "b"],
            "split": ["train", "train"],
            "y": ["1", "0"],
            "note": [" ".join(words), " ".join(words[:5])],
        },
        modalities={"note": {"kind": "text", "column": "note", "vocab_size": 16, "min_count": 1}},
    )
    prep = Preprocessor.fit(cohort)
    assert prep.input_info("note")["vocab_size"] == 16
    assert prep.transform_text("note", "w0")["input_ids"].tolist()[1] != 1  # frequent: kept


def test_local_hugging_face_tokenizer_folder(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "nodule": 4, "right": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]"
    )
    fast.save_pretrained(tmp_path / "tok")
    prep = Preprocessor.fit(text_cohort(tmp_path, tokenizer="tok", max_tokens=4))
    info = prep.input_info("note")
    assert info["tokenizer"] == str((tmp_path / "tok").resolve())
    assert info["vocab_size"] == 6 and info["pad_id"] == 0
    assert prep.transform_text("note", "nodule right x")["input_ids"].tolist() == [4, 5, 1]
    with pytest.raises(SpecError, match=r"tokenizer folder .*missing.* not found"):
        Preprocessor.fit(text_cohort(tmp_path, tokenizer="missing"))


def test_save_load_round_trip_gives_identical_encodings(tmp_path):
    cohort = cohort_from(
        tmp_path,
        {
            "id": list("abcde"),
            "split": SPLIT,
            "y": ["nv", "mel", "bcc", "nv", "mel"],
            "age": ["20", "41.5", "", "33", "x"],
            "sex": ["F", "M", "F", "X", ""],
            "note": ["Nodule right.", "no nodule", "", "effusion", "nodule"],
        },
        targets={"y": {"kind": "multiclass", "column": "y", "class_weights": "balanced"}},
        modalities={
            "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]},
            "note": {"kind": "text", "column": "note"},
        },
    )
    prep = Preprocessor.fit(cohort)
    path = prep.save(tmp_path / "state" / "preprocessing.json")
    loaded = Preprocessor.load(path)
    assert loaded.modalities == ["labs", "note"] and loaded.targets == ["y"]
    assert loaded.fingerprint() == prep.fingerprint()
    assert loaded.input_info("note") == prep.input_info("note")
    assert loaded.target_info("y") == prep.target_info("y")
    for row in cohort.frame.to_dict("records"):
        bad_a, bad_b = [], []
        a = prep.transform_tabular("labs", row, bad_a)
        b = loaded.transform_tabular("labs", row, bad_b)
        assert all(torch.equal(a[k], b[k]) for k in a) and bad_a == bad_b
        if row["note"]:
            assert torch.equal(
                prep.transform_text("note", row["note"])["input_ids"],
                loaded.transform_text("note", row["note"])["input_ids"],
            )
        assert torch.equal(prep.encode_target("y", row), loaded.encode_target("y", row))


def test_state_file_is_json_and_never_pickle(tmp_path):
    prep = Preprocessor.fit(text_cohort(tmp_path))
    path = prep.save(tmp_path / "preprocessing.json")
    raw = path.read_bytes()
    assert raw.startswith(b"{") and raw.isascii()
    data = json.loads(raw)
    assert data["format"] == "polymodal-preprocessing"
    assert isinstance(data["modalities"]["note"]["state"]["tokenizer_json"], str)
    pickled = tmp_path / "pickled.json"
    pickled.write_bytes(pickle.dumps(data))
    with pytest.raises(ModelError, match="not a JSON preprocessing state"):
        Preprocessor.load(pickled)
    other = tmp_path / "other.json"
    other.write_text('{"weights": 1}')
    with pytest.raises(ModelError, match="not a polymodal preprocessing state"):
        Preprocessor.load(other)


def test_target_encodings(tmp_path):
    columns = {
        "id": list("abcdef"),
        "split": ["train", "train", "train", "train", "val", "val"],
        "dx": ["nv", "mel", "nv", "nv", "bcc", "mel"],
        "y": ["yes", "no", "no", "yes", "maybe", ""],
        "los": ["2", "4", "", "6", "10", "3"],
        "time": ["5", "10", "20", "40", "7", "1"],
        "event": ["1", "1", "0", "1", "0", "1"],
        "age": ["1", "2", "3", "4", "5", "6"],
    }
    targets = {
        "dx": {"kind": "multiclass", "column": "dx", "class_weights": "balanced"},
        "y": {"kind": "binary", "column": "y", "positive": "yes"},
        "los": {"kind": "regression", "column": "los"},
        "surv": {"kind": "time_to_event", "time_column": "time", "event_column": "event"},
        "cox": {
            "kind": "time_to_event",
            "time_column": "time",
            "event_column": "event",
            "loss": "cox",
        },
    }
    modalities = {"labs": {"kind": "tabular", "numeric": ["age"]}}
    prep = Preprocessor.fit(cohort_from(tmp_path, columns, targets=targets, modalities=modalities))
    dx = prep.target_info("dx")
    assert dx["classes"] == ["mel", "nv"] and dx["n_outputs"] == 2
    assert dx["class_weights"] == pytest.approx([2.0, 2 / 3])  # 4 / (2 * count)
    assert prep.encode_target("dx", {"dx": "nv"}).item() == 1
    with pytest.raises(ReadError, match="'bcc' is not a class seen in training"):
        prep.encode_target("dx", {"dx": "bcc"})
    assert prep.target_info("y")["classes"] == ["no", "yes"]
    assert prep.encode_target("y", {"y": "no"}).item() == 0.0
    assert prep.encode_target("y", {"y": ""}) is None
    with pytest.raises(ReadError, match="'maybe' is neither the positive value"):
        prep.encode_target("y", {"y": "maybe"})
    los = prep.target_info("los")
    assert los["mean"] == pytest.approx(4.0) and los["std"] == pytest.approx(np.std([2, 4, 6]))
    assert prep.encode_target("los", {"los": "4"}).item() == pytest.approx(0.0)
    surv = prep.target_info("surv")
    # Training event times 5, 10, 40 (20 is censored): bins are their quantiles, last = max.
    assert surv["loss"] == "discrete" and surv["bins"][-1] == 40.0
    assert surv["n_outputs"] == len(surv["bins"]) and surv["bins"] == sorted(set(surv["bins"]))
    assert prep.encode_target("surv", {"time": "7", "event": "0"}).tolist() == [7.0, 0.0]
    assert prep.target_info("cox")["n_outputs"] == 1 and prep.target_info("cox")["bins"] is None
    edges = torch.tensor([5.0, 10.0])
    assert event_time_bin(torch.tensor([5.0, 6.0, 10.0, 11.0]), edges).tolist() == [0, 1, 1, 2]


def test_binary_target_needs_one_negative_value(tmp_path):
    columns = {"id": list("abc"), "split": ["train"] * 3, "y": ["1", "0", "2"], "age": ["1"] * 3}
    modalities = {"labs": {"kind": "tabular", "numeric": ["age"]}}
    with pytest.raises(SpecError, match=r"targets.y: column 'y' holds \['0', '2'\]"):
        Preprocessor.fit(cohort_from(tmp_path, columns, modalities=modalities))


def series_cohort(root: Path, **vitals):
    frames = {
        # time: 0, 0.5, 1.2, 3.7 (bin width 1 -> bins 0, 0, 1, 3; bin 2 is empty)
        "a.csv": {"t": [0, 0.5, 1.2, 3.7], "hr": [60, 70, "", 90], "sbp": [100, "", "", 140]},
        "b.csv": {"t": [10, 12], "hr": [80, 100], "sbp": [120, 140]},
        "c.csv": {"t": [0, 1], "hr": [5000, 5000], "sbp": [0, 0]},  # val only: never fitted
    }
    for name, frame in frames.items():
        pd.DataFrame(frame).to_csv(root / name, index=False)
    return cohort_from(
        root,
        {
            "id": list("abcd"),
            "split": ["train", "train", "val", "train"],
            "y": ["1", "0", "1", "0"],
            "vitals": ["a.csv", "b.csv", "c.csv", "missing.csv"],
        },
        modalities={
            "vitals": {
                "kind": "series",
                "column": "vitals",
                "time_column": "t",
                "channels": ["hr", "sbp"],
                **vitals,
            }
        },
    )


def test_series_statistics_come_from_training_files_only(tmp_path):
    prep = Preprocessor.fit(series_cohort(tmp_path))
    state = prep.state["modality:vitals"]
    assert state["mean"] == pytest.approx([80.0, 125.0])  # hr 60,70,90,80,100; sbp 100,140,120,140
    assert state["std"] == pytest.approx(
        [np.std([60, 70, 90, 80, 100]), np.std([100, 140, 120, 140])]
    )
    # The unreadable training file is skipped and listed, not silently dropped.
    assert [(i.row_id, i.modality) for i in prep.fit_issues] == [("d", "vitals")]
    assert "missing.csv" in prep.fit_issues[0].reason


def test_series_binning_and_truncation(tmp_path):
    prep = Preprocessor.fit(series_cohort(tmp_path, bin_width=1.0, max_steps=3))
    times = np.array([0, 0.5, 1.2, 3.7])
    values = np.array([[60, 100], [70, np.nan], [np.nan, np.nan], [90, 140]], dtype=float)
    out = prep.transform_series("vitals", times, values)
    # Bins 0..3, the last three kept: bin 1 (nothing measured), bin 2 (empty), bin 3.
    assert out["step_mask"].tolist() == [True, True, True]
    assert out["observed"].tolist() == [[False, False], [False, False], [True, True]]
    time_scale = prep.state["modality:vitals"]["time_scale"]
    assert out["times"].tolist() == pytest.approx([1 / time_scale, 2 / time_scale, 3 / time_scale])
    std = prep.state["modality:vitals"]["std"]
    assert out["values"][2].tolist() == pytest.approx([10 / std[0], 15 / std[1]])
    full = Preprocessor.fit(series_cohort(tmp_path, bin_width=1.0)).transform_series(
        "vitals", times, values
    )
    # Bin 0 holds 60 then 70: the last measured hr (70) and the last measured sbp (100).
    assert full["observed"][0].tolist() == [True, True]
    std = prep.state["modality:vitals"]["std"]
    assert full["values"][0].tolist() == pytest.approx([-10 / std[0], -25 / std[1]])
    raw = Preprocessor.fit(series_cohort(tmp_path, max_steps=2)).transform_series(
        "vitals", times, values
    )
    assert raw["observed"].tolist() == [[False, False], [True, True]]  # the last 2 raw steps


def test_fingerprint_tracks_settings_per_modality(tmp_path):
    base = Preprocessor.fit(series_cohort(tmp_path))
    again = Preprocessor.fit(series_cohort(tmp_path))
    binned = Preprocessor.fit(series_cohort(tmp_path, bin_width=2.0))
    assert base.fingerprint("vitals") == again.fingerprint("vitals")
    assert base.fingerprint("vitals") != binned.fingerprint("vitals")
    assert base.fingerprint() != binned.fingerprint()


@pytest.mark.shared_data
def test_ham10000_metadata_is_fitted_on_its_training_split(shared_data):
    spec = parse_spec(
        {
            "manifest": "metadata.csv",
            "id_column": "image_id",
            "group_column": "lesion_id",
            "split": {"column": "split"},
            "targets": {"dx": {"kind": "multiclass", "column": "dx", "class_weights": "balanced"}},
            "modalities": {
                "meta": {"kind": "tabular", "numeric": ["age"], "categorical": ["sex"]},
            },
            "exclude_columns": ["dx_type"],
        },
        base_dir=shared_data / "ham10000",
    )
    cohort = load_cohort(spec)
    prep = Preprocessor.fit(cohort)
    dx = prep.target_info("dx")
    assert dx["classes"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    # nv is about two thirds of the training rows: the smallest balanced weight.
    assert min(dx["class_weights"]) == dx["class_weights"][dx["classes"].index("nv")] < 0.3
    train = cohort.rows("train")
    ages = pd.to_numeric(train["age"], errors="coerce")
    assert prep.state["modality:meta"]["mean"][0] == pytest.approx(ages.mean())
    assert prep.state["modality:meta"]["vocabularies"]["sex"] == ["female", "male"]
    fields = prep.transform_tabular("meta", {"age": "", "sex": "unknown"})
    assert fields["numeric_missing"].tolist() == [True] and fields["categorical"].tolist() == [0]
