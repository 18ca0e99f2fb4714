"""Knowledge distillation from a frozen full-modality teacher (methods.md §4.3, Method D's KD).

The teacher is a trained polymodal model folder; it is frozen (eval mode, no gradients, not
checkpointed, not exported) and always sees every modality the batch has. The student is the
model being fitted; it sees the same samples through per-sample modality dropout, and learns
from the labels and from the teacher::

    loss = task loss
         + λ_logit · Σ_targets KD(teacher logits, student logits; temperature τ)
         + λ_feature · ‖proj(student features) − teacher features‖²      (optional)

KD per target kind, which each kind defines (``TargetKind.distillation_loss`` in
:mod:`polymodal.targets`): τ-softened and multiplied by τ² so its gradients keep their scale as τ
grows, as in Hinton et al. 2015 (a KL between Bernoulli or softmax distributions), or the mean
squared error to the teacher's output for a value or risk score (no τ).
The distillation term covers every sample of the batch, labelled or not.

``features`` is what the fusion core outputs, so feature matching works for every core; for a
core that reads out a pooled bottleneck (Method D of methods.md) it is the pooled bottleneck Z̄.
Defaults marked ``provenance: recon`` are reconstructions (methods.md §4.3), not paper values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from polymodal import targets
from polymodal.data.preprocessing import Preprocessor
from polymodal.errors import ModelError
from polymodal.model import MultimodalModel
from polymodal.training.module import PolymodalModule, TrainingPlugin, TrainStep

# Marks a default that methods.md labels [recon] (shown in the JSON schema of the config).
RECON = {"provenance": "recon"}


class DistillationConfig(BaseModel):
    """``distill:`` in a run config; ``polymodal fit --distill-from DIR`` sets ``teacher``."""

    model_config = ConfigDict(extra="forbid")

    teacher: Path = Field(
        description="The teacher's model folder (OUT/model of a `polymodal fit` run)."
    )
    temperature: float = Field(
        2.0, gt=0, description="Softening temperature τ.", json_schema_extra=RECON
    )
    lambda_logit: float = Field(
        1.0, ge=0, description="Weight of the logit KD term.", json_schema_extra=RECON
    )
    lambda_feature: float = Field(
        0.1, ge=0, description="Weight of the feature-matching term.", json_schema_extra=RECON
    )
    feature: Literal["none", "features"] = Field(
        "features",
        description="'features': match the fusion core's output (a learned projection bridges "
        "different widths); 'none': logits only.",
        json_schema_extra=RECON,
    )
    student_modality_dropout: float | None = Field(
        0.3,
        ge=0,
        lt=1,
        description="Per-sample modality dropout of the student during distillation (replaces "
        "model.modality_dropout and is recorded in the run's model config); None keeps "
        "model.modality_dropout.",
        json_schema_extra=RECON,
    )


def distillation_loss(
    target_info: dict[str, Any],
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float,
) -> Tensor:
    """The KD term of one target, averaged over the batch; 0 exactly when the logits agree.

    Args:
        target_info: the target's info (``kind``, and what that kind's loss reads).
        student_logits, teacher_logits: as the head outputs them, ``(B,)`` or ``(B, K, ...)``.
        temperature: τ; the terms of a distribution are multiplied by τ².

    Raises:
        ModelError: the info names no known target kind.
    """
    kind = target_info.get("kind")
    if kind not in targets.TARGETS:
        raise ModelError(f"distillation: no KD loss for target kind {kind!r}")
    student, teacher = student_logits.float(), teacher_logits.detach().float()
    return targets.get(kind).distillation_loss(
        target_info, student, teacher, temperature=temperature
    )


def _describe(named_kinds: dict[str, str]) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in named_kinds.items()) or "none"


def check_teacher_cohort(
    folder: Path,
    teacher_preprocessor: Preprocessor,
    teacher_targets: dict[str, dict],
    preprocessor: Preprocessor,
) -> None:
    """Raise :class:`ModelError` unless the teacher reads this run's tensors the same way.

    Same modalities (names and kinds), same targets (names, kinds, classes, bins, scaling) and
    the same fitted preprocessing of every modality: the teacher gets the student's batches.
    """
    fix = "distill from a model fitted with `polymodal fit` on this cohort and split"
    ours = {m: preprocessor.input_info(m)["kind"] for m in preprocessor.modalities}
    theirs = {
        m: teacher_preprocessor.input_info(m)["kind"] for m in teacher_preprocessor.modalities
    }
    if ours != theirs:
        raise ModelError(
            f"{folder}: the teacher was trained on another cohort: its modalities are "
            f"{_describe(theirs)}, this run's are {_describe(ours)}; {fix}"
        )
    ours_targets = {t: preprocessor.target_info(t) for t in preprocessor.targets}
    our_kinds = {t: info["kind"] for t, info in ours_targets.items()}
    their_kinds = {t: info["kind"] for t, info in teacher_targets.items()}
    if our_kinds != their_kinds:
        raise ModelError(
            f"{folder}: the teacher was trained on another cohort: its targets are "
            f"{_describe(their_kinds)}, this run's are {_describe(our_kinds)}; {fix}"
        )
    for target, info in ours_targets.items():
        if teacher_targets[target] != info:
            raise ModelError(
                f"{folder}: the teacher encodes target {target!r} differently (classes, bins or "
                f"scaling: {teacher_targets[target]} vs {info}); {fix}"
            )
    for modality in preprocessor.modalities:
        if teacher_preprocessor.fingerprint(modality) != preprocessor.fingerprint(modality):
            raise ModelError(
                f"{folder}: the teacher's preprocessing of modality {modality!r} differs from this "
                f"run's (fitted on another training split, with other spec settings or by another "
                f"polymodal version); {fix}"
            )


def load_teacher(folder: Path | str, preprocessor: Preprocessor) -> MultimodalModel:
    """The frozen teacher of a model folder, checked against this run's preprocessing."""
    from polymodal.model_folder import load_model_folder

    folder = Path(folder)
    loaded = load_model_folder(folder)
    check_teacher_cohort(folder, loaded.preprocessor, loaded.target_infos, preprocessor)
    teacher = loaded.model.eval()
    teacher.requires_grad_(False)
    return teacher


