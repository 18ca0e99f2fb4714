"""Every registered modality kind, tested from its own example the way timm tests every model.

Nothing here names a kind: the tests run over ``MODALITIES.names()``, so a new kind (one file in
``polymodal/modalities/`` and its import) is covered by adding it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from pydantic import TypeAdapter

import polymodal.data.batch
import polymodal.data.spec
from polymodal import modalities
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import Modality, dump_spec, parse_spec
from polymodal.encoders import create_encoder, encoder_kinds
from polymodal.errors import SpecError
from polymodal.explain.elements import occlusions, text_sentences
from polymodal.modalities import MODALITIES

KINDS = MODALITIES.names()
DIM = 8
NAME = "m"  # the modality's name in each example cohort


def example_cohort(kind: str, folder: Path):
    """A cohort of the kind's example rows (all in the training split, a binary label), its
    fitted state and the example."""
    example = modalities.get(kind).example(folder)
    rows = [
        {"id": f"r{i}", "split": "train", "y": str(i % 2), **cells}
        for i, cells in enumerate(example.cells)
    ]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "id",
            "split": {"column": "split"},
            "targets": {"y": {"kind": "binary", "column": "y"}},
            "modalities": {NAME: example.spec},
        },
        base_dir=folder,
    )
    cohort = load_cohort(spec)
    return cohort, Preprocessor.fit(cohort, on_error="fail"), example


@pytest.mark.parametrize("kind", KINDS)
def test_the_kind_is_registered_under_its_name_with_its_spec(kind):
    unit = modalities.get(kind)
    assert unit.name == kind
    assert unit.spec.model_fields["kind"].annotation.__args__ == (kind,)  # Literal[kind]
    # Kept importable from polymodal.data.spec for code written before the kinds moved.
    assert getattr(polymodal.data.spec, unit.spec.__name__) is unit.spec
    assert kind in polymodal.data.spec.MODALITY_KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_the_batch_contract_documents_every_field_of_the_kind(kind):
    """The sample/batch contract stays written in one place, polymodal.data.batch."""
    unit = modalities.get(kind)
    contract = polymodal.data.batch.__doc__
    for field in unit.fields:
        assert re.search(rf"^{kind}\s+``{field}``", contract, re.MULTILINE), field
    assert unit.padded_fields <= set(unit.fields)
    assert unit.pad_id_field is None or unit.pad_id_field in unit.padded_fields


@pytest.mark.parametrize("kind", KINDS)
def test_the_default_encoder_encodes_the_kind(kind):
    assert kind in encoder_kinds(modalities.get(kind).default_encoder)


@pytest.mark.parametrize("kind", KINDS)
def test_spec_round_trip(kind, tmp_path):
    cohort, _, example = example_cohort(kind, tmp_path)
    section = cohort.spec.modalities[NAME]
    assert isinstance(section, modalities.get(kind).spec)
    again = parse_spec(yaml.safe_load(dump_spec(cohort.spec)), base_dir=tmp_path)
    assert again.modalities[NAME] == section
    adapter = TypeAdapter(Modality)
    assert adapter.validate_python(section.model_dump(mode="json")) == section
    columns = modalities.get(kind).columns(section)
    assert set(modalities.get(kind).file_columns(section)) <= set(columns)
    assert set(columns) <= set(example.cells[0])


@pytest.mark.parametrize("kind", KINDS)
def test_every_file_of_the_example_is_read_by_the_kind(kind, tmp_path):
    cohort, _, example = example_cohort(kind, tmp_path)
    unit, section = modalities.get(kind), cohort.spec.modalities[NAME]
    cells = [c[col] for c in example.cells for col in unit.file_columns(section) if c[col]]
    for cell in cells:
        assert unit.read_file(section, cell, cohort.resolve_path) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_cell_checks_agree_with_the_dataset(kind, tmp_path):
    """What validate learns from the cells alone is what the dataset makes of each row; a kind
    whose values are in files leaves it to reading them."""
    cohort, prep, _ = example_cohort(kind, tmp_path)
    unit, section = modalities.get(kind), cohort.spec.modalities[NAME]
    check = unit.check_cells(section, cohort.frame)
    assert (check is None) == bool(unit.file_columns(section))
    if check is not None:
        dataset = CohortDataset(cohort, prep, "train", on_error="fail")
        available = [dataset[i]["available"][NAME] for i in range(len(dataset))]
        assert check.available.tolist() == available
        assert not check.problems


@pytest.mark.parametrize("kind", KINDS)
def test_fit_transform_collate_encode(kind, tmp_path):
    """Fit on the example → input_info with the keys the default encoder needs → one sample →
    a batch of it and a sample without the modality → tokens (B, N, D) and a mask (B, N)."""
    unit = modalities.get(kind)
    cohort, prep, example = example_cohort(kind, tmp_path)
    info = prep.input_info(NAME)
    assert set(info) == {"kind", *unit.info_keys} and info["kind"] == kind
    # The fitted state is JSON: saved and loaded, it describes the modality the same way.
    loaded = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert loaded.input_info(NAME) == info

    dataset = CohortDataset(cohort, loaded, "train", on_error="fail")
    present, missing = dataset[0], dataset[len(dataset) - 1]
    assert present["available"][NAME] and not missing["available"][NAME]
    assert set(present["inputs"][NAME]) == set(missing["inputs"][NAME]) == set(unit.fields)
    assert not dataset.issues

    batch = collate_samples([present, missing], pad_ids=loaded.pad_ids())
    assert batch["available"][NAME].tolist() == [True, False]
    encoder = create_encoder(
        unit.default_encoder, input_info=info, dim=DIM, **example.encoder_options
    ).eval()
    with torch.no_grad():
        tokens, mask = encoder(batch["inputs"][NAME])
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[2] == DIM
    assert mask.shape == tokens.shape[:2] and mask.dtype == torch.bool
    assert torch.isfinite(tokens).all()
    # The model keeps a token only where its sample has the modality.
    kept = mask & batch["available"][NAME][:, None]
    assert kept[0].any() and not kept[1].any()

    # An unavailable sample contributes nothing: garbage in its stand-ins changes no token of
    # the other sample.
    garbage = {f: _garbage_in_second(t) for f, t in batch["inputs"][NAME].items()}
    with torch.no_grad():
        tokens_again, mask_again = encoder(garbage)
    assert torch.equal(mask_again[0], mask[0])
    torch.testing.assert_close(tokens_again[0][mask[0]], tokens[0][mask[0]])


def _garbage_in_second(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with sample 1 replaced by random values of its dtype (ids 0/1 stay valid)."""
    out = tensor.clone()
    generator = torch.Generator().manual_seed(1)
    if out.dtype == torch.bool:
        out[1] = torch.rand(out[1].shape, generator=generator) > 0.5
    elif out.dtype.is_floating_point:
        out[1] = torch.randn(out[1].shape, generator=generator) * 100
    else:
        out[1] = torch.randint(0, 2, out[1].shape, generator=generator)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_the_explanation_elements_of_a_sample(kind, tmp_path):
    """The whole modality first, then the kind's elements, each one really taken out."""
    cohort, prep, _ = example_cohort(kind, tmp_path)
    sample = CohortDataset(cohort, prep, "train", on_error="fail")[0]
    fields = sample["inputs"][NAME]
    cells = cohort.frame.iloc[0].to_dict()
    sentences = text_sentences(prep, NAME, cells, cohort.resolve_path)
    elements = occlusions(prep, NAME, fields, sentences)
    assert elements[0].element.name == NAME and elements[0].fields is None
    assert len(elements) > 1, "every kind has elements below the whole modality"
    names = [o.element.name for o in elements[1:]]
    assert len(set(names)) == len(names) and all(n.startswith(f"{NAME}.") for n in names)
    for occlusion in elements[1:]:
        if occlusion.fields is None:  # nothing of the modality left
            continue
        assert set(occlusion.fields) == set(fields)
        assert any(
            v.shape != fields[k].shape or not torch.equal(v, fields[k])
            for k, v in occlusion.fields.items()
        ), occlusion.element.name


@pytest.mark.parametrize("kind", KINDS)
def test_stand_ins_have_the_shapes_of_the_kind(kind, tmp_path):
    _, prep, _ = example_cohort(kind, tmp_path)
    empty = prep.empty_inputs(NAME)
    assert set(empty) == set(modalities.get(kind).fields)


def test_an_unknown_kind_names_the_known_ones_and_the_key():
    with pytest.raises(SpecError) as caught:
        modalities.get("audio")
    message = str(caught.value)
    assert "modalities.<name>.kind" in message
    assert all(kind in message for kind in KINDS)
