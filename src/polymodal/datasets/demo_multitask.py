"""The multitask demo cohort (M3FM-style lung screening): five tasks of five kinds, each prompted.

:func:`make_multitask_cohort` writes a small but real cohort for multitask, prompt-driven models
(methods.md §2): a 32³ chest CT-like NIfTI volume per sample (voxel spacing 1.0-2.5 mm in the
header), lab values (tabular ``labs``), demographics and smoking history serialized to sentences
(text ``clinical``, ``from_columns`` + ``sentences``), a free-text clinic ``note``, and five
targets, each with a canonical task prompt and paraphrases in the spec's ``prompts``.

Hidden factors (``planted_features.csv``): per patient ``age`` (50-80), ``sex``, ``smoking``,
``pack_years`` (0 for never smokers, 1-150 otherwise) and ``family_history`` (15 %); per sample
``large_nodule`` (35 %) and the nodule radius in mm (3.5-5.5 small, 7.0-9.5 large, drawn by the
single-task demo's renderer), ``emphysema`` (uniform 0-1: the share of lung voxels, up to 30 %,
that are low-attenuation), ``ldl`` (mg/dL), ``chest_pain`` (30 %) and ``breathless`` (35 %) named
in the note. The rules, one per task, over different factors::

    lung_cancer  cumulative_risk, horizons 1..6 years (columns cancer_years, cancer_event)
                 event time ~ Exponential(hazard), hazard per year =
                 0.02 · exp(1.8·large_nodule + 0.02·(pack_years − 25) + 0.05·(age − 65)
                            + 0.6·family_history)
                 censored at the end of follow-up (uniform 4-9 years: administrative) or at a
                 loss to follow-up (Exponential with rate `censoring` per year: random),
                 whichever comes first                       # volume × clinical text
    cardiac      binary: P(1) = 0.05 + 0.9 · sigmoid((ldl − 150) / 12 + 1.0·chest_pain)
                                                             # labs (ldl dominates) × note
    lung_rads    multiclass "1"-"4" from the nodule radius in mm: < 4.5 → 1, < 5.5 → 2,
                 < 8.25 → 3, else 4                          # volume only, in mm
    fev1         regression, FEV1 % predicted =
                 100 − 35·emphysema − 0.25·pack_years − 10·breathless + N(0, 4²)
                                                             # volume × clinical text × note
    pack_years   digits (3): the pack-years the clinical text states (M3FM's clinical_number)

**Planted informative element** (:data:`INFORMATIVE_ELEMENT`): ``cardiac`` depends mostly on
the lab ``ldl`` of the ``labs`` modality (alone it gives the label at AUROC 0.84-0.87; chest
pain, the only other input in the rule, at 0.54-0.55; every other element at chance), so an
explanation of ``cardiac`` must rank ``ldl`` first.

Each task is labelled on its own random subset of rows (:data:`LABELLED_FRACTION`, 65-85 %);
each modality is missing for a sample with probability ``missing_rate`` (never all four) and each
tabular or clinical value with ``value_missing_rate``. The split is grouped by patient (about one
patient in four has 2-3 samples). Every random part draws from its own stream, so the same seed
gives byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from polymodal.datasets._demo_render import OTHER_SYMPTOMS, nodule_volume
from polymodal.datasets.demo import _patients_of_samples, _save_nifti, _split
from polymodal.datasets.prepare import prepare_output_dir, read_marker, write_marker, write_spec
from polymodal.errors import PolymodalError

MULTITASK_KIND = "demo-multitask"
# Independent random streams: a new part takes a new number, existing numbers never change.
_STREAMS = {
    "patients": 0,
    "factors": 1,
    "volume": 2,
    "note": 3,
    "values": 4,
    "availability": 5,
    "labels": 6,
    "events": 7,
    "censoring": 8,
    "outcomes": 9,
}
MODALITIES = ("ct", "labs", "clinical", "note")
LABS = ("ldl", "hdl", "crp", "egfr", "hemoglobin", "glucose")
CLINICAL = ("age", "sex", "smoking", "pack_years", "family_history", "bmi")
HORIZONS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
LUNG_RADS_EDGES_MM = (4.5, 5.5, 8.25)  # radius cut points between categories 1|2|3|4
LABELLED_FRACTION = {
    "lung_cancer": 0.85,
    "cardiac": 0.75,
    "lung_rads": 0.7,
    "fev1": 0.65,
    "pack_years": 0.8,
}
# The one input that drives one task: what an explanation of that task must rank first.
INFORMATIVE_ELEMENT = {"target": "cardiac", "modality": "labs", "column": "ldl"}

PROMPTS = {
    "lung_cancer": [
        "Predict the lung cancer risk over six years.",
        "What is the risk that this patient develops lung cancer within six years?",
        "Estimate the cumulative probability of lung cancer by each year up to year six.",
    ],
    "cardiac": [
        "Is there any significant cardiovascular abnormality?",
        "Does this patient have a significant cardiovascular abnormality?",
        "Is cardiovascular disease present?",
    ],
    "lung_rads": [
        "What is the Lung-RADS category of this screening CT?",
        "Assign the Lung-RADS category.",
        "Which Lung-RADS category does the nodule fall into?",
    ],
    "fev1": [
        "Predict the FEV1 in percent of the predicted value.",
        "How much of the predicted forced expiratory volume in one second does this patient reach?",
        "Estimate the lung function as FEV1 percent predicted.",
    ],
    "pack_years": [
        "How many pack-years has the patient smoked?",
        "What is the patient's smoking history in pack-years?",
        "Retrieve the number of pack-years from the clinical information.",
    ],
}
SENTENCES: dict[str, str | dict[str, str]] = {
    "age": "The patient is {value} years old.",
    "sex": {"F": "The patient is female.", "M": "The patient is male."},
    "smoking": {"current": "Current smoker.", "former": "Former smoker.", "never": "Never smoked."},
    "pack_years": "Smoking history of {value} pack-years.",
    "family_history": {
        "yes": "A parent or sibling had lung cancer.",
        "no": "No family history of lung cancer.",
    },
    "bmi": "Body mass index is {value}.",
}
CHEST_PAIN = ("chest pain on exertion", "pressure-like chest pain", "angina-type chest pain")
BREATHLESS = ("shortness of breath", "dyspnea on exertion", "breathlessness on stairs")
CARDIAC_FLOOR = 0.05
_EMPHYSEMA_MAX_SHARE = 0.3
_EMPHYSEMA_DROP_HU = (80.0, 100.0)
_NODULE_MARGIN_MM = 2.5


@dataclass(frozen=True)
class MultitaskSettings:
    """Everything that determines a multitask demo cohort (saved in its marker file)."""

    n: int = 1000
    seed: int = 0
    missing_rate: float = 0.2
    value_missing_rate: float = 0.1
    censoring: float = 0.05
    volume_size: int = 32


def _rng(seed: int, stream: str, *sub: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream], *sub])


def _draw_factors(settings: MultitaskSettings) -> pd.DataFrame:
    """One row per sample: patient-level traits and the sample's hidden factors."""
    n = settings.n
    patient = _patients_of_samples(_rng(settings.seed, "patients"), n)
    n_patients = int(patient.max()) + 1
    rng = _rng(settings.seed, "factors")
    smoking = rng.choice(["never", "former", "current"], n_patients, p=[0.3, 0.4, 0.3])
    smoked = np.clip(np.round(rng.lognormal(np.log(30.0), 0.6, n_patients)), 1, 150)
    per_patient = {
        "age": rng.integers(50, 81, n_patients),
        "sex": rng.choice(["F", "M"], n_patients),
        "smoking": smoking,
        "pack_years": np.where(smoking == "never", 0, smoked).astype(int),
        "family_history": rng.random(n_patients) < 0.15,
        "bmi": np.round(rng.normal(27.0, 4.5, n_patients), 1),
    }
    factors = pd.DataFrame(
        {
            "sample_id": [f"M{i:05d}" for i in range(n)],
            "patient_id": [f"P{p:05d}" for p in patient],
            **{name: values[patient] for name, values in per_patient.items()},
            "large_nodule": rng.random(n) < 0.35,
            "emphysema": np.round(rng.uniform(0.0, 1.0, n), 4),
            "chest_pain": rng.random(n) < 0.3,
            "breathless": rng.random(n) < 0.35,
            # Rounded as written to the manifest, so the rules hold on the values a user sees.
            "ldl": np.round(rng.normal(135.0, 35.0, n)).astype(int),
            "hdl": np.round(rng.normal(52.0, 14.0, n)).astype(int),
            "crp": np.round(np.exp(rng.normal(np.log(4.0), 0.9, n)), 1),
            "egfr": np.round(rng.normal(82.0, 16.0, n)).astype(int),
            "hemoglobin": np.round(rng.normal(13.8, 1.4, n), 1),
            "glucose": np.round(rng.normal(100.0, 18.0, n)).astype(int),
        }
    )
    return factors