class Distillation(TrainingPlugin):
    """The KD plugin of :class:`PolymodalModule`; ``teacher`` is the frozen teacher.

    Args:
        config: temperature, weights and feature matching.
        teacher: the frozen teacher (see :func:`load_teacher`).
        target_infos: the student's targets (the teacher has the same ones).
        student_features: width of the student's fusion output; a learned projection maps it to
            the teacher's width when feature matching is on and the widths differ.
    """

    teacher: MultimodalModel

    def __init__(
        self,
        config: DistillationConfig,
        teacher: MultimodalModel,
        target_infos: dict[str, dict],
        student_features: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.target_infos = target_infos
        # Kept out of the module tree on purpose: the teacher must not be trained, saved in a
        # checkpoint, moved to training mode by Lightning, or exported with the student.
        self.__dict__["teacher"] = teacher
        teacher_features = int(teacher.core.out_dim)
        self.projection: nn.Module = (
            nn.Linear(student_features, teacher_features)
            if config.feature == "features" and student_features != teacher_features
            else nn.Identity()
        )

    @classmethod
    def from_config(
        cls, config: DistillationConfig, *, student: MultimodalModel, preprocessor: Preprocessor
    ) -> Distillation:
        """Load and check the teacher named by ``config`` for a student on ``preprocessor``'s cohort."""
        teacher = load_teacher(config.teacher, preprocessor)
        target_infos = {t: preprocessor.target_info(t) for t in preprocessor.targets}
        return cls(config, teacher, target_infos, student_features=int(student.core.out_dim))

    @torch.no_grad()
    def teacher_outputs(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """The teacher's logits and features on the whole batch (every modality it has)."""
        self.teacher.to(device).eval()
        return self.teacher(batch)

    def training_loss(
        self, module: PolymodalModule, batch: dict[str, Any], step: TrainStep
    ) -> dict[str, Tensor]:
        cfg = self.config
        teacher = self.teacher_outputs(batch, module.device)
        student_logits = step.outputs["logits"]
        logit_term = sum(
            distillation_loss(
                info, student_logits[name], teacher["logits"][name], temperature=cfg.temperature
            )
            for name, info in self.target_infos.items()
        )
        terms = {"kd/logit": cfg.lambda_logit * logit_term}
        if cfg.feature == "features":
            student_features = self.projection(step.outputs["features"]).float()
            feature_term = F.mse_loss(student_features, teacher["features"].float())
            terms["kd/feature"] = cfg.lambda_feature * feature_term
        return terms
