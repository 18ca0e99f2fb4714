"""How much each IU X-ray report section says about the `abnormal` label (label leakage check).

Prepares the IU X-ray cohort (or reads a prepared one), then fits, per text column, TF-IDF +
logistic regression and, for the header-table columns, HistGradientBoosting; reports the
5-fold stratified cross-validated AUROC over every labelled report. A section that restates
the label scores near 1.

Usage::

    python bench/iu_xray_leakage_check.py [--source ../shared/data/iu_xray] [--cohort DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline

from _common import table
from polymodal.datasets.prepare import prepare_iu_xray

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "iu_xray"


def leakage(manifest: pd.DataFrame) -> dict[str, float]:
    labelled = manifest[manifest["abnormal"] != ""]
    y = labelled["abnormal"].astype(int).to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = {}
    for column in ("indication", "findings", "impression", "comparison"):
        model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(C=4, max_iter=2000))
        p = cross_val_predict(model, labelled[column], y, cv=folds, method="predict_proba")
        scores[f"text: {column}"] = float(roc_auc_score(y, p[:, 1]))
    header = pd.DataFrame(
        {c: pd.to_numeric(labelled[c].replace("", np.nan)) for c in ("age", "n_images")}
    )
    categories = labelled[["views", "acquisition", "body_part"]].replace("", np.nan)
    header = pd.concat([header, pd.get_dummies(categories, dtype=float)], axis=1)
    p = cross_val_predict(
        HistGradientBoostingClassifier(random_state=0), header, y, cv=folds, method="predict_proba"
    )
    scores["tabular: header table"] = float(roc_auc_score(y, p[:, 1]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SHARED)
    parser.add_argument("--cohort", type=Path, help="a folder written by `prepare iu-xray`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cohort = args.cohort or prepare_iu_xray(args.source, Path(scratch) / "iu").parent
        manifest = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
        scores = leakage(manifest)
    labelled = int((manifest["abnormal"] != "").sum())
    print(f"{labelled} labelled reports, 5-fold CV AUROC for `abnormal`:\n")
    rows = [(name, f"{value:.3f}") for name, value in scores.items()]
    print("\n".join(table(["input", "AUROC"], rows, align="lr")))


if __name__ == "__main__":
    main()
