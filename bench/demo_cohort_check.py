"""Check the demo cohort's planted rule from its files: one modality alone vs all together.

Reads a generated demo cohort back with plain Pillow / nibabel / pandas (never the generator's
internals), extracts simple hand-crafted features per modality, fits scikit-learn models on the
train+val split and reports test AUROCs:

* per single modality (on the test rows where that modality is present),
* all modalities together (every test row, and the rows with all five present),
* how well each hand-crafted feature recovers its planted factor (from ``planted_features.csv``),
  including the nodule size measured with and without the NIfTI voxel spacing.

Target: best single modality AUROC at most about 0.75, all together at least 0.95.

Usage::

    python bench/demo_cohort_check.py --n 2000 --seed 0 1 2 --missing-rate 0.2 0 [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from _common import machine, table, table_row
from polymodal.datasets.demo import make_demo_cohort

RESULTS = Path(__file__).resolve().parent / "results" / "demo_cohort_check.md"
MODALITIES = {
    "lesion": "lesion_image",
    "ct": "ct_volume",
    "note": "note",
    "vitals": "vitals_series",
}
TABULAR_NUMERIC = ["age", "crp", "sodium", "hemoglobin", "bmi"]
TABULAR_CATEGORICAL = ["sex", "smoking", "site"]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def image_features(path: Path) -> list[float]:
    """Blob elongation (from second moments), area and brightness of a lesion PNG."""
    pixels = np.asarray(Image.open(path), dtype=np.float64)  # (H, W)
    background, peak = np.median(pixels), np.percentile(pixels, 99.5)
    blob = _largest_component(pixels > background + 0.5 * (peak - background))
    rows, cols = np.nonzero(blob)
    if len(rows) < 3:
        return [np.nan, float(len(rows)), peak - background]
    eigenvalues = np.linalg.eigvalsh(np.cov(np.stack([rows, cols])))
    elongation = float(np.sqrt(eigenvalues[1] / max(eigenvalues[0], 1e-6)))
    return [elongation, float(len(rows)), peak - background]


def volume_features(path: Path) -> list[float]:
    """Nodule radius in mm (voxel count × voxel volume from the header), the same ignoring the
    spacing (voxels), and the nodule contrast."""
    image = nib.load(path)
    voxels = np.asarray(image.dataobj, dtype=np.float64)  # (X, Y, Z)
    voxel_volume = float(np.prod(image.header.get_zooms()[:3]))
    background = np.median(voxels)
    nodule = _largest_component(voxels > background + 35.0)
    count = float(nodule.sum())
    radius_mm = (3 * count * voxel_volume / (4 * np.pi)) ** (1 / 3)
    radius_voxels = (3 * count / (4 * np.pi)) ** (1 / 3)
    contrast = float(voxels[nodule].mean() - background) if count else 0.0
    return [radius_mm, radius_voxels, contrast]


def _slope(times: np.ndarray, values: np.ndarray) -> float:
    observed = ~np.isnan(values)
    if observed.sum() < 2:
        return np.nan
    return float(np.polyfit(times[observed], values[observed], 1)[0])


def series_features(path: Path) -> list[float]:
    """Trend and level of each vital sign, and the number of steps."""
    frame = pd.read_csv(path)
    times = frame["time"].to_numpy(dtype=float)
    features = []
    for channel in ("hr", "sbp", "spo2"):
        values = frame[channel].to_numpy(dtype=float)
        features += [_slope(times, values), float(np.nanmean(values))]
    return [*features, float(len(frame))]


def extract(cohort: Path) -> tuple[pd.DataFrame, dict[str, list[str]], pd.DataFrame]:
    """Features per row (NaN where a modality is missing) and the feature names per modality."""
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    rows = []
    for record in manifest.itertuples(index=False):
        image = record.lesion_image
        volume = record.ct_volume
        series = record.vitals_series
        rows.append(
            [
                *(image_features(cohort / image) if image else [np.nan] * 3),
                *(volume_features(cohort / volume) if volume else [np.nan] * 3),
                *(series_features(cohort / series) if series else [np.nan] * 7),
            ]
        )
    names = {
        "lesion": ["lesion_elongation", "lesion_area", "lesion_brightness"],
        "ct": ["nodule_radius_mm", "nodule_radius_voxels", "nodule_contrast"],
        "vitals": [f"{c}_{s}" for c in ("hr", "sbp", "spo2") for s in ("slope", "mean")]
        + ["series_steps"],
    }
    features = pd.DataFrame(rows, columns=names["lesion"] + names["ct"] + names["vitals"])
    for column in TABULAR_NUMERIC:
        features[column] = pd.to_numeric(manifest[column].replace("", np.nan))
    categorical = manifest[TABULAR_CATEGORICAL].replace({"": np.nan, "unknown": np.nan})
    dummies = pd.get_dummies(categorical, dtype=float)
    # A row without the tabular modality has no category at all: NaN, not "all zero".
    tab_missing = (manifest[TABULAR_NUMERIC + TABULAR_CATEGORICAL] == "").all(axis=1)
    dummies[tab_missing.to_numpy()] = np.nan
    features = pd.concat([features, dummies], axis=1)
    names["labs"] = TABULAR_NUMERIC + list(dummies.columns)
    return features, names, manifest


def _auroc(model, x_train, y_train, x_test, y_test) -> float:
    model.fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def _hgb() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)


def check(cohort: Path) -> dict:
    started = time.perf_counter()
    features, names, manifest = extract(cohort)
    extract_s = time.perf_counter() - started
    planted = pd.read_csv(cohort / "planted_features.csv")
    y = manifest["label"].astype(int).to_numpy()
    train = manifest["split"].isin(["train", "val"]).to_numpy()
    test = (manifest["split"] == "test").to_numpy()
    present = {
        "lesion": manifest["lesion_image"] != "",
        "ct": manifest["ct_volume"] != "",
        "labs": ~(manifest[TABULAR_NUMERIC + TABULAR_CATEGORICAL] == "").all(axis=1),
        "note": manifest["note"] != "",
        "vitals": manifest["vitals_series"] != "",
    }
    present = {m: p.to_numpy() for m, p in present.items()}

    # Text: a bag of words fitted on the training notes.
    words = CountVectorizer(binary=True, min_df=5)
    words.fit(manifest.loc[train & present["note"], "note"])
    bag = pd.DataFrame(
        words.transform(manifest["note"]).toarray().astype(float),
        columns=[f"word_{w}" for w in words.get_feature_names_out()],
    )
    bag[~present["note"]] = np.nan
    features = pd.concat([features, bag], axis=1)
    names["note"] = list(bag.columns)

    single = {}
    for modality, columns in names.items():
        tr, te = train & present[modality], test & present[modality]
        x = features[columns].to_numpy()
        single[modality] = {
            "hgb": _auroc(_hgb(), x[tr], y[tr], x[te], y[te]),
            "n_test": int(te.sum()),
        }
        if modality in ("note", "labs"):
            linear = LogisticRegression(C=1.0, max_iter=2000)
            xl = np.nan_to_num(x)
            single[modality]["logistic"] = _auroc(linear, xl[tr], y[tr], xl[te], y[te])

    everything = [c for columns in names.values() for c in columns]
    x_all = features[everything].to_numpy()
    complete = np.all(np.stack(list(present.values())), axis=0)
    model = _hgb().fit(x_all[train], y[train])
    scores = model.predict_proba(x_all)[:, 1]
    together = {
        "all_rows": float(roc_auc_score(y[test], scores[test])),
        "n_all": int(test.sum()),
        "complete_rows": float(roc_auc_score(y[test & complete], scores[test & complete])),
        "n_complete": int((test & complete).sum()),
    }

    # Ceiling: the planted factors themselves (hidden where the modality is missing).
    factor_columns = {
        "lesion": ["elongated_lesion"],
        "labs": ["high_crp", "older"],
        "note": ["breathing_symptom"],
        "ct": ["large_nodule"],
        "vitals": ["spo2_falling"],
    }
    crp_missing = (manifest["crp"] == "").to_numpy()
    age_missing = (manifest["age"] == "").to_numpy()
    x_planted = pd.DataFrame(index=manifest.index)
    for modality, columns in factor_columns.items():
        for column in columns:
            values = planted[column].astype(float).to_numpy()
            hidden = ~present[modality]
            hidden = hidden | (crp_missing if column == "high_crp" else False)
            hidden = hidden | (age_missing if column == "older" else False)
            x_planted[column] = np.where(hidden, np.nan, values)
    planted_scores = _hgb().fit(x_planted[train], y[train]).predict_proba(x_planted)[:, 1]
    ceiling = {
        "all_rows": float(roc_auc_score(y[test], planted_scores[test])),
        "complete_rows": float(roc_auc_score(y[test & complete], planted_scores[test & complete])),
    }

    # Does each hand-crafted feature recover its planted factor?
    recovery = {}
    for feature, factor, modality, sign in [
        ("lesion_elongation", "elongated_lesion", "lesion", 1),
        ("nodule_radius_mm", "large_nodule", "ct", 1),
        ("nodule_radius_voxels", "large_nodule", "ct", 1),
        ("spo2_slope", "spo2_falling", "vitals", -1),
    ]:
        rows = present[modality]
        recovery[feature] = float(
            roc_auc_score(planted.loc[rows, factor], sign * features.loc[rows, feature].fillna(0))
        )
    note_rows = present["note"]
    text_model = LogisticRegression(max_iter=2000).fit(
        bag[train & note_rows], planted.loc[train & note_rows, "breathing_symptom"]
    )
    recovery["note_bag_of_words"] = float(
        roc_auc_score(
            planted.loc[test & note_rows, "breathing_symptom"],
            text_model.predict_proba(bag[test & note_rows])[:, 1],
        )
    )
    return {
        "single": single,
        "together": together,
        "ceiling": ceiling,
        "recovery": recovery,
        "n": len(manifest),
        "prevalence": float(y.mean()),
        "extract_s": extract_s,
    }


def report(results: dict, settings: str, generate_s: float | None) -> str:
    lines = [
        f"# Demo cohort check ({settings}): single modality vs all together",
        "",
        f"Cohort: `polymodal demo-data` with {settings}; {results['n']} samples, "
        f"label prevalence {results['prevalence']:.3f}. Models fitted on train+val, AUROC on test.",
        f"Command: `python bench/demo_cohort_check.py {settings.replace('=', ' ')}`; "
        f"Machine: {machine(threads=1)}.",
    ]
    if generate_s is not None:
        lines.append(
            f"Generation time: {generate_s:.1f} s; feature extraction {results['extract_s']:.1f} s."
        )
    lines += [
        "",
        *table(["inputs", "model", "test AUROC", "test rows"]),
    ]
    hgb = "HistGradientBoosting"
    for modality, scores in results["single"].items():
        lines.append(
            table_row([f"{modality} alone", hgb, f"{scores['hgb']:.3f}", scores["n_test"]])
        )
        if "logistic" in scores:
            logistic = f"{scores['logistic']:.3f}"
            lines.append(
                table_row([f"{modality} alone", "logistic regression", logistic, scores["n_test"]])
            )
    together, ceiling = results["together"], results["ceiling"]
    n_all, n_complete = together["n_all"], together["n_complete"]
    overall = (
        ("all together, every test row", together["all_rows"], n_all),
        ("all together, rows with all 5 modalities", together["complete_rows"], n_complete),
        ("planted factors (ceiling), every test row", ceiling["all_rows"], n_all),
        ("planted factors (ceiling), rows with all 5", ceiling["complete_rows"], n_complete),
    )
    lines += [table_row([name, hgb, f"{auroc:.3f}", n]) for name, auroc, n in overall]
    lines += [
        "",
        "How well each hand-crafted feature recovers its planted factor (AUROC, rows with the modality):",
        "",
        *table(["feature", "planted factor", "AUROC"]),
    ]
    factor_of = {
        "lesion_elongation": "elongated_lesion",
        "nodule_radius_mm": "large_nodule (radius from voxels × NIfTI spacing)",
        "nodule_radius_voxels": "large_nodule (spacing ignored)",
        "spo2_slope": "spo2_falling",
        "note_bag_of_words": "breathing_symptom (logistic regression, test rows)",
    }
    for feature, value in results["recovery"].items():
        lines.append(table_row([feature, factor_of[feature], f"{value:.3f}"]))
    return "\n".join(lines) + "\n"


def summary(runs: list[tuple[int, float, dict]]) -> str:
    """One line per run: best single modality vs all together."""
    lines = [
        "# Demo cohort check: summary",
        "",
        f"Command: `python bench/demo_cohort_check.py {' '.join(sys.argv[1:])}`. Target: best "
        "single modality at most about 0.75, all together at least 0.95.",
        "",
        *table(
            [
                "seed",
                "missing rate",
                "best single modality (test AUROC)",
                "all together, every test row",
                "all together, rows with all 5",
                "ceiling (planted factors), every row",
            ]
        ),
    ]
    for seed, missing_rate, results in runs:
        best = max(
            (
                (m, max(v for k, v in s.items() if k != "n_test"))
                for m, s in results["single"].items()
            ),
            key=lambda item: item[1],
        )
        together = results["together"]
        lines.append(
            table_row(
                [
                    seed,
                    missing_rate,
                    f"{best[1]:.3f} ({best[0]})",
                    f"{together['all_rows']:.3f}",
                    f"{together['complete_rows']:.3f}",
                    f"{results['ceiling']['all_rows']:.3f}",
                ]
            )
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds")
    parser.add_argument("--missing-rate", type=float, nargs="+", default=[0.2])
    parser.add_argument("--cohort", type=Path, help="an existing demo cohort (else one is made)")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs, sections = [], []
    for missing_rate in args.missing_rate:
        for seed in args.seed:
            settings = f"--n={args.n} --seed={seed} --missing-rate={missing_rate}"
            with tempfile.TemporaryDirectory() as scratch:
                cohort, generate_s = args.cohort, None
                if cohort is None:
                    started = time.perf_counter()
                    spec = make_demo_cohort(
                        Path(scratch) / "demo", n=args.n, seed=seed, missing_rate=missing_rate
                    )
                    generate_s = time.perf_counter() - started
                    cohort = spec.parent
                results = check(cohort)
            runs.append((seed, missing_rate, results))
            sections.append(report(results, settings, generate_s))
            print(sections[-1], flush=True)
    text = "\n".join([summary(runs), *sections])
    print(summary(runs))
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
