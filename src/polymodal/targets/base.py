"""What a target kind is: the one class each kind of label (binary, multiclass, …) subclasses.

A target kind owns everything about its labels, so that the rest of polymodal never names one:

===============================  ==============================================================
spec                             :attr:`TargetKind.spec`, the pydantic class of its YAML section
fitting                          :meth:`~TargetKind.fit` → a typed :attr:`~TargetKind.state`
                                 (saved in ``preprocessing.json`` as ``state.model_dump()``)
encoding                         :meth:`~TargetKind.encode` (a label), :meth:`~TargetKind.empty`
                                 (a missing one), :meth:`~TargetKind.info` (what a head needs)
label checks                     :meth:`~TargetKind.check_labels`
head and loss                    :meth:`~TargetKind.create_head`
distillation                     :meth:`~TargetKind.distillation_loss`
predictions                      :attr:`~TargetKind.prediction`, :meth:`~TargetKind.scored_labels`,
                                 :meth:`~TargetKind.prediction_columns`
metrics                          :meth:`~TargetKind.metrics`, :attr:`~TargetKind.headline`,
                                 :attr:`~TargetKind.table_metrics`,
                                 :attr:`~TargetKind.lower_is_better`
no-skill levels and figures      :meth:`~TargetKind.no_skill`, :meth:`~TargetKind.label_summary`,
                                 :meth:`~TargetKind.outcomes`, :meth:`~TargetKind.decided_classes`,
                                 :meth:`~TargetKind.survival`
recalibration                    :attr:`~TargetKind.recalibrations`, :meth:`~TargetKind.logit_nll`
conformal prediction             :meth:`~TargetKind.class_probabilities` (sets) or
                                 :meth:`~TargetKind.point_values` (intervals)
explanation                      :meth:`~TargetKind.explanation_score`
example                          :meth:`~TargetKind.example` (for the registry-wide tests)
===============================  ==============================================================

A kind registers itself on :data:`TARGETS`; everyone else asks ``targets.get(kind)``::

    @TARGETS.register("binary")
    class Binary(TargetKind): ...

    targets.get("binary").headline  # 'auroc'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

from polymodal.errors import ModelError, SpecError
from polymodal.registry import Registry
from polymodal.targets.figure_inputs import DecidedClasses, HorizonRisks, Outcome, SurvivalRows
from polymodal.targets.head import Head
from polymodal.targets.scores import MetricOptions, MetricValues

TARGETS: Registry[type[TargetKind]] = Registry(
    "target kind", config_key="targets.<name>.kind", error=SpecError
)

# add(row position or None, column, reason, action, warn=False) records one label problem.
AddProblem = Callable[..., None]


class TargetSpec(BaseModel):
    """What every target section of a cohort spec has besides its kind's columns.

    Unknown keys are errors (a typo must not be silently ignored); NaN and infinity never are a
    meaningful setting.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # The task prompt and its paraphrases (M3FM), e.g. "Predict the lung cancer risk over six
    # years."; the first is the canonical phrasing.
    prompts: list[str] | None = Field(None, min_length=1)

    @field_validator("prompts")
    @classmethod
    def _prompts_have_words(cls, v: list[str] | None) -> list[str] | None:
        for position, prompt in enumerate(v or (), start=1):
            if not any(ch.isalnum() for ch in prompt):
                raise ValueError(
                    f"prompt {position} ({prompt!r}) has no word; write the task as a sentence, "
                    "e.g. 'Predict the lung cancer risk over six years.'"
                )
        return v


