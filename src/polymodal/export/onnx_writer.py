"""Write a model as ONNX with ``torch.onnx.export`` (the torch.export-based exporter).

The graph takes the flat inputs of :mod:`polymodal.export.signature` (batch size and padded
lengths dynamic) and returns logits and predictions per target; :func:`export_onnx` checks it
under ONNX Runtime against PyTorch on the tracing batch when ONNX Runtime is installed.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from polymodal.errors import ModelError
from polymodal.export.flat_model import FlatModel
from polymodal.export.signature import BATCH, InputField

DEFAULT_OPSET = 18
# The opsets these graphs are written in: the exporter writes 18 natively (an older target is
# left unconverted), and from 23 on attention becomes ONNX's Attention node, which ONNX
# Runtime (1.32) refuses with the broadcast key-padding mask.
OPSETS = range(18, 23)


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the file, its opset, and the largest absolute difference
    between ONNX Runtime and PyTorch on the tracing batch (None: ONNX Runtime not installed)."""

    path: Path
    opset: int
    max_abs_difference: float | None


def onnx_available() -> bool:
    """Whether the exporter's packages (onnx, onnxscript) are installed."""
    return all(importlib.util.find_spec(p) is not None for p in ("onnx", "onnxscript"))


def export_onnx(
    flat: FlatModel, example: tuple[Tensor, ...], path: Path, *, opset: int = DEFAULT_OPSET
) -> OnnxExport:
    """Trace ``flat`` on ``example`` and write ``path``; returns what was written.

    Raises:
        ModelError: the exporter's packages are missing, the opset is outside :data:`OPSETS`,
            the exporter fails (the message names the cause and the model line that raised
            it) or ONNX Runtime cannot run the graph.
    """
    if not onnx_available():
        raise ModelError(
            "export to ONNX needs the onnx and onnxscript packages: pip install 'polymodal[export]'"
        )
    if opset not in OPSETS:
        raise ModelError(
            f"export: --opset must be from {OPSETS.start} to {OPSETS.stop - 1}, got {opset}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    flat.eval()
    with torch.no_grad(), _quiet_exporter():
        try:
            program = torch.onnx.export(
                flat,
                example,
                dynamo=True,
                input_names=flat.input_names,
                output_names=flat.output_names,
                # One entry: forward(*tensors) takes its inputs as one variadic argument.
                dynamic_shapes=(_dynamic_shapes(flat.fields),),
                opset_version=opset,
                verbose=False,
            )
        except Exception as err:  # the exporter's errors have no common base class
            raise ModelError(
                f"export to ONNX failed: {_root_cause(err)}{_raised_at(err)} (often a part of "
                "the model that branches on its data; see the README's Export section)"
            ) from err
        assert program is not None
        program.save(str(path))
    try:
        difference = max_abs_difference(flat, example, path)
    except ModelError:
        path.unlink(missing_ok=True)  # a graph ONNX Runtime cannot run is no export
        raise
    return OnnxExport(path, _written_opset(path), difference)


def _written_opset(path: Path) -> int:
    """The default-domain opset the file declares (what a runtime must support)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _root_cause(err: BaseException) -> str:
    """The first line of the innermost cause: the exporter wraps it in a page of advice."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _raised_at(err: BaseException) -> str:
    """' at FILE:LINE' of the model code the exporter names as the failing call, if it does."""
    lines = str(err).splitlines()
    for index, line in enumerate(lines):
        if "The following call raised this error" in line:
            for follow in lines[index + 1 : index + 3]:
                if follow.strip().startswith("File "):
                    return f" at {follow.strip().removeprefix('File ')}"
    return ""


def _dynamic_shapes(fields: list[InputField]) -> tuple[dict[int, torch.export.Dim], ...]:
    """The batch axis of every input and each modality's padded length vary per call."""
    batch = torch.export.Dim(BATCH, min=1, max=1 << 20)
    lengths: dict[str, torch.export.Dim] = {}
    shapes = []
    for field in fields:
        axes = {}
        for axis, size in enumerate(field.shape):
            if size == BATCH:
                axes[axis] = batch
            elif isinstance(size, str):
                if size not in lengths:
                    lengths[size] = torch.export.Dim(size, min=1, max=field.max_length)
                axes[axis] = lengths[size]
        shapes.append(axes)
    return tuple(shapes)


def max_abs_difference(flat: FlatModel, inputs: tuple[Tensor, ...], path: Path) -> float | None:
    """Largest |ONNX Runtime − PyTorch| over every output on ``inputs``; None without ONNX
    Runtime. Integer outputs (class labels) count by their value."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes on initializers it drops
    feeds = {name: t.numpy() for name, t in zip(flat.input_names, inputs, strict=True)}
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        onnx_outputs = session.run(flat.output_names, feeds)
    except Exception as err:  # onnxruntime's errors have no public base class
        raise ModelError(
            f"{path}: ONNX Runtime cannot run the exported graph ({str(err).splitlines()[0]}); "
            f"export with the default --opset {DEFAULT_OPSET}, and report the message if that "
            "fails too"
        ) from err
    with torch.no_grad():
        torch_outputs = flat(*inputs)
    return max(
        float((torch.as_tensor(a).double() - b.double()).abs().max()) if b.numel() else 0.0
        for a, b in zip(onnx_outputs, torch_outputs, strict=True)
    )


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporter's progress lines and warnings off the user's terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
