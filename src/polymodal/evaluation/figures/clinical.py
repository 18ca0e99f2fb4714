"""Which clinical figures a report draws, from the models' kept predictions.

Per target, for the full modality set and each single-modality subset (the rows a reader asks
about first: everything available, or only one modality), every model overlaid:

* each yes/no outcome the kind names (:meth:`TargetKind.outcomes`: the positive class, each class
  against the rest, each label): ROC and PR curves, and a reliability diagram;
* an outcome that is its kind's only one (binary): a decision curve;
* decided classes (:meth:`TargetKind.decided_classes`): the confusion matrix;
* survival rows (:meth:`TargetKind.survival`): Kaplan–Meier curves by predicted risk group and
  the time-dependent AUROC over horizons;
* probabilities of an event by each horizon (:meth:`TargetKind.horizon_risks`): calibration at
  each horizon against the Kaplan–Meier event probability, one panel per horizon.

The figures go into ``out_dir`` as PNGs; the report embeds them with their captions and alt
text (which state the numbers the figure shows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from polymodal import targets
from polymodal.evaluation.figures import (
    calibration_plot,
    confusion,
    decision_curve,
    roc_pr,
    survival_calibration,
    survival_curves,
)
from polymodal.evaluation.kept_predictions import KeptPredictions, LabelledRows, subset_name
from polymodal.evaluation.report_figures import png_bytes
from polymodal.targets import MetricOptions


@dataclass(frozen=True)
class FigureEntry:
    """One PNG of the report: its file name, bytes, caption and alt text."""

    file_name: str
    png: bytes
    caption: str
    alt: str


@dataclass
class SubsetFigures:
    """The figures of one target with one modality subset available."""

    label: str
    figures: list[FigureEntry] = field(default_factory=list)


def stem(text: str) -> str:
    """A file-name-safe piece of a name (``"image + tabular"`` → ``"image_tabular"``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._") or "x"


def figure_subsets(subsets: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The full set (the largest evaluated subset) and each single-modality subset."""
    full = max(subsets, key=len)
    return [full] + [s for s in subsets if len(s) == 1 and s != full]


def _ci_text(point: float, low: float, high: float, digits: int = 3) -> str:
    if np.isnan(point):
        return "n/a"
    interval = "" if np.isnan(low) else f" ({low:.{digits}f}–{high:.{digits}f})"
    return f"{point:.{digits}f}{interval}"


class ClinicalFigures:
    """Draws and writes the figures of one report (see the module docstring)."""

    def __init__(self, kept: Mapping[str, KeptPredictions], out_dir, n_boot: int, seed: int):
        self.kept, self.out_dir, self.n_boot, self.seed = kept, out_dir, n_boot, seed

    def target(self, target: str, subsets: list[tuple[str, ...]]) -> list[SubsetFigures]:
        """Every figure of ``target`` for the full set and each single modality."""
        first = next(iter(self.kept.values()))
        info = first.targets[target]
        kind = targets.get(info["kind"])
        options = MetricOptions(
            classes=info.get("classes"),
            specificity=float(first.settings.get("specificity", 0.9)),
            horizons=info.get("horizons"),
        )
        out = []
        for subset in figure_subsets(subsets):
            rows = {m: k.arrays(subset, target) for m, k in self.kept.items()}
            if any(len(r.ids) == 0 for r in rows.values()):
                continue
            section = SubsetFigures(subset_name(subset))
            where = f"{target} with {subset_name(subset)}"
            section.figures += self._outcome_figures(kind, rows, options, where)
            section.figures += self._class_figures(kind, rows, options, where)
            risks = self._horizon_risks(kind, rows, subset, target, options)
            section.figures += self._survival_figures(kind, rows, where, risks is not None)
            if risks is not None:
                section.figures.append(self._horizon_calibration(risks, rows, where))
            if section.figures:
                out.append(section)
        return out

    def _write(self, name: str, figure, caption: str, alt: str) -> FigureEntry:
        data = png_bytes(figure)
        (self.out_dir / name).write_bytes(data)
        return FigureEntry(name, data, caption, alt)

    def _outcome_figures(self, kind, rows, options, where: str) -> list[FigureEntry]:
        outcomes = {m: kind.outcomes(r.y_true, r.prediction, options) for m, r in rows.items()}
        first = next(iter(outcomes.values()))
        entries = []
        for j, outcome in enumerate(first):
            per_model = {m: (o[j], rows[m].groups) for m, o in outcomes.items()}
            prevalence = float(np.mean(outcome.positive))
            title = f"{where}: {outcome.name} (prevalence {prevalence:.2f})"
            name = stem(f"{where}_{outcome.name}")
            entries.append(self._roc_pr(per_model, prevalence, title, name))
            entries.append(self._reliability(per_model, prevalence, title, name))
            if outcome.alone:
                entries.append(self._decision(per_model, prevalence, title, name))
        return entries

    def _roc_pr(self, per_model, prevalence: float, title: str, name: str) -> FigureEntry:
        bands = {
            m: (
                roc_pr.roc_band(o.positive, o.probability, g, n_boot=self.n_boot, seed=self.seed),
                roc_pr.pr_band(o.positive, o.probability, g, n_boot=self.n_boot, seed=self.seed),
            )
            for m, (o, g) in per_model.items()
        }
        figure = roc_pr.roc_pr_figure(bands, prevalence, title)
        areas = "; ".join(
            f"{m}: AUROC {_ci_text(*roc.extras['area'][:3])}, AUPRC {_ci_text(*pr.extras['area'][:3])}"
            for m, (roc, pr) in bands.items()
        )
        alt = f"ROC and precision–recall curves, {title}. {areas}. No skill: AUROC 0.5, AUPRC {prevalence:.3f}."
        caption = (
            "ROC (left) and precision–recall (right) curves; shaded: pointwise 95% band from "
            f"{self.n_boot} bootstrap resamples of patients; dashed: no skill (the diagonal; "
            "the prevalence)."
        )
        return self._write(f"roc_pr_{name}.png", figure, caption, alt)

    def _reliability(self, per_model, prevalence: float, title: str, name: str) -> FigureEntry:
        curves = {
            m: calibration_plot.reliability(
                o.positive, o.probability, g, n_boot=self.n_boot, seed=self.seed
            )
            for m, (o, g) in per_model.items()
        }
        figure = calibration_plot.reliability_figure(curves, prevalence, title)
        eces = "; ".join(f"{m}: ECE {_ci_text(*r.ece[:3])}" for m, r in curves.items())
        alt = f"Reliability diagram, {title}. {eces}."
        caption = (
            f"Observed frequency against mean predicted probability in {calibration_plot.N_BINS} "
            "equal-width bins (bars: 95% bootstrap CI over patients); on the diagonal the "
            "probabilities are calibrated; dashed: the prevalence (no skill). Below: samples "
            "per bin. ECE with its bootstrap CI in the legend."
        )
        return self._write(f"calibration_{name}.png", figure, caption, alt)

    def _decision(self, per_model, prevalence: float, title: str, name: str) -> FigureEntry:
        bands = {
            m: decision_curve.decision_band(
                o.positive, o.probability, g, n_boot=self.n_boot, seed=self.seed
            )
            for m, (o, g) in per_model.items()
        }
        figure = decision_curve.decision_figure(bands, prevalence, title)
        at = {t: int(np.argmin(np.abs(decision_curve.THRESHOLDS - t))) for t in (0.1, 0.2)}
        benefits = "; ".join(
            f"{m}: " + ", ".join(f"{b.point[i]:.3f} at {t:g}" for t, i in at.items())
            for m, b in bands.items()
        )
        alt = f"Decision curve, {title}. Net benefit {benefits}; treat all {decision_curve.treat_all(prevalence, np.array([0.1]))[0]:.3f} at 0.1."
        caption = (
            "Net benefit of treating the patients predicted at or above each threshold, against "
            "treating everyone (dashed) and no one (0); a model is useful at the thresholds "
            "where its curve lies above both. Shaded: 95% bootstrap band over patients."
        )
        return self._write(f"decision_{name}.png", figure, caption, alt)

    def _class_figures(self, kind, rows, options, where: str) -> list[FigureEntry]:
        decided = {
            m: kind.decided_classes(r.y_true, r.prediction, options) for m, r in rows.items()
        }
        if any(d is None for d in decided.values()):
            return []
        matrices = {m: confusion.confusion(d) for m, d in decided.items()}
        rule = next(iter(matrices.values())).rule
        figure = confusion.confusion_figure(matrices, f"{where} (decided: {rule})")
        recalls = "; ".join(
            f"{m}: "
            + ", ".join(f"{n} {v:.2f}" for n, v in zip(c.names, np.diag(c.normalised), strict=True))
            for m, c in matrices.items()
        )
        alt = f"Confusion matrices, {where}, decided by {rule}. Recall per true class: {recalls}."
        caption = (
            f"Confusion matrix (rows: true class; columns: the class decided by {rule}): counts "
            "and the share of each true class (the diagonal is each class's recall)."
        )
        return [self._write(f"confusion_{stem(where)}.png", figure, caption, alt)]

    def _survival_figures(self, kind, rows: Mapping[str, LabelledRows], where: str, calibrated):
        survival = {m: kind.survival(r.y_true, r.prediction) for m, r in rows.items()}
        if any(s is None for s in survival.values()):
            return []
        curves = {m: survival_curves.risk_groups(s) for m, s in survival.items()}
        figure = survival_curves.survival_figure(curves, where)
        alt = f"Kaplan–Meier curves by thirds of predicted risk, {where}, one panel per model."
        caption = (
            "Observed event-free share (Kaplan–Meier) in the thirds of the predicted risk; the "
            "better a model ranks patients, the further apart the curves (high risk lowest)."
        )
        entries = [self._write(f"survival_{stem(where)}.png", figure, caption, alt)]
        return [*entries, self._time_auroc(survival, rows, where, calibrated)]

    def _time_auroc(self, survival, rows, where: str, calibrated: bool) -> FigureEntry:
        horizons = survival_curves.horizons_of(next(iter(survival.values())))
        bands = {
            m: survival_curves.auroc_band(
                s, rows[m].groups, horizons, n_boot=self.n_boot, seed=self.seed
            )
            for m, s in survival.items()
        }
        figure = survival_curves.auroc_figure(bands, horizons, f"{where}: AUROC over time")
        values = "; ".join(
            f"{m}: " + ", ".join(f"{v:.2f} at {h:g}" for h, v in zip(horizons, b[0], strict=True))
            for m, b in bands.items()
        )
        alt = f"Time-dependent AUROC, {where}. {values}."
        caption = (
            "AUROC at each horizon (10th–90th percentile of the event times): cases had the event "
            "by the horizon, controls are event-free beyond it; samples censored before it are "
            "left out (no censoring weights). Shaded: 95% bootstrap band over patients; dashed: "
            "no skill. "
            + (
                "Calibration at each horizon: the next figure."
                if calibrated
                else "Calibration at each horizon is not drawn (a risk score is not a "
                "probability: the Cox loss keeps no baseline hazard)."
            )
        )
        return self._write(f"time_auroc_{stem(where)}.png", figure, caption, alt)

    def _horizon_risks(self, kind, rows, subset, target: str, options):
        """``{model: HorizonRisks}``, or None unless every model predicts probabilities."""
        risks = {
            m: kind.horizon_risks(
                r.y_true, r.prediction, self.kept[m].prediction_columns(subset, target), options
            )
            for m, r in rows.items()
        }
        return None if any(r is None for r in risks.values()) else risks

    def _horizon_calibration(self, risks, rows, where: str) -> FigureEntry:
        curves = {
            m: survival_calibration.horizon_calibration(
                r, rows[m].groups, n_boot=self.n_boot, seed=self.seed
            )
            for m, r in risks.items()
        }
        title = f"{where}: calibration at each horizon"
        figure = survival_calibration.calibration_figure(curves, title)
        errors = "; ".join(
            f"{m}: "
            + ", ".join(
                f"{survival_calibration.error_text(c.error)} by {c.horizon:g}" for c in per_horizon
            )
            for m, per_horizon in curves.items()
        )
        groups = len(next(iter(curves.values()))[0].sizes)
        alt = (
            f"Calibration at each horizon, {where}: predicted probability of an event by the "
            f"horizon against the Kaplan–Meier observed probability in {groups} groups of the "
            f"prediction, one panel per horizon. Calibration error (ECE, 95% CI): {errors}."
        )
        caption = (
            f"Calibration at each horizon: the samples in {groups} equal-count groups of the "
            "predicted probability of an event by the horizon; each group's mean prediction "
            "against its observed probability, the Kaplan–Meier estimate 1 − S(horizon), which "
            "counts censored samples only while followed (bars: 95% bootstrap CI over patients). "
            "On the diagonal the probabilities are calibrated. ECE: the group-size-weighted mean "
            "distance from the diagonal, with its bootstrap CI, in the legend; with few samples "
            "per group, noise alone keeps it above 0 (and resamples, with repeated patients, "
            "further, so its interval can lie above the point)."
        )
        return self._write(f"horizon_calibration_{stem(where)}.png", figure, caption, alt)
