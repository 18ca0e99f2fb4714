"""The synthetic demo cohort: every modality, a planted cross-modal rule, known missingness.

:func:`make_demo_cohort` writes a small but real cohort: 64×64 greyscale PNG lesion images,
32³ NIfTI volumes whose voxel spacing varies per sample (in the header, in mm), one CSV time
series per sample (irregular times, unmeasured values), a free-text note and tabular values in
``manifest.csv``, and a ready ``spec.yaml``. The binary target ``label`` follows a rule that
needs several modalities at once::

    label = (lesion elongated in the image        AND  crp > 10 mg/L)       # image × tabular
         OR (breathing symptom named in the note  AND  age > 60)           # text × tabular
         OR (nodule radius ≥ 7 mm in the volume   AND  SpO2 falling)        # volume × series

The six planted factors are independent coins (probability 0.40-0.45 each; the label is positive
for about 47 % of samples), so every single modality alone predicts the label only weakly
(Bayes-optimal AUROC 0.63-0.65; tabular 0.72, as it holds two halves) while all modalities
together determine it. The nodule radius is in
millimetres and the spacing varies, so a reader that ignores the spacing loses that signal.
Nuisance variation everywhere (position, size, rotation, intensity, noise, bias field, artefact
specks, irrelevant words, labs and channels) keeps it from being trivial.

Every random part draws from its own stream (:data:`_STREAMS`), so adding a modality or a task
later leaves the existing images, volumes, series, notes, values, split and labels the same for
a given seed (only the pattern of missing modalities is drawn jointly).
``planted_features.csv`` records the planted factors per sample for checks only; the spec never
refers to it.

With ``second_view=True`` each lesion also gets an RGB close-up (``closeup``: colour and texture
from inside the lesion, no outline) and a 4-class target ``lesion_type`` = shape in the overview
× blue-grey veil in the close-up, which neither image determines alone (the cohort of the Early
Intervention benchmarks; ``two_view.yaml`` is the spec of just those two images and that target).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from PIL import Image
from sklearn.model_selection import GroupShuffleSplit

from polymodal.data.spec import parse_spec
from polymodal.datasets._demo_render import (
    closeup_image,
    lesion_image,
    nodule_volume,
    visit_note,
    vitals_series,
)
from polymodal.datasets.prepare import prepare_output_dir, read_marker, write_marker, write_spec
from polymodal.errors import PolymodalError

DEMO_KIND = "demo"
# Independent random streams: a new part takes a new number, existing numbers never change.
_STREAMS = {
    "patients": 0,
    "factors": 1,
    "image": 2,
    "volume": 3,
    "series": 4,
    "note": 5,
    "tabular": 6,
    "availability": 7,
    "split": 8,
    "label_noise": 9,
    "unseen_site": 10,
    # The second image (second_view=True); numbers apart from the others' growth.
    "closeup_factor": 21,
    "closeup": 22,
    "closeup_availability": 23,
}
MODALITIES = ("lesion", "ct", "labs", "note", "vitals")
CRP_THRESHOLD = 10.0  # mg/L
AGE_THRESHOLD = 60  # years
NODULE_RADIUS_THRESHOLD = 7.0  # mm; small nodules are 3.5-5.5 mm, large ones 7-9.5 mm
_FACTOR_RATE = 0.45
_SITES = ("site_a", "site_b", "site_c", "site_d")
_VEIL_RATE = 0.4
# lesion_type (second_view=True): shape from the overview × colour from the close-up.
LESION_TYPES = ("round_plain", "round_veil", "elongated_plain", "elongated_veil")
# Appears only outside the training split, so a model meets a category it never saw.
UNSEEN_SITE = "site_e"
_NUMERIC = ("age", "crp", "sodium", "hemoglobin", "bmi")
_CATEGORICAL = ("sex", "smoking", "site")


@dataclass(frozen=True)
class DemoSettings:
    """Everything that determines a demo cohort (saved in its marker file)."""

    n: int = 2000
    seed: int = 0
    missing_rate: float = 0.2
    value_missing_rate: float = 0.1
    label_noise: float = 0.0
    image_size: int = 64
    volume_size: int = 32
    second_view: bool = False


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


def _patients_of_samples(rng: np.random.Generator, n: int) -> np.ndarray:
    """Patient index per sample ``(n,)``: most patients have one sample, some two or three."""
    visits = rng.choice([1, 2, 3], size=n, p=[0.75, 0.18, 0.07])
    return np.repeat(np.arange(n), visits)[:n]


def _draw_factors(settings: DemoSettings) -> pd.DataFrame:
    """One row per sample: patient-level traits, the planted factors and the clean label."""
    n = settings.n
    patient = _patients_of_samples(_rng(settings.seed, "patients"), n)
    n_patients = int(patient.max()) + 1
    rng = _rng(settings.seed, "factors")
    # Patient-level: the same person keeps age, sex, smoking and site over visits.
    age = rng.integers(25, 89, n_patients)[patient]
    sex = rng.choice(["F", "M"], n_patients)[patient]
    smoking = rng.choice(["never", "former", "current"], n_patients, p=[0.55, 0.3, 0.15])[patient]
    site = rng.choice(_SITES, n_patients, p=[0.4, 0.3, 0.2, 0.1])[patient]
    factors = pd.DataFrame(
        {
            "sample_id": [f"S{i:05d}" for i in range(n)],
            "patient_id": [f"P{p:05d}" for p in patient],
            "age": age,
            "sex": sex,
            "smoking": smoking,
            "site": site,
            # Rounded as written to the manifest, so the rule holds on the values a user sees.
            "crp": np.round(np.exp(rng.normal(np.log(8.0), 0.9, n)), 1),
            "sodium": np.round(rng.normal(139.0, 3.0, n)).astype(int),
            "hemoglobin": np.round(rng.normal(13.5, 1.5, n), 1),
            "bmi": np.round(rng.normal(27.0, 4.5, n), 1),
            "elongated_lesion": rng.random(n) < _FACTOR_RATE,
            "breathing_symptom": rng.random(n) < _FACTOR_RATE,
            "large_nodule": rng.random(n) < _FACTOR_RATE,
            "spo2_falling": rng.random(n) < _FACTOR_RATE,
        }
    )
    factors["high_crp"] = factors["crp"] > CRP_THRESHOLD
    factors["older"] = factors["age"] > AGE_THRESHOLD
    factors["label_clean"] = planted_label(factors)
    return factors


def planted_label(factors: pd.DataFrame) -> np.ndarray:
    """The planted rule on boolean factor columns: ``(n,)`` int 0/1 (see the module docstring)."""
    lesion_and_crp = factors["elongated_lesion"] & factors["high_crp"]
    symptom_and_age = factors["breathing_symptom"] & factors["older"]
    nodule_and_spo2 = factors["large_nodule"] & factors["spo2_falling"]
    return (lesion_and_crp | symptom_and_age | nodule_and_spo2).to_numpy().astype(int)


def _availability(settings: DemoSettings) -> pd.DataFrame:
    """Per-sample modality availability ``(n, M)``: each missing independently, never all."""
    rng = _rng(settings.seed, "availability")
    available = rng.random((settings.n, len(MODALITIES))) >= settings.missing_rate
    rescue = rng.integers(0, len(MODALITIES), settings.n)
    none_left = ~available.any(axis=1)
    available[none_left, rescue[none_left]] = True
    return pd.DataFrame(available, columns=list(MODALITIES))


def _unseen_site_rows(
    tabular: pd.DataFrame, available: pd.DataFrame, split: np.ndarray, seed: int
) -> np.ndarray:
    """Rows (about 3 % of those outside train, at least one) that get :data:`UNSEEN_SITE`."""
    eligible = (
        (split != "train") & (tabular["site"] != "").to_numpy() & available["labs"].to_numpy()
    )
    candidates = np.flatnonzero(eligible)
    rng = _rng(seed, "unseen_site")
    chosen = candidates[rng.random(len(candidates)) < 0.03]
    if len(chosen) == 0 and len(candidates) > 0:
        chosen = candidates[[int(rng.integers(len(candidates)))]]
    return chosen


def _split(patient_id: pd.Series, seed: int) -> np.ndarray:
    """train/val/test (about 70/15/15 of patients), every patient in exactly one split."""
    groups = patient_id.to_numpy()
    split = np.full(len(groups), "train", dtype=object)
    outer = GroupShuffleSplit(n_splits=1, test_size=0.15, random_state=seed)
    rest, test = next(outer.split(groups, groups=groups))
    split[test] = "test"
    inner = GroupShuffleSplit(n_splits=1, test_size=0.15 / 0.85, random_state=seed + 1)
    _, val = next(inner.split(groups[rest], groups=groups[rest]))
    split[rest[val]] = "val"
    return split


def _save_nifti(path: Path, voxels: np.ndarray, spacing: np.ndarray) -> None:
    """Write ``(X, Y, Z)`` voxels with an RAS affine of ``spacing`` mm, centred on the origin."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(voxels.shape) - 1) / 2 * spacing
    image = nib.Nifti1Image(voxels, affine)
    image.header.set_xyzt_units("mm")
    # gzip without a timestamp, so the same seed gives the same bytes.
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))


