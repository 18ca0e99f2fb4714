"""Renderers of the demo cohort's files: one function per modality, one planted factor each.

Each renderer turns one boolean planted factor into data that shows it, wrapped in nuisance
variation that carries nothing about the label. They draw only from the generator they are given,
so a renderer's output depends on its own random stream alone (see ``demo._STREAMS``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Aspect ratio (major/minor axis) of the lesion: round vs elongated, with a gap between.
ROUND_ASPECT = (1.0, 1.3)
ELONGATED_ASPECT = (1.9, 2.8)
# Nodule radius in mm: small vs large, with a gap; the threshold of the rule sits in the gap.
SMALL_RADIUS_MM = (3.5, 5.5)
LARGE_RADIUS_MM = (7.0, 9.5)
# SpO2 trend in percentage points per hour over 48 h: stable vs falling.
STABLE_SLOPE = (-0.025, 0.025)
FALLING_SLOPE = (-0.16, -0.09)
SERIES_HOURS = 48.0
SERIES_CHANNELS = ("hr", "sbp", "spo2")

BREATHING_SYMPTOMS = ("shortness of breath", "dyspnea on exertion", "chest tightness")
OTHER_SYMPTOMS = (
    "cough",
    "fatigue",
    "headache",
    "nausea",
    "dizziness",
    "back pain",
    "joint pain",
    "a rash",
    "fever",
    "poor appetite",
    "trouble sleeping",
)
_HISTORY = (
    "hypertension",
    "type 2 diabetes",
    "asthma",
    "hypothyroidism",
    "migraine",
    "osteoarthritis",
    "gastric reflux",
)
_OPENINGS = ("Presents with", "Reports", "Seen today for", "Complains of")
_PLANS = (
    "Follow-up in two weeks.",
    "Advised rest and fluids.",
    "Bloods taken; review with results.",
    "Return if symptoms worsen.",
    "Medication reviewed, no changes.",
)


def lesion_image(rng: np.random.Generator, elongated: bool, size: int) -> tuple[np.ndarray, float]:
    """A bright blob on a noisy background: round or elongated.

    Nuisance: position, rotation, area (independent of the shape), brightness, background
    level and gradient, pixel noise, and now and then a small artefact speck.

    Returns:
        pixels: uint8 ``(size, size)``.
        aspect: the blob's major/minor axis ratio.
    """
    aspect = float(rng.uniform(*(ELONGATED_ASPECT if elongated else ROUND_ASPECT)))
    # Radius of the circle of equal area: the area does not depend on the shape.
    radius = rng.uniform(0.09, 0.14) * size
    semi_major, semi_minor = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    angle = rng.uniform(0.0, np.pi)
    centre_y, centre_x = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    along = (xx - centre_x) * np.cos(angle) + (yy - centre_y) * np.sin(angle)
    across = -(xx - centre_x) * np.sin(angle) + (yy - centre_y) * np.cos(angle)
    distance = np.sqrt((along / semi_major) ** 2 + (across / semi_minor) ** 2)
    blob = 1.0 / (1.0 + np.exp((distance - 1.0) * 6.0))  # soft rim
    gradient_x, gradient_y = rng.uniform(-0.1, 0.1, 2)
    background = (
        rng.uniform(0.1, 0.3) + gradient_x * (xx / size - 0.5) + gradient_y * (yy / size - 0.5)
    )
    image = background + rng.uniform(0.35, 0.65) * blob
    if rng.random() < 0.3:
        speck_y, speck_x = rng.uniform(0, size, 2)
        speck = np.hypot(yy - speck_y, xx - speck_x) < rng.uniform(1.0, 2.0)
        image = image + 0.3 * speck
    image = image + rng.normal(0.0, 0.03, image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), aspect


def nodule_volume(
    rng: np.random.Generator, large: bool, size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """A CT-like cube in Hounsfield-like units holding one spherical nodule.

    The voxel spacing varies per sample (in-plane and between slices, each 1.0-2.5 mm), so the
    nodule's size in voxels says little until the volume is resampled to a common spacing.
    Nuisance: nodule position and contrast, tissue level, a linear bias field, noise.

    Returns:
        voxels: int16 ``(size, size, size)`` in (x, y, z) order.
        spacing: float ``(3,)`` mm per voxel along x, y, z.
        radius: the nodule's radius in mm.
    """
    in_plane = rng.uniform(1.0, 2.5)
    spacing = np.array([in_plane, in_plane, rng.uniform(1.0, 2.5)])
    radius = float(rng.uniform(*(LARGE_RADIUS_MM if large else SMALL_RADIUS_MM)))
    # At the default size the smallest field of view (32 voxels of 1 mm) holds the largest nodule.
    centre = rng.uniform(-4.0, 4.0, 3)
    axes = [(np.arange(size) - (size - 1) / 2) * step for step in spacing]
    x, y, z = np.meshgrid(*axes, indexing="ij")  # mm, each (size, size, size)
    distance = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    # Partial volume: rim voxels are filled by the fraction of a voxel inside the sphere.
    inside = np.clip((radius - distance) / spacing.min() + 0.5, 0.0, 1.0)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    bias = (
        15.0 * (direction[0] * x + direction[1] * y + direction[2] * z) / (size * spacing.max() / 2)
    )
    hu = rng.uniform(20.0, 45.0) + bias + rng.uniform(60.0, 160.0) * inside
    hu = hu + rng.normal(0.0, 6.0, hu.shape)
    return np.round(hu).astype(np.int16), spacing, radius


def vitals_series(rng: np.random.Generator, falling: bool) -> tuple[pd.DataFrame, float]:
    """Irregularly sampled vital signs over 48 h: heart rate, systolic pressure, SpO2.

    SpO2 falls steadily or stays level; heart rate drifts and wanders and systolic pressure
    scatters, neither related to the label. About 15 % of values are unmeasured (blank).

    Returns:
        series: columns ``time`` (hours) and :data:`SERIES_CHANNELS`, ``T`` rows (12-32).
        slope: the planted SpO2 trend in points per hour.
    """
    steps = int(rng.integers(12, 33))
    times = np.sort(rng.uniform(0.0, SERIES_HOURS, steps))
    slope = float(rng.uniform(*(FALLING_SLOPE if falling else STABLE_SLOPE)))
    spo2 = rng.uniform(94.5, 98.5) + slope * times + rng.normal(0.0, 0.6, steps)
    heart_rate = (
        rng.uniform(60.0, 100.0)
        + rng.uniform(-0.3, 0.3) * times
        + np.cumsum(rng.normal(0.0, 1.5, steps))
    )
    systolic = rng.uniform(105.0, 150.0) + rng.normal(0.0, 7.0, steps)
    values = np.stack(
        [np.round(heart_rate), np.round(systolic), np.round(np.clip(spo2, 70.0, 100.0), 1)], axis=1
    )  # (T, 3)
    unmeasured = rng.random(values.shape) < 0.15
    # Keep at least six SpO2 readings so that the trend stays visible.
    missing_spo2 = np.flatnonzero(unmeasured[:, 2])
    unmeasured[missing_spo2[: max(0, len(missing_spo2) - (steps - 6))], 2] = False
    values[unmeasured] = np.nan
    series = pd.DataFrame(values, columns=list(SERIES_CHANNELS))
    series.insert(0, "time", np.round(times, 2))
    return series, slope


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def visit_note(rng: np.random.Generator, breathing_symptom: bool) -> str:
    """A short clinic note; it names a breathing symptom exactly when the factor is set.

    Nuisance: opening phrase, one to three other symptoms, duration, negated symptoms (never a
    breathing one, so a bag of words can learn the factor), history and plan.
    """
    others = list(rng.choice(OTHER_SYMPTOMS, size=int(rng.integers(1, 4)) + 2, replace=False))
    named, denied = others[:-2], others[-2:]
    if breathing_symptom:
        named.insert(int(rng.integers(0, len(named) + 1)), str(rng.choice(BREATHING_SYMPTOMS)))
    days = int(rng.integers(2, 22))
    parts = [f"{rng.choice(_OPENINGS)} {_join(named)} for {days} days."]
    if rng.random() < 0.5:
        parts.append(f"Denies {_join(denied)}.")
    history = list(rng.choice(_HISTORY, size=int(rng.integers(0, 3)), replace=False))
    parts.append(f"History of {_join(history)}." if history else "No relevant past history.")
    parts.append(str(rng.choice(_PLANS)))
    return " ".join(parts)


# Close-up colours (RGB in [0, 1]): brown pigment, and the blue-grey veil that is the factor.
_PIGMENT_BROWN = (0.55, 0.36, 0.22)
_VEIL_BLUE_GREY = (0.42, 0.46, 0.60)


def closeup_image(
    rng: np.random.Generator, blue_grey_veil: bool, size: int
) -> tuple[np.ndarray, float]:
    """A dermoscopy-like RGB close-up from inside the lesion: its colour and texture only.

    The field of view lies within the lesion, so its outline (round or elongated, the overview
    image's factor) is not visible here. A soft-edged patch covering 25-50 % of the view is
    blue-grey when the factor is set, and another shade of brown otherwise, so "a patch" says
    nothing; only its hue does. Nuisance: pigment shade and lightness, a pigment network of
    random spacing, orientation and contrast, dark dots, the patch's place and size, a dark
    hair now and then, the dermoscope's vignette, pixel noise.

    Returns:
        pixels: uint8 ``(size, size, 3)``.
        veil_fraction: the blue-grey patch's opacity averaged over the view (0 without it).
    """
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size  # (size, size) each, in [0, 1]
    shade = rng.uniform(0.8, 1.2)
    base = np.array(_PIGMENT_BROWN) * shade + rng.normal(0.0, 0.03, 3)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    # Pigment network: two crossing families of dark lines.
    spacing = rng.uniform(0.08, 0.16)
    angle = rng.uniform(0.0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    network = np.maximum(np.cos(2 * np.pi * u / spacing), np.cos(2 * np.pi * v / spacing))
    image *= 1.0 - rng.uniform(0.08, 0.2) * np.clip(network, 0.0, 1.0)[..., None] ** 4
    # The patch: blue-grey (the factor) or a darker or lighter brown (nuisance).
    radius = np.sqrt(rng.uniform(0.25, 0.5) / np.pi)
    centre = rng.uniform(0.3, 0.7, 2)
    patch = 1.0 / (1.0 + np.exp((np.hypot(xx - centre[0], yy - centre[1]) - radius) * 40.0))
    if blue_grey_veil:
        colour = np.array(_VEIL_BLUE_GREY) * rng.uniform(0.85, 1.15)
    else:
        colour = base * rng.choice([0.7, 1.25])
    patch = patch * rng.uniform(0.6, 0.9)  # a veil over the pigment, not opaque paint
    image = image * (1 - patch[..., None]) + colour * patch[..., None]
    veil_fraction = float(patch.mean()) if blue_grey_veil else 0.0
    # Dark dots scattered over the lesion.
    for _ in range(int(rng.integers(3, 10))):
        dot_y, dot_x = rng.uniform(0.0, 1.0, 2)
        dot = np.hypot(yy - dot_y, xx - dot_x) < rng.uniform(0.015, 0.035)
        image[dot] *= 0.55
    if rng.random() < 0.3:
        # A hair: a dark, slightly curved line across the view.
        a, b, c = rng.uniform(-1.0, 1.0), rng.uniform(0.2, 0.8), rng.uniform(-0.6, 0.6)
        hair = np.abs(yy - (b + a * (xx - 0.5) + c * (xx - 0.5) ** 2)) < 0.012
        image[hair] *= 0.3
    vignette = 1.0 - 0.35 * np.clip(np.hypot(xx - 0.5, yy - 0.5) / 0.7, 0.0, 1.0) ** 2
    image = image * vignette[..., None] + rng.normal(0.0, 0.02, image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), veil_fraction
