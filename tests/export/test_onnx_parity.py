"""ONNX Runtime gives what PyTorch gives, for every subset of modalities a patient may have.

Each exportable core with an image (timm CNN), tabular, word-level text and series encoder is
exported once; the graph then runs on a batch of another size and other padded lengths than the
tracing batch, under every subset of available modalities, and must match the PyTorch model's
logits and predictions to 1e-4. A modality switched off by its availability input must not
matter, whatever its inputs hold.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from export.conftest import MODALITIES, Cohort, tiny_model
from polymodal.export import export_model
from polymodal.export.signature import flatten_batch, input_fields

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnxscript", reason="onnxscript (the ONNX exporter's) is not installed")

TOLERANCE = 1e-4
ROWS = 5  # not the tracing batch's 2


def subsets(names: list[str]) -> list[tuple[str, ...]]:
    return [s for k in range(len(names) + 1) for s in combinations(names, k)]


def with_availability(batch: dict[str, Any], kept: tuple[str, ...]) -> dict[str, Any]:
    """``batch`` with every modality outside ``kept`` unavailable for every row."""
    available = {m: a if m in kept else torch.zeros_like(a) for m, a in batch["available"].items()}
    return {**batch, "available": available}


def torch_outputs(loaded, batch: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    """The PyTorch model's own forward (not the export wrapper), by output name."""
    with torch.no_grad():
        logits = loaded.model(batch)["logits"]
    predictions = loaded.model.predictions_from_logits(logits)
    values = {}
    for name in names:
        target, what = name.split(".", 1)
        values[name] = (logits[target] if what == "logits" else predictions[target][what]).numpy()
    return values


def garbled(fields, tensors, kept: tuple[str, ...], generator: torch.Generator):
    """Random floats and masks in the inputs of every modality outside ``kept``."""
    out = []
    for field, tensor in zip(fields, tensors, strict=True):
        if field.modality in kept or field.is_availability:
            out.append(tensor)
        elif tensor.dtype == torch.bool:
            out.append(torch.rand(tensor.shape, generator=generator) > 0.5)
        elif tensor.dtype.is_floating_point:
            out.append(torch.randn(tensor.shape, generator=generator) * 100)
        else:
            out.append(tensor)  # ids must stay inside the vocabulary
    return out


def check_every_subset(cohort: Cohort, core: str, modalities: list[str], tmp_path: Path) -> None:
    loaded = tiny_model(cohort, core, modalities)
    result = export_model(loaded, tmp_path / f"{core}.onnx")
    assert result.max_abs_difference is not None and result.max_abs_difference <= TOLERANCE
    session = onnxruntime.InferenceSession(str(result.graph), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names[0] == "label.logits" and "label.probability" in names
    fields = input_fields(loaded.model.modalities, loaded.preprocessor, loaded.input_infos)
    assert [i.name for i in session.get_inputs()] == [f.name for f in fields]
    base = cohort.batch(ROWS)
    generator = torch.Generator().manual_seed(1)
    for kept in subsets(list(loaded.model.modalities)):
        batch = with_availability(base, kept)
        expected = torch_outputs(loaded, batch, names)
        tensors = garbled(fields, flatten_batch(fields, batch), kept, generator)
        feeds = {f.name: t.numpy() for f, t in zip(fields, tensors, strict=True)}
        got = dict(zip(names, session.run(names, feeds), strict=True))
        for name in names:
            difference = np.abs(got[name].astype(np.float64) - expected[name]).max()
            assert difference <= TOLERANCE, f"{core}, available {kept}: {name} off by {difference}"


@pytest.mark.parametrize("core", ["concat", "synergy", "bottleneck", "attention"])
def test_onnx_matches_pytorch_for_every_modality_subset(
    cohort: Cohort, core: str, tmp_path: Path
) -> None:
    check_every_subset(cohort, core, MODALITIES, tmp_path)


def test_the_volume_encoder_exports_too(cohort: Cohort, tmp_path: Path) -> None:
    check_every_subset(cohort, "gated", ["ct", "labs"], tmp_path)