def _write_files(
    out: Path, factors: pd.DataFrame, available: pd.DataFrame, settings: DemoSettings
) -> pd.DataFrame:
    """Render every sample's image, volume, series and note; returns the per-sample extras.

    Every sample is rendered, so each stream advances the same way whatever is missing, but only
    the files of available modalities are written.
    """
    for folder in ("images", "volumes", "series"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rng_image = _rng(settings.seed, "image")
    rng_volume = _rng(settings.seed, "volume")
    rng_series = _rng(settings.seed, "series")
    rng_note = _rng(settings.seed, "note")
    extras = []
    for row, present in zip(
        factors.itertuples(index=False), available.itertuples(index=False), strict=True
    ):
        pixels, aspect = lesion_image(rng_image, row.elongated_lesion, settings.image_size)
        if present.lesion:
            Image.fromarray(pixels, mode="L").save(out / "images" / f"{row.sample_id}.png")
        voxels, spacing, radius = nodule_volume(rng_volume, row.large_nodule, settings.volume_size)
        if present.ct:
            _save_nifti(out / "volumes" / f"{row.sample_id}.nii.gz", voxels, spacing)
        series, slope = vitals_series(rng_series, row.spo2_falling)
        if present.vitals:
            series.to_csv(out / "series" / f"{row.sample_id}.csv", index=False, float_format="%g")
        extras.append(
            {
                "note": visit_note(rng_note, row.breathing_symptom),
                "lesion_aspect_ratio": round(aspect, 4),
                "nodule_radius_mm": round(radius, 4),
                "spo2_slope_per_hour": round(slope, 5),
                "spacing_x": round(float(spacing[0]), 6),
                "spacing_y": round(float(spacing[1]), 6),
                "spacing_z": round(float(spacing[2]), 6),
            }
        )
    return pd.DataFrame(extras)


def _write_closeups(
    out: Path, factors: pd.DataFrame, lesion_available: np.ndarray, settings: DemoSettings
) -> pd.DataFrame:
    """The second image of each lesion (an RGB close-up) and the target that needs both images.

    ``lesion_type`` crosses the overview's shape (``elongated_lesion``) with the close-up's
    colour (``blue_grey_veil``); neither image alone shows both. The close-up is missing with
    ``missing_rate``, except where the overview is missing: a sample keeps at least one image.

    Returns:
        one row per sample: ``blue_grey_veil``, ``veil_fraction``, ``available_closeup``,
        ``lesion_type``.
    """
    n = settings.n
    veil = _rng(settings.seed, "closeup_factor").random(n) < _VEIL_RATE
    dropped = _rng(settings.seed, "closeup_availability").random(n) < settings.missing_rate
    available = ~dropped | ~lesion_available
    rng = _rng(settings.seed, "closeup")
    (out / "closeups").mkdir(parents=True, exist_ok=True)
    fractions = []
    for sample_id, has_veil, present in zip(factors["sample_id"], veil, available, strict=True):
        pixels, fraction = closeup_image(rng, bool(has_veil), settings.image_size)
        if present:
            Image.fromarray(pixels).save(out / "closeups" / f"{sample_id}.png")
        fractions.append(round(fraction, 4))
    kind = 2 * factors["elongated_lesion"].to_numpy().astype(int) + veil.astype(int)
    return pd.DataFrame(
        {
            "blue_grey_veil": veil,
            "veil_fraction": fractions,
            "available_closeup": available,
            "lesion_type": np.array(LESION_TYPES)[kind],
        }
    )


def _tabular_cells(factors: pd.DataFrame, settings: DemoSettings) -> pd.DataFrame:
    """Tabular columns as manifest text, each value missing with ``value_missing_rate``."""
    rng = _rng(settings.seed, "tabular")
    table = factors[list(_NUMERIC + _CATEGORICAL)].astype(str)
    for column in table.columns:
        missing = rng.random(len(table)) < settings.value_missing_rate
        # "unknown" is a spec missing marker too; sex uses it the way registries do.
        table.loc[missing, column] = "unknown" if column == "sex" else ""
    return table


def _spec(settings: DemoSettings) -> dict:
    size = settings.volume_size
    return {
        "name": "polymodal-demo",
        "manifest": "manifest.csv",
        "id_column": "sample_id",
        "group_column": "patient_id",
        "split": {"column": "split"},
        "targets": {
            "label": {"kind": "binary", "column": "label", "positive": "1", "negative": "0"}
        },
        "modalities": {
            "lesion": {
                "kind": "image",
                "columns": ["lesion_image"],
                "size": [settings.image_size, settings.image_size],
                "channels": 1,
                "normalize": "zscore",
            },
            "ct": {
                "kind": "volume",
                "column": "ct_volume",
                "spacing": [2.0, 2.0, 2.0],
                "window": [-100.0, 300.0],
                "size": [size, size, size],
            },
            "labs": {
                "kind": "tabular",
                "numeric": list(_NUMERIC),
                "categorical": list(_CATEGORICAL),
            },
            "note": {"kind": "text", "column": "note", "max_tokens": 64},
            "vitals": {
                "kind": "series",
                "column": "vitals_series",
                "time_column": "time",
                "channels": ["hr", "sbp", "spo2"],
                "max_steps": 64,
            },
        },
    }


def _two_view_spec(settings: DemoSettings) -> dict:
    """The close-up modality and the ``lesion_type`` target, and a spec of just the two images."""
    closeup = {
        "kind": "image",
        "columns": ["closeup_image"],
        "size": [settings.image_size, settings.image_size],
        "channels": 3,
        "normalize": "imagenet",
    }
    lesion_type = {"kind": "multiclass", "column": "lesion_type", "classes": list(LESION_TYPES)}
    full = _spec(settings)
    full["modalities"]["closeup"] = closeup
    full["targets"]["lesion_type"] = lesion_type
    return {
        "full": full,
        "two_view": {
            **{k: v for k, v in full.items() if k not in ("targets", "modalities")},
            "name": "polymodal-demo-two-view",
            "targets": {"lesion_type": lesion_type},
            "modalities": {"lesion": full["modalities"]["lesion"], "closeup": closeup},
        },
    }


_TWO_VIEW_HEADER = """\
# polymodal demo cohort, two images of one lesion (`polymodal demo-data --two-view`).
# lesion_type = shape in `lesion` (round / elongated) × colour in `closeup` (blue-grey veil or
# not): neither image alone determines it. spec.yaml beside this file has every modality.
"""

_SPEC_HEADER = """\
# polymodal demo cohort (synthetic), written by `polymodal demo-data`.
# label = (elongated lesion in `lesion` AND crp > 10 mg/L)
#      OR (breathing symptom named in `note` AND age > 60)
#      OR (nodule radius >= 7 mm in `ct` AND SpO2 falling in `vitals`)
# No single modality predicts it well; all together determine it (see docs/demo_cohort.md).
# `ct` volumes carry a per-sample voxel spacing in their NIfTI header; they are resampled to 2 mm.
# A missing modality is an empty cell (all tabular cells empty for `labs`).
"""


def make_demo_cohort(
    out: Path | str,
    n: int = 2000,
    seed: int = 0,
    missing_rate: float = 0.2,
    label_noise: float = 0.0,
    image_size: int = 64,
    volume_size: int = 32,
    value_missing_rate: float = 0.1,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    second_view: bool = False,
) -> Path:
    """Write the synthetic demo cohort into ``out`` and return the path of its ``spec.yaml``.

    Args:
        out: output folder; created if needed. A non-empty folder that is not a previous demo
            cohort is refused unless ``force``.
        n: number of samples (rows of the manifest).
        seed: everything written is a deterministic function of the settings and this seed.
        missing_rate: per-modality probability that a sample lacks it (independently; at least
            one modality always stays).
        label_noise: fraction of labels flipped after the planted rule.
        image_size: side of the square lesion PNGs in pixels.
        volume_size: side of the cubic CT volumes in voxels.
        value_missing_rate: per-value probability that a tabular cell is missing.
        force: write into a non-empty folder that is not a demo cohort.
        progress: called with a short message now and then (e.g. ``print``).
        second_view: also write an RGB close-up of each lesion (``closeup``) and the 4-class
            target ``lesion_type`` that needs both images (see docs/demo_cohort.md), plus
            ``two_view.yaml``, the spec of just those two images and that target. Nothing else
            changes.

    Raises:
        PolymodalError: ``out`` holds other files, or a setting is out of range.
    """
    settings = DemoSettings(
        n=n,
        seed=seed,
        missing_rate=missing_rate,
        value_missing_rate=value_missing_rate,
        label_noise=label_noise,
        image_size=image_size,
        volume_size=volume_size,
        second_view=second_view,
    )
    _check_settings(settings)
    out = Path(out)
    say = progress or (lambda message: None)
    generated = ("images", "volumes", "series", "closeups")
    prepare_output_dir(out, DEMO_KIND, force=force, generated=generated)

    factors = _draw_factors(settings)
    available = _availability(settings)
    split = _split(factors["patient_id"], seed)
    say(f"rendering {n} samples (images, volumes, series, notes) into {out}")
    extras = _write_files(out, factors, available, settings)
    two_view = (
        _write_closeups(out, factors, available["lesion"].to_numpy(), settings)
        if second_view
        else None
    )

    label = factors["label_clean"].to_numpy().copy()
    flipped = _rng(seed, "label_noise").permutation(n)[: round(label_noise * n)]
    label[flipped] = 1 - label[flipped]

    tabular = _tabular_cells(factors, settings)
    tabular.loc[_unseen_site_rows(tabular, available, split, seed), "site"] = UNSEEN_SITE

    ids = factors["sample_id"]
    manifest = pd.DataFrame(
        {
            "sample_id": ids,
            "patient_id": factors["patient_id"],
            "split": split,
            "label": label,
            "lesion_image": "images/" + ids + ".png",
            "ct_volume": "volumes/" + ids + ".nii.gz",
            "vitals_series": "series/" + ids + ".csv",
            "note": extras["note"],
        }
    )
    manifest = pd.concat([manifest, tabular], axis=1)
    if two_view is not None:
        manifest["closeup_image"] = ("closeups/" + ids + ".png").where(
            two_view["available_closeup"], ""
        )
        manifest["lesion_type"] = two_view["lesion_type"]
    file_column = {"lesion": "lesion_image", "ct": "ct_volume", "vitals": "vitals_series"}
    for modality, column in {**file_column, "note": "note"}.items():
        manifest.loc[~available[modality], column] = ""
    manifest.loc[~available["labs"], list(tabular.columns)] = ""
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")

    planted = pd.concat(
        [
            factors[["sample_id", "patient_id", "elongated_lesion", "high_crp"]],
            factors[["breathing_symptom", "older", "large_nodule", "spo2_falling", "label_clean"]],
            extras.drop(columns="note"),
            available.add_prefix("available_"),
        ],
        axis=1,
    )
    planted["label_flipped"] = np.isin(np.arange(n), flipped)
    if two_view is not None:
        planted = pd.concat([planted, two_view], axis=1)
    planted.to_csv(out / "planted_features.csv", index=False, lineterminator="\n")

    if two_view is None:
        spec_path = write_spec(out, _spec(settings), _SPEC_HEADER)
    else:
        specs = _two_view_spec(settings)
        header = _SPEC_HEADER + "# lesion_type: shape in `lesion` × colour in `closeup`.\n"
        spec_path = write_spec(out, specs["full"], header)
        parse_spec(specs["two_view"], base_dir=out, source="two-view demo spec")
        (out / "two_view.yaml").write_text(
            _TWO_VIEW_HEADER + yaml.safe_dump(specs["two_view"], sort_keys=False)
        )
    write_marker(out, DEMO_KIND, asdict(settings))
    say(f"wrote {n} samples; spec: {spec_path}")
    return spec_path


def _check_settings(settings: DemoSettings) -> None:
    problems = []
    if settings.n < 10:
        problems.append(f"n must be at least 10 (got {settings.n})")
    for name in ("missing_rate", "value_missing_rate", "label_noise"):
        value = getattr(settings, name)
        if not 0.0 <= value < 1.0:
            problems.append(f"{name} must be in [0, 1) (got {value})")
    if settings.image_size < 16 or settings.volume_size < 16:
        problems.append("image_size and volume_size must be at least 16")
    if problems:
        raise PolymodalError("demo cohort: " + "; ".join(problems))


def read_settings(folder: Path | str) -> DemoSettings | None:
    """The settings a demo cohort folder was made with, or None if it is not one."""
    marker = read_marker(Path(folder))
    if marker is None or marker.get("kind") != DEMO_KIND:
        return None
    return DemoSettings(**marker["settings"])


__all__ = ["LESION_TYPES", "DemoSettings", "make_demo_cohort", "planted_label", "read_settings"]
