"""collate_samples: padding masks, availability stacking, stand-ins of the right shape."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.collate import collate_samples
from polymodal.errors import PolymodalError


def sample(sample_id: str, tokens: int, steps: int, *, note: bool = True, label=None) -> dict:
    """A hand-made sample: a text of ``tokens`` tokens and a series of ``steps`` steps."""
    input_ids = torch.arange(2, 2 + tokens) if note else torch.zeros(1, dtype=torch.int64)
    return {
        "id": sample_id,
        "group": f"p{sample_id}",
        "inputs": {
            "note": {
                "input_ids": input_ids,
                "attention_mask": torch.full((len(input_ids),), note, dtype=torch.bool),
            },
            "vitals": {
                "values": torch.ones(steps, 2),
                "observed": torch.ones(steps, 2, dtype=torch.bool),
                "times": torch.linspace(0, 1, steps),
                "step_mask": torch.ones(steps, dtype=torch.bool),
            },
            "xray": {
                "pixels": torch.full((2, 1, 4, 4), float(tokens)),
                "view_mask": torch.tensor([True, False]),
            },
        },
        "available": {"note": note, "vitals": True, "xray": True},
        "targets": {"y": torch.tensor(0 if label is None else label, dtype=torch.int64)},
        "target_mask": {"y": label is not None},
    }


def test_text_and_series_are_padded_with_false_masks():
    batch = collate_samples([sample("a", 3, 2), sample("b", 5, 4)], pad_ids={"note": 9})
    note = batch["inputs"]["note"]
    assert note["input_ids"].shape == (2, 5)
    assert note["input_ids"][0].tolist() == [2, 3, 4, 9, 9]
    assert note["attention_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    vitals = batch["inputs"]["vitals"]
    assert vitals["values"].shape == (2, 4, 2) and vitals["times"].shape == (2, 4)
    assert vitals["step_mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert not vitals["observed"][0, 2:].any() and vitals["values"][0, 2:].eq(0).all()


def test_padding_never_changes_the_real_values():
    a = sample("a", 3, 2)
    batch = collate_samples([a, sample("b", 7, 6)])
    note = batch["inputs"]["note"]
    assert torch.equal(
        note["input_ids"][0][note["attention_mask"][0]], a["inputs"]["note"]["input_ids"]
    )
    assert note["input_ids"][0, 3:].eq(0).all()  # default pad id 0
    vitals = batch["inputs"]["vitals"]
    real = vitals["step_mask"][0]
    assert torch.equal(vitals["times"][0][real], a["inputs"]["vitals"]["times"])


def test_availability_and_target_masks_stack_as_bool():
    batch = collate_samples([sample("a", 2, 1, note=False, label=1), sample("b", 2, 1, label=None)])
    assert batch["ids"] == ["a", "b"] and batch["groups"] == ["pa", "pb"]
    assert batch["available"]["note"].dtype == torch.bool
    assert batch["available"]["note"].tolist() == [False, True]
    assert batch["available"]["vitals"].tolist() == [True, True]
    assert batch["target_mask"]["y"].tolist() == [True, False]
    assert batch["targets"]["y"].tolist() == [1, 0]
    assert batch["inputs"]["xray"]["pixels"].shape == (2, 2, 1, 4, 4)
    assert batch["inputs"]["xray"]["view_mask"].tolist() == [[True, False], [True, False]]


def volume_sample(sample_id: str, size: tuple[int, int, int] | None) -> dict:
    available = size is not None
    voxels = torch.ones(1, *size) if available else torch.zeros(1, 1, 1, 1)
    return {
        "id": sample_id,
        "group": sample_id,
        "inputs": {"ct": {"voxels": voxels, "spacing": torch.ones(3)}},
        "available": {"ct": available},
        "targets": {},
        "target_mask": {},
    }


def test_unavailable_volume_stand_in_takes_the_batch_shape():
    batch = collate_samples([volume_sample("a", (2, 3, 4)), volume_sample("b", None)])
    voxels = batch["inputs"]["ct"]["voxels"]
    assert voxels.shape == (2, 1, 2, 3, 4)
    assert voxels[1].eq(0).all() and voxels[0].eq(1).all()


def test_volumes_of_different_sizes_ask_for_a_fixed_size():
    with pytest.raises(PolymodalError, match=r"give modalities.ct.size in the spec"):
        collate_samples([volume_sample("a", (2, 3, 4)), volume_sample("b", (2, 3, 5))])


def test_empty_batch_is_an_error():
    with pytest.raises(ValueError, match="at least one sample"):
        collate_samples([])