class TargetState(BaseModel):
    """Values a kind learns from the training labels; JSON on disk (``model_dump(mode="json")``).

    The field names are the keys of ``preprocessing.json``: renaming one breaks old model folders.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class NoState(TargetState):
    """For kinds that learn nothing from the training rows (the spec says it all)."""


@dataclass(frozen=True)
class LabelFrame:
    """The cohort as label checks see it: every manifest cell a string.

    Attributes:
        name: the target's name in the spec (``targets.<name>``).
        frame: the manifest ``(N, columns)``, every cell a str.
        train: ``(N,)`` bool, the rows of the training split.
        add: records one problem: ``add(row, column, reason, action, warn=False)``.
    """

    name: str
    frame: pd.DataFrame
    train: np.ndarray
    add: AddProblem


@dataclass(frozen=True)
class Example:
    """A tiny labelled column of a kind, for the registry-wide tests.

    ``spec`` is a target section as written in YAML; ``cells`` one dict of manifest cells per row
    (every kind's example has at least one row with a missing label and both outcomes/classes).
    """

    spec: dict[str, Any]
    cells: list[dict[str, str]]

    def frame(self) -> pd.DataFrame:
        """The cells as a manifest frame (every cell a str)."""
        return pd.DataFrame(self.cells, dtype=str)


class TargetKind(ABC):
    """One kind of label; subclasses register on :data:`TARGETS` and are stateless singletons.

    Class attributes:
        spec: the pydantic class of its spec section (``kind: Literal[name]`` plus its fields).
        state: the typed fitted state (:class:`NoState` when nothing is learned).
        prediction: the entry of the head's ``predict`` output that the metrics read.
        headline: the metric that decides "better" (checkpoints, early stopping, report figures).
        table_metrics: the summary-table columns (the headline among them).
        lower_is_better: metrics of this kind where smaller is better (errors, calibration).
        headers: readable table headers of this kind's metrics.
        detail_table: title of the per-class/per-horizon table, None without one.
        cross_entropy: its loss is a cross-entropy linear in the label (label smoothing, mixup).
        class_valued: one class per row in one column (stratified splits, class-balanced
            sampling, "a single class in train cannot be trained").
        multi_label: one independent 0/1 outcome per label column.
        recalibrations: the ``calibration.method`` values its head's logits can be recalibrated
            with after training (:mod:`polymodal.calibration.recalibration`); empty: none.
    """

    name: ClassVar[str]
    spec: ClassVar[type[TargetSpec]]
    state: ClassVar[type[TargetState]] = NoState
    prediction: ClassVar[str]
    headline: ClassVar[str]
    table_metrics: ClassVar[tuple[str, ...]]
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    headers: ClassVar[Mapping[str, str]] = {}
    detail_table: ClassVar[str | None] = None
    cross_entropy: ClassVar[bool] = False
    class_valued: ClassVar[bool] = False
    multi_label: ClassVar[bool] = False
    recalibrations: ClassVar[tuple[str, ...]] = ()

    # ---- spec -----------------------------------------------------------------------------

    def columns(self, cfg: Any) -> list[str]:
        """Manifest columns a target of this kind reads."""
        return [cfg.column]

    # ---- fitting and encoding -------------------------------------------------------------

    def fit(self, where: str, cfg: Any, rows: pd.DataFrame, ids: pd.Series) -> TargetState:
        """Learn the state from the training ``rows`` (ids name rows in errors)."""
        return self.state()

    def read_state(self, raw: Mapping[str, Any]) -> TargetState:
        """The typed state from its JSON (``preprocessing.json``)."""
        return self.state.model_validate(dict(raw))

    def info(self, cfg: Any, state: Any) -> dict[str, Any]:
        """What a head needs: ``kind``, ``n_outputs``, ``prompts`` and the kind's own keys.

        Saved in model folders: a key removed here must still be read from old folders.
        """
        info: dict[str, Any] = dict.fromkeys(("classes", "class_weights", "bins", "mean", "std"))
        info.update(kind=self.name, n_outputs=1, prompts=list(cfg.prompts) if cfg.prompts else None)
        info.update(self.head_info(cfg, state))
        return info

    def head_info(self, cfg: Any, state: Any) -> dict[str, Any]:
        """The kind's own entries of :meth:`info`."""
        return {}

    @abstractmethod
    def encode(self, cfg: Any, state: Any, cells: Mapping[str, str]) -> Tensor | None:
        """One row's label as in :mod:`polymodal.data.batch`; None when missing.

        Raises:
            ReadError: a label the fitted state does not know (naming the column).
        """

    @abstractmethod
    def empty(self, cfg: Any) -> Tensor:
        """The value a missing label holds (ignored: its ``target_mask`` is False)."""

    # ---- label checks ----------------------------------------------------------------------

    @abstractmethod
    def check_labels(self, cfg: Any, labels: LabelFrame) -> tuple[pd.Series, pd.DataFrame]:
        """Report every unusable label; return the usable label per row (None where not) and a
        per-row frame whose ``label`` column (or one column per label) is counted by split."""

    def count_labels(self, shown: pd.DataFrame) -> dict[str, int]:
        """Rows per shown label value (of one split's rows of :meth:`check_labels`' frame)."""
        return {str(k): int(v) for k, v in shown["label"].value_counts().sort_index().items()}

    # ---- model -----------------------------------------------------------------------------

    @abstractmethod
    def create_head(self, name: str, info: Mapping[str, Any], *, in_dim: int) -> Head:
        """The head of target ``name`` from its :meth:`info`.

        Raises:
            ModelError: the info does not describe a head of this kind (names the key).
        """

    @abstractmethod
    def distillation_loss(
        self, info: Mapping[str, Any], student: Tensor, teacher: Tensor, *, temperature: float
    ) -> Tensor:
        """KD term of one target over the batch (float32 logits); 0 when the logits agree."""

    # ---- predictions and metrics -----------------------------------------------------------

    def scored_labels(self, info: Mapping[str, Any], y_true: np.ndarray) -> np.ndarray:
        """Batch-encoded labels ``(n, ...)`` → the labels :meth:`metrics` scores."""
        return y_true

    def predictions_from_average(self, averaged: dict[str, Tensor]) -> dict[str, Tensor]:
        """The head's predictions from the means over several passes (test-time augmentation)
        of its floating outputs, ``averaged`` ``{name: (B, ...)}``; its integer outputs (a
        label, digits) are not in it, and a kind with any rebuilds them from the means."""
        return averaged

    def label_array(self, y_true: Any) -> np.ndarray:
        """Labels as handed to evaluation (an array, or a kind's documented tuple) → array."""
        return np.asarray(y_true)

    @abstractmethod
    def prediction_columns(
        self, target: str, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Readable CSV columns ``{column: (n,)}`` from the head's outputs of one target."""

    @abstractmethod
    def metrics(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> MetricValues:
        """Every metric of this kind (see :func:`polymodal.evaluation.metrics.compute_metrics`)."""

    # ---- no-skill references and clinical figures ------------------------------------------

    def no_skill(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        """Metric → the value a model without skill gets on the scored labels ``y`` (AUROC 0.5,
        AUPRC the prevalence, Brier p(1 − p) of always predicting the prevalence); metrics
        without such a level are left out. Reports flag results at or worse than it."""
        return {}

    def label_summary(self, y: np.ndarray, options: MetricOptions) -> dict[str, float]:
        """A few numbers that describe the scored labels ``y`` (``prevalence``, event rate)."""
        return {}

    def outcomes(self, y: np.ndarray, pred: np.ndarray, options: MetricOptions) -> list[Outcome]:
        """The yes/no outcomes with a probability (ROC, PR, calibration); none by default."""
        return []

    def decided_classes(
        self, y: np.ndarray, pred: np.ndarray, options: MetricOptions
    ) -> DecidedClasses | None:
        """True and decided class per sample (confusion matrix); None for kinds without classes."""
        return None

    def survival(self, y: np.ndarray, pred: np.ndarray) -> SurvivalRows | None:
        """Time, event and risk per sample (Kaplan–Meier by risk group); None by default."""
        return None

    def horizon_risks(
        self,
        y: np.ndarray,
        pred: np.ndarray,
        columns: Mapping[str, np.ndarray],
        options: MetricOptions,
    ) -> HorizonRisks | None:
        """Follow-up and predicted P(event by each horizon) per sample (calibration at each
        horizon); None for kinds that predict no probability of an event by a time.

        Args:
            y: the scored labels. pred: what the metrics read. columns: the kind's readable
                prediction columns (:meth:`prediction_columns`) of the same rows, ``(n,)`` each,
                named without the ``"<target>_"`` prefix. options: :class:`MetricOptions`.
        """
        return None

    # ---- recalibration and conformal prediction -------------------------------------------

    def logit_nll(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Negative log-likelihood ``(n,)`` of each sample's label under its logits (float64),
        which temperature scaling minimises; kinds with :attr:`recalibrations` override it."""
        raise NotImplementedError(f"target kind {self.name!r} has no logit likelihood")

    def class_probabilities(
        self, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> np.ndarray | None:
        """``(n, K)`` probability of each of ``info["classes"]``, from which conformal prediction
        sets are built; None for a kind whose label is not one of K classes."""
        return None

    def point_values(
        self, info: Mapping[str, Any], outputs: Mapping[str, np.ndarray]
    ) -> np.ndarray | None:
        """``(n,)`` predicted value in the unit of :meth:`scored_labels`, around which conformal
        intervals are built; None for a kind whose label is not one number."""
        return None

    # ---- explanation -----------------------------------------------------------------------

    def reference_index(self, predictions: Mapping[str, Tensor]) -> int | None:
        """For class-valued predictions, the class an explanation follows (the predicted one)."""
        return None

    @abstractmethod
    def explanation_score(self, predictions: Mapping[str, Tensor], reference: int | None) -> Tensor:
        """One number per sample ``(B,)`` that occlusion follows."""

    @abstractmethod
    def score_description(self, info: Mapping[str, Any], reference: int | None) -> str:
        """What :meth:`explanation_score` measures, in words."""

    # ---- example ---------------------------------------------------------------------------

    @abstractmethod
    def example(self) -> Example:
        """A tiny column of labels and its spec section."""


@cache
def get(kind: str) -> TargetKind:
    """The target kind registered as ``kind``; SpecError naming the known kinds otherwise."""
    return TARGETS.get(kind)()


def kinds() -> list[TargetKind]:
    """Every registered kind, sorted by name."""
    return [get(name) for name in TARGETS.names()]


def names_where(**traits: bool) -> list[str]:
    """Names of the kinds whose traits (``cross_entropy=True``, …) all match."""
    return [k.name for k in kinds() if all(getattr(k, t) == v for t, v in traits.items())]


def spec_union() -> Any:
    """The ``Target`` type of a cohort spec: the registered spec classes, told apart by ``kind``."""
    specs = tuple(k.spec for k in kinds())
    return Annotated[Union[specs], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)


def lower_is_better(metric: str) -> bool:
    """True for error-like metrics of any kind (``rmse``, ``brier``, ``ece[melanoma]``) and for
    a loss; the one place that says which way a metric points."""
    base = metric.rsplit("/", 1)[-1].partition("[")[0]
    return base == "loss" or any(base in k.lower_is_better for k in kinds())


def headline(kind: str) -> tuple[str, str]:
    """The headline metric of ``kind`` and its mode: ``("auroc", "max")``, ``("rmse", "min")``."""
    metric = get(kind).headline
    return metric, "min" if lower_is_better(metric) else "max"


def create_head(name: str, info: Mapping[str, Any], *, in_dim: int) -> Head:
    """The head for target ``name`` described by ``info`` (its kind's :meth:`TargetKind.info`).

    Raises:
        ModelError: unknown kind, or an info its kind cannot build a head from.
    """
    kind = info.get("kind")
    if kind not in TARGETS:
        raise ModelError(
            f"target '{name}': unknown kind {kind!r}; known kinds: {', '.join(TARGETS.names())}"
        )
    return get(kind).create_head(name, info, in_dim=in_dim)


def positions(items: Sequence[str]) -> dict[str, int]:
    """Position of each item of a list (class names, vocabulary)."""
    return {item: position for position, item in enumerate(items)}


def listing(names: Sequence[str], last: str = "or") -> str:
    """``a, b or c`` (for messages that list kinds)."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else "".join(names)
