"""Every registered fusion core either exports with ONNX Runtime parity or says why it cannot.

Over ``list_cores()`` like the registry-wide tests in ``tests/fusion``: a new core is covered
with no entry here. A core that does not declare ``export_refusal`` must export (batch size
dynamic) and match PyTorch on another batch size under mixed availability and padding; a
core that refuses must say why in words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from polymodal.fusion import CORES, FusionCore, create_core, list_cores

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnxscript", reason="onnxscript (the ONNX exporter's) is not installed")

DIM = 8


class CoreGraph(nn.Module):
    """A core over flat tensors: per modality ``tokens (B, N, D)``, ``mask (B, N)``,
    ``available (B,)``, in the core's modality order."""

    def __init__(self, core: FusionCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, *tensors: Tensor) -> Tensor:
        tokens, masks, available = {}, {}, {}
        for i, name in enumerate(self.core.modalities):
            tokens[name], masks[name], available[name] = tensors[3 * i : 3 * i + 3]
        return self.core(tokens, masks, available)


def streams(core: FusionCore, batch: int, seed: int) -> tuple[Tensor, ...]:
    """Random tokens, a padded mask (at least one valid token) and random availability."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for _ in core.modalities:
        tokens = torch.randn(batch, 3, DIM, generator=generator)
        mask = torch.rand(batch, 3, generator=generator) > 0.4
        mask[:, 0] = True
        tensors += [tokens, mask, torch.rand(batch, generator=generator) > 0.4]
    return tuple(tensors)


@pytest.mark.filterwarnings("ignore:# The axis name")  # the exporter's note on one shared Dim
@pytest.mark.parametrize("name", list_cores(export_refusal=""))
def test_a_core_that_does_not_refuse_exports_with_parity(name: str, tmp_path: Path) -> None:
    cls = CORES.get(name)
    torch.manual_seed(0)
    core = create_core(
        name, modalities=cls.example_modalities(), dim=DIM, **cls.example_options()
    ).eval()
    graph = CoreGraph(core).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    shapes = tuple({0: batch} for _ in range(3 * len(core.modalities)))
    path = tmp_path / f"{name}.onnx"
    with torch.no_grad():
        program = torch.onnx.export(
            graph, streams(core, 2, seed=0), dynamo=True, dynamic_shapes=(shapes,), verbose=False
        )
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = streams(core, 5, seed=1)
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    (got,) = session.run(None, feeds)
    with torch.no_grad():
        expected = graph(*inputs).numpy()
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("name", [n for n in list_cores() if CORES.get(n).export_refusal])
def test_a_core_that_refuses_says_why(name: str) -> None:
    assert len(CORES.get(name).export_refusal.split()) >= 5