def cancer_hazard(factors: pd.DataFrame) -> np.ndarray:
    """Yearly lung-cancer hazard ``(n,)`` of the planted rule (see the module docstring)."""
    log_hazard = (
        np.log(0.02)
        + 1.8 * factors["large_nodule"].to_numpy()
        + 0.02 * (factors["pack_years"].to_numpy() - 25)
        + 0.05 * (factors["age"].to_numpy() - 65)
        + 0.6 * factors["family_history"].to_numpy()
    )
    return np.exp(log_hazard)


def lung_rads_category(radius_mm: np.ndarray) -> np.ndarray:
    """Lung-RADS-like category "1"-"4" ``(n,)`` from the nodule radius in mm."""
    return (np.searchsorted(LUNG_RADS_EDGES_MM, radius_mm, side="right") + 1).astype(str)


def _outcomes(factors: pd.DataFrame, settings: MultitaskSettings) -> pd.DataFrame:
    """Every task's label for every sample (before labels are hidden), plus the event times."""
    n, seed = settings.n, settings.seed
    event_time = _rng(seed, "events").exponential(1.0 / cancer_hazard(factors))
    censor_rng = _rng(seed, "censoring")
    end_of_follow_up = censor_rng.uniform(4.0, 9.0, n)
    lost = censor_rng.exponential(1.0 / settings.censoring, n) if settings.censoring else np.inf
    censor_time = np.minimum(end_of_follow_up, lost)
    observed = np.maximum(np.round(np.minimum(event_time, censor_time), 2), 0.01)
    rng = _rng(seed, "outcomes")
    cardiac_logit = (factors["ldl"].to_numpy() - 150.0) / 12.0 + 1.0 * factors["chest_pain"]
    # The floor and ceiling keep every ldl range from fixing the label (no value looks like leakage).
    cardiac_risk = CARDIAC_FLOOR + (1 - 2 * CARDIAC_FLOOR) / (
        1.0 + np.exp(-cardiac_logit.to_numpy())
    )
    cardiac = rng.random(n) < cardiac_risk
    fev1 = (
        100.0
        - 35.0 * factors["emphysema"].to_numpy()
        - 0.25 * factors["pack_years"].to_numpy()
        - 10.0 * factors["breathless"].to_numpy()
        + rng.normal(0.0, 4.0, n)
    )
    return pd.DataFrame(
        {
            "event_time": np.round(event_time, 4),
            "censor_time": np.round(censor_time, 4),
            "cancer_years": observed,
            "cancer_event": (event_time <= censor_time).astype(int),
            "cardiac_risk": np.round(cardiac_risk, 6),
            "cardiac": cardiac.astype(int),
            "lung_rads": lung_rads_category(factors["nodule_radius_mm"].to_numpy()),
            "fev1_percent": np.round(fev1, 1),
            "pack_years_answer": factors["pack_years"].to_numpy(),
        }
    )


