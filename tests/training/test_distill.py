"""Knowledge distillation: KD losses per target kind, a frozen teacher, a learning student, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.datasets.demo import make_demo_cohort
from polymodal.errors import ModelError
from polymodal.model_folder import load_model_folder
from polymodal.training.distill import Distillation, DistillationConfig, distillation_loss
from training.conftest import TINY_MODEL

runner = CliRunner()

KINDS = {
    "binary": ({"kind": "binary"}, (6,)),
    "multiclass": ({"kind": "multiclass"}, (6, 4)),
    "multilabel": ({"kind": "multilabel"}, (6, 3)),
    "regression": ({"kind": "regression"}, (6,)),
    "survival": ({"kind": "time_to_event", "loss": "discrete"}, (6, 5)),
    "cox": ({"kind": "time_to_event", "loss": "cox"}, (6,)),
    "cumulative_risk": ({"kind": "cumulative_risk", "monotone": True}, (6, 7)),
    "cumulative_risk_raw": ({"kind": "cumulative_risk", "monotone": False}, (6, 7)),
    "digits": ({"kind": "digits", "num_digits": 3}, (6, 3, 10)),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_kd_loss_is_zero_for_the_teacher_s_logits_and_positive_otherwise(kind: str) -> None:
    info, shape = KINDS[kind]
    teacher = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    assert distillation_loss(info, teacher.clone(), teacher, temperature=2.0) == 0
    student = teacher + torch.randn(shape, generator=torch.Generator().manual_seed(1))
    student.requires_grad_()
    loss = distillation_loss(info, student, teacher, temperature=2.0)
    assert loss > 0
    loss.backward()
    # Gradient descent on the student moves it towards the teacher.
    closer = (student - 0.05 * student.grad).detach()
    assert distillation_loss(info, closer, teacher, temperature=2.0) < loss


def test_multiclass_kd_is_the_softened_kl_times_t_squared() -> None:
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g) * 4
    for temperature in (1.0, 2.0, 4.0):
        p_teacher = (teacher / temperature).softmax(-1)
        p_student = (student / temperature).softmax(-1)
        kl = (p_teacher * (p_teacher.log() - p_student.log())).sum(-1).mean()
        loss = distillation_loss({"kind": "multiclass"}, student, teacher, temperature=temperature)
        assert loss == pytest.approx(float(kl * temperature**2), rel=1e-5)


def test_binary_kd_is_the_bernoulli_kl_at_temperature_t() -> None:
    student, teacher = torch.tensor([0.5, -1.0, 3.0]), torch.tensor([2.0, 1.0, -4.0])
    p, q = torch.sigmoid(teacher / 3.0), torch.sigmoid(student / 3.0)
    kl = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
    loss = distillation_loss({"kind": "binary"}, student, teacher, temperature=3.0)
    assert loss == pytest.approx(float(kl.mean() * 9.0), rel=1e-5)
    # Softer targets: the KL of the softened distributions shrinks as the temperature rises.
    soft = [
        float(distillation_loss({"kind": "binary"}, student, teacher, temperature=t)) / t**2
        for t in (1.0, 2.0, 4.0)
    ]
    assert soft[0] > soft[1] > soft[2] > 0


def test_regression_kd_is_the_squared_error_to_the_teacher() -> None:
    student, teacher = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    loss = distillation_loss({"kind": "regression"}, student, teacher, temperature=5.0)
    assert loss == pytest.approx(float(F.mse_loss(student, teacher)))


def test_recon_defaults_are_marked() -> None:
    schema = DistillationConfig.model_json_schema()["properties"]
    for name in (
        "temperature",
        "lambda_logit",
        "lambda_feature",
        "feature",
        "student_modality_dropout",
    ):
        assert schema[name]["provenance"] == "recon", name
    defaults = DistillationConfig(teacher=Path("t"))
    assert (defaults.temperature, defaults.lambda_logit, defaults.lambda_feature) == (2.0, 1.0, 0.1)


# The student: a bottleneck core whose output is twice as wide as the (synergy) teacher's, so
# feature matching goes through a learned projection.
STUDENT = [
    "model.core=bottleneck",
    "model.core_options={depth: 1, num_bottlenecks: 2, readout: bottleneck_tokens}",
    "train.lr=3e-3",
    "train.warmup_epochs=0",
    "train.max_epochs=4",
]


def test_distillation_trains_the_student_and_leaves_the_teacher_untouched(
    cohort_spec_path: Path, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[Distillation] = []
    build = Distillation.from_config

    def keep(*args, **kwargs) -> Distillation:
        created.append(build(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(Distillation, "from_config", keep)
    out = tmp_path / "student"
    teacher_dir = run_dir / "model"
    overrides = [arg for item in [*TINY_MODEL, *STUDENT] for arg in ("--set", item)]
    args = ["fit", str(cohort_spec_path), "--out", str(out), "--distill-from", str(teacher_dir)]
    result = runner.invoke(app, [*args, *overrides])
    assert result.exit_code == 0, result.output

    (plugin,) = created
    teacher = plugin.teacher
    on_disk = load_file(str(teacher_dir / "model.safetensors"))
    assert all(torch.equal(teacher.state_dict()[k].cpu(), v) for k, v in on_disk.items())
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    # The widths differ (32 vs 16): the projection is learned along with the student.
    assert isinstance(plugin.projection, torch.nn.Linear) and plugin.projection.weight.shape == (
        16,
        32,
    )

    recorded = json.loads((out / "run.json").read_text())
    assert recorded["distill"]["teacher"] == str(teacher_dir)
    assert recorded["model"]["modality_dropout"] == 0.3  # the student's dropout during KD
    student = load_model_folder(out / "model")
    assert student.config.core == "bottleneck"
    assert not any(
        k.startswith(("plugins", "teacher"))
        for k in load_file(str(out / "model" / "model.safetensors"))
    )

    metrics = pd.read_csv(out / "logs" / "metrics.csv")
    steps = metrics.dropna(subset=["train/loss"])
    assert {"train/kd/logit", "train/kd/feature"} <= set(metrics.columns)
    assert len(steps) >= 3
    # The student's training objective falls over the epochs (first logged step vs the last
    # two). Its KD term alone may rise while the task term falls, so it is not asserted.
    assert steps["train/loss"].iloc[-2:].mean() < steps["train/loss"].iloc[0]


def write_spec(source: Path, target: Path, keep: list[str]) -> Path:
    """A spec over ``source``'s manifest that keeps only the modalities in ``keep``."""
    data = yaml.safe_load(source.read_text())
    data["modalities"] = {m: v for m, v in data["modalities"].items() if m in keep}
    data["manifest"] = str(source.parent / data["manifest"])
    target.write_text(yaml.safe_dump(data))
    return target


