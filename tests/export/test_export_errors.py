"""What an export that cannot succeed tells the user: what failed, where, and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import Tensor

from export.conftest import Cohort, tiny_model
from polymodal.errors import ModelError
from polymodal.export import export_model

pytest.importorskip("onnxscript", reason="onnxscript (the ONNX exporter's) is not installed")


def test_a_branch_on_the_data_is_named_with_its_line(
    cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = tiny_model(cohort, "concat", ["labs"])
    encoder = loaded.model.encoders["labs"]
    plain = encoder.forward

    def branching(inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        tokens, mask = plain(inputs)
        if bool(tokens.sum() > 0):  # a graph cannot hold this
            tokens = tokens * 2
        return tokens, mask

    monkeypatch.setattr(encoder, "forward", branching)
    with pytest.raises(ModelError, match=r"export to ONNX failed: .*data-dependent") as error:
        export_model(loaded, tmp_path / "model.onnx")
    assert "test_export_errors.py" in str(error.value) and "in branching" in str(error.value)
    assert "branches on its data" in str(error.value)
    assert not (tmp_path / "model.json").exists()


@pytest.mark.parametrize("opset", [17, 23])
def test_an_opset_outside_the_supported_range_is_refused(
    cohort: Cohort, tmp_path: Path, opset: int
) -> None:
    loaded = tiny_model(cohort, "concat", ["labs"])
    with pytest.raises(ModelError, match=f"--opset must be from 18 to 22, got {opset}"):
        export_model(loaded, tmp_path / "model.onnx", opset=opset)