def chest_volume(
    rng: np.random.Generator, large_nodule: bool, emphysema: float, size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """A CT-like cube with one nodule (the single-task demo's renderer) and emphysema texture.

    Emphysema is a smooth random field (correlation about 3 mm, so it is a texture in mm whatever
    the spacing) thresholded so that ``0.3 · emphysema`` of the voxels away from the nodule turn
    low-attenuation (80-100 HU darker); the nodule and a 2.5 mm margin around it are left alone,
    so the nodule radius stays measurable.

    Returns:
        voxels: int16 ``(size, size, size)`` in (x, y, z) order; spacing: float ``(3,)`` mm;
        radius: the nodule's radius in mm.
    """
    voxels, spacing, radius = nodule_volume(rng, large_nodule, size)
    hu = voxels.astype(np.float32)
    # The nodule is the bright part (contrast 60-160 HU over a bias field of at most ±15 HU);
    # its centre of mass and known radius give the region to keep clear.
    bright = ndimage.gaussian_filter(hu, 1.0, truncate=2.0) > np.median(hu) + 30.0
    axes = [(np.arange(size) - (size - 1) / 2) * step for step in spacing]  # mm per axis
    centre_mm = (np.array(ndimage.center_of_mass(bright)) - (size - 1) / 2) * spacing
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    distance = np.sqrt((x - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (z - centre_mm[2]) ** 2)
    lung = distance > radius + _NODULE_MARGIN_MM
    field = ndimage.gaussian_filter(
        rng.normal(size=hu.shape).astype(np.float32), sigma=3.0 / spacing, truncate=2.0
    )
    share = _EMPHYSEMA_MAX_SHARE * emphysema
    if share > 0 and lung.any():
        cut = np.quantile(field[lung], 1.0 - share)
        hu = hu - rng.uniform(*_EMPHYSEMA_DROP_HU) * ((field > cut) & lung)
    return np.round(hu).astype(np.int16), spacing, radius


def screening_note(rng: np.random.Generator, chest_pain: bool, breathless: bool) -> str:
    """A short screening-visit note; it names chest pain / breathlessness exactly when set.

    Nuisance: one to three other symptoms, duration, negated other symptoms (never a planted
    one), a plan.
    """
    others = list(rng.choice(OTHER_SYMPTOMS, size=int(rng.integers(1, 4)) + 2, replace=False))
    named, denied = others[:-2], others[-2:]
    for present, phrases in ((chest_pain, CHEST_PAIN), (breathless, BREATHLESS)):
        if present:
            named.insert(int(rng.integers(0, len(named) + 1)), str(rng.choice(phrases)))
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    parts = [f"Screening visit. Reports {listed} for {int(rng.integers(2, 40))} days."]
    if rng.random() < 0.5:
        parts.append(f"Denies {denied[0]} and {denied[1]}.")
    parts.append(str(rng.choice(["Scan reviewed.", "Results to follow.", "Routine follow-up."])))
    return " ".join(parts)


def _availability(settings: MultitaskSettings) -> pd.DataFrame:
    """Per-sample modality availability ``(n, M)``: each missing independently, never all."""
    rng = _rng(settings.seed, "availability")
    available = rng.random((settings.n, len(MODALITIES))) >= settings.missing_rate
    rescue = rng.integers(0, len(MODALITIES), settings.n)
    none_left = ~available.any(axis=1)
    available[none_left, rescue[none_left]] = True
    return pd.DataFrame(available, columns=list(MODALITIES))


def _labelled(settings: MultitaskSettings) -> pd.DataFrame:
    """Per task, which rows carry a label ``(n, T)``: its own random subset of the given share."""
    columns = {}
    for index, (task, share) in enumerate(LABELLED_FRACTION.items()):
        chosen = _rng(settings.seed, "labels", index).permutation(settings.n)
        columns[task] = np.isin(np.arange(settings.n), chosen[: round(share * settings.n)])
    return pd.DataFrame(columns)


def _cells(factors: pd.DataFrame, settings: MultitaskSettings) -> pd.DataFrame:
    """Lab and clinical columns as manifest text, each value missing with ``value_missing_rate``."""
    table = factors[list(LABS + CLINICAL)].astype(str)
    table["family_history"] = np.where(factors["family_history"], "yes", "no")
    rng = _rng(settings.seed, "values")
    for column in table.columns:
        missing = rng.random(len(table)) < settings.value_missing_rate
        table.loc[missing, column] = "unknown" if column == "sex" else ""
    return table


def _spec(settings: MultitaskSettings) -> dict:
    size = settings.volume_size
    targets: dict[str, dict] = {
        "lung_cancer": {
            "kind": "cumulative_risk",
            "time_column": "cancer_years",
            "event_column": "cancer_event",
            "horizons": list(HORIZONS),
        },
        "cardiac": {"kind": "binary", "column": "cardiac", "positive": "1", "negative": "0"},
        "lung_rads": {"kind": "multiclass", "column": "lung_rads", "classes": ["1", "2", "3", "4"]},
        "fev1": {"kind": "regression", "column": "fev1_percent"},
        "pack_years": {"kind": "digits", "column": "pack_years_answer", "num_digits": 3},
    }
    for name, target in targets.items():
        target["prompts"] = list(PROMPTS[name])
    return {
        "name": "polymodal-demo-multitask",
        "manifest": "manifest.csv",
        "id_column": "sample_id",
        "group_column": "patient_id",
        "split": {"column": "split"},
        "targets": targets,
        "modalities": {
            "ct": {
                "kind": "volume",
                "column": "ct_volume",
                "spacing": [2.0, 2.0, 2.0],
                "window": [-100.0, 300.0],
                "size": [size, size, size],
            },
            "labs": {"kind": "tabular", "numeric": list(LABS)},
            "clinical": {
                "kind": "text",
                "from_columns": list(CLINICAL),
                "sentences": SENTENCES,
                "max_tokens": 64,
            },
            "note": {"kind": "text", "column": "note", "max_tokens": 64},
        },
    }


_SPEC_HEADER = """\
# polymodal multitask demo cohort (synthetic lung screening), written by
# `polymodal demo-data --multitask`. Five tasks, each with its prompts (first = canonical):
#   lung_cancer  cumulative risk by years 1-6: hazard grows with a large nodule (`ct`),
#                pack-years, age and family history (`clinical`); censored rows leave later
#                horizons unknown
#   cardiac      binary: mostly the lab `ldl` (`labs`), a little chest pain named in `note`
#   lung_rads    Lung-RADS-like 1-4 from the nodule radius in mm (`ct`)
#   fev1         FEV1 % predicted: emphysema texture (`ct`), pack-years, breathlessness (`note`)
#   pack_years   3 digits: the pack-years stated in the `clinical` text
# Each task is labelled on its own subset of rows (empty cell = no label). See
# docs/demo_cohort.md; planted_features.csv holds the hidden factors (checks only, never inputs).
"""


def make_multitask_cohort(
    out: Path | str,
    n: int = 1000,
    seed: int = 0,
    missing_rate: float = 0.2,
    censoring: float = 0.05,
    value_missing_rate: float = 0.1,
    volume_size: int = 32,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the multitask demo cohort into ``out`` and return the path of its ``spec.yaml``.

    Args:
        out: output folder; created if needed. A non-empty folder that is not a previous
            multitask demo cohort is refused unless ``force``.
        n: number of samples (rows of the manifest).
        seed: everything written is a deterministic function of the settings and this seed.
        missing_rate: per-modality probability that a sample lacks it (at least one stays).
        censoring: yearly rate of loss to follow-up (random censoring of ``lung_cancer``); 0
            leaves only the administrative end of follow-up (4-9 years).
        value_missing_rate: per-value probability that a lab or clinical cell is missing.
        volume_size: side of the cubic CT volumes in voxels.
        force: write into a non-empty folder that is not a multitask demo cohort.
        progress: called with a short message now and then (e.g. ``print``).

    Raises:
        PolymodalError: ``out`` holds other files, or a setting is out of range.
    """
    settings = MultitaskSettings(
        n=n,
        seed=seed,
        missing_rate=missing_rate,
        value_missing_rate=value_missing_rate,
        censoring=censoring,
        volume_size=volume_size,
    )
    _check_settings(settings)
    out = Path(out)
    say = progress or (lambda message: None)
    prepare_output_dir(out, MULTITASK_KIND, force=force, generated=("volumes",))
    (out / "volumes").mkdir(exist_ok=True)

    factors = _draw_factors(settings)
    available = _availability(settings)
    say(f"rendering {n} samples (volumes, notes) into {out}")
    rng_volume, rng_note = _rng(seed, "volume"), _rng(seed, "note")
    rendered = []
    for row, has_ct in zip(factors.itertuples(index=False), available["ct"], strict=True):
        # Rendered even when missing, so each stream advances the same way whatever is missing.
        voxels, spacing, radius = chest_volume(
            rng_volume, row.large_nodule, row.emphysema, volume_size
        )
        if has_ct:
            _save_nifti(out / "volumes" / f"{row.sample_id}.nii.gz", voxels, spacing)
        rendered.append(
            {
                "nodule_radius_mm": round(radius, 4),
                "spacing_x": round(float(spacing[0]), 6),
                "spacing_y": round(float(spacing[1]), 6),
                "spacing_z": round(float(spacing[2]), 6),
                "note": screening_note(rng_note, row.chest_pain, row.breathless),
            }
        )
    rendered_frame = pd.DataFrame(rendered)
    factors["nodule_radius_mm"] = rendered_frame["nodule_radius_mm"]
    outcomes = _outcomes(factors, settings)
    labelled = _labelled(settings)

    ids = factors["sample_id"]
    labels = outcomes[
        ["cancer_years", "cancer_event", "cardiac", "lung_rads", "fev1_percent"]
    ].astype(str)
    labels["pack_years_answer"] = outcomes["pack_years_answer"].astype(str)
    label_columns = {
        "lung_cancer": ["cancer_years", "cancer_event"],
        "cardiac": ["cardiac"],
        "lung_rads": ["lung_rads"],
        "fev1": ["fev1_percent"],
        "pack_years": ["pack_years_answer"],
    }
    for task, columns in label_columns.items():
        labels.loc[~labelled[task], columns] = ""
    manifest = pd.concat(
        [
            pd.DataFrame(
                {
                    "sample_id": ids,
                    "patient_id": factors["patient_id"],
                    "split": _split(factors["patient_id"], seed),
                }
            ),
            labels,
            pd.DataFrame(
                {"ct_volume": "volumes/" + ids + ".nii.gz", "note": rendered_frame["note"]}
            ),
            _cells(factors, settings),
        ],
        axis=1,
    )
    manifest.loc[~available["ct"], "ct_volume"] = ""
    manifest.loc[~available["note"], "note"] = ""
    manifest.loc[~available["labs"], list(LABS)] = ""
    manifest.loc[~available["clinical"], list(CLINICAL)] = ""
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")

    planted = pd.concat(
        [
            factors,
            rendered_frame.drop(columns=["note", "nodule_radius_mm"]),
            outcomes[["event_time", "censor_time", "cardiac_risk"]],
            pd.DataFrame({"cancer_hazard": np.round(cancer_hazard(factors), 6)}),
            available.add_prefix("available_"),
            labelled.add_prefix("labelled_"),
        ],
        axis=1,
    )
    planted.to_csv(out / "planted_features.csv", index=False, lineterminator="\n")

    spec_path = write_spec(out, _spec(settings), _SPEC_HEADER)
    write_marker(out, MULTITASK_KIND, asdict(settings))
    say(f"wrote {n} samples with {len(LABELLED_FRACTION)} tasks; spec: {spec_path}")
    return spec_path


def _check_settings(settings: MultitaskSettings) -> None:
    problems = []
    if settings.n < 10:
        problems.append(f"n must be at least 10 (got {settings.n})")
    for name in ("missing_rate", "value_missing_rate"):
        value = getattr(settings, name)
        if not 0.0 <= value < 1.0:
            problems.append(f"{name} must be in [0, 1) (got {value})")
    if settings.censoring < 0:
        problems.append(f"censoring must be a yearly rate of at least 0 (got {settings.censoring})")
    if settings.volume_size < 16:
        problems.append(f"volume_size must be at least 16 (got {settings.volume_size})")
    if problems:
        raise PolymodalError("multitask demo cohort: " + "; ".join(problems))


def read_multitask_settings(folder: Path | str) -> MultitaskSettings | None:
    """The settings a multitask demo cohort folder was made with, or None if it is not one."""
    marker = read_marker(Path(folder))
    if marker is None or marker.get("kind") != MULTITASK_KIND:
        return None
    return MultitaskSettings(**marker["settings"])


__all__ = [
    "HORIZONS",
    "INFORMATIVE_ELEMENT",
    "LABELLED_FRACTION",
    "PROMPTS",
    "MultitaskSettings",
    "cancer_hazard",
    "lung_rads_category",
    "make_multitask_cohort",
    "read_multitask_settings",
]