def test_a_teacher_from_another_cohort_is_refused(
    cohort_spec_path: Path, run_dir: Path, tmp_path: Path
) -> None:
    spec = write_spec(cohort_spec_path, tmp_path / "labs_only.yaml", ["labs", "vitals"])
    out = tmp_path / "student"
    result = runner.invoke(
        app, ["fit", str(spec), "--out", str(out), "--distill-from", str(run_dir / "model")]
    )
    assert isinstance(result.exception, ModelError), result.output
    message = str(result.exception)
    assert "the teacher was trained on another cohort" in message
    assert "labs (tabular), vitals (series)" in message and "lesion (image)" in message
    assert not (out / "checkpoints").exists()


def test_a_teacher_with_other_preprocessing_is_refused(run_dir: Path, tmp_path: Path) -> None:
    # Same modalities and targets, but another cohort: the tabular scalers differ.
    other = make_demo_cohort(tmp_path / "other", n=40, seed=5, image_size=32, volume_size=16)
    result = runner.invoke(
        app,
        [
            "fit",
            str(other),
            "--out",
            str(tmp_path / "student"),
            "--distill-from",
            str(run_dir / "model"),
        ],
    )
    assert isinstance(result.exception, ModelError), result.output
    assert "preprocessing of modality" in str(result.exception)
    assert "fitted on another training split" in str(result.exception)


def test_a_missing_teacher_folder_is_a_clear_error(cohort_spec_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "fit",
            str(cohort_spec_path),
            "--out",
            str(tmp_path / "s"),
            "--distill-from",
            str(tmp_path / "nowhere"),
        ],
    )
    assert isinstance(result.exception, ModelError)
    assert "not a polymodal model folder" in str(result.exception)
