"""The split recipe: grouped, seeded train/val/test fractions, stratified on the first target.

Rows are never split apart from their group (patient or lesion; the row id when the spec has no
group column). The cohort is cut into K folds with scikit-learn's ``StratifiedGroupKFold`` and
whole folds are handed to train, val and test; K is the smallest number of folds (at most 20)
that expresses the recipe's fractions, so ``0.7/0.15/0.15`` becomes 14/3/3 folds of 20.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from polymodal.data.spec import BinaryTarget, CohortSpec, MulticlassTarget, SplitRecipe

MAX_FOLDS = 20
# Stratum of rows whose stratification label is blank, so they spread like any class.
_MISSING_STRATUM = "\x00missing"


def _fold_count(recipe: SplitRecipe, n_groups: int) -> int:
    """Smallest K whose multiples of 1/K come closest to the recipe's fractions."""
    fractions = np.array([recipe.train, recipe.val, recipe.test])
    errors = [
        np.abs(fractions * k - np.round(fractions * k)).max() / k for k in range(2, MAX_FOLDS + 1)
    ]
    best = 2 + int(np.argmin(np.round(errors, 6)))
    return max(2, min(best, n_groups))


def _folds_per_split(recipe: SplitRecipe, n_folds: int) -> dict[str, int]:
    val = round(recipe.val * n_folds)
    test = round(recipe.test * n_folds)
    # Train always keeps at least one fold; the smaller splits give way first.
    while val + test >= n_folds:
        if test >= val and test > 0:
            test -= 1
        else:
            val -= 1
    return {"val": val, "test": test, "train": n_folds - val - test}


def assign_splits(groups: pd.Series, strata: pd.Series | None, recipe: SplitRecipe) -> pd.Series:
    """Assign "train"/"val"/"test" to every row, keeping each group in one split.

    Args:
        groups: group id per row ``(N,)``.
        strata: label per row ``(N,)`` to balance across splits, or None (then folds are
            balanced by row count only). Blank or None labels form their own stratum.
        recipe: fractions and seed.

    Returns:
        A Series ``(N,)`` aligned with ``groups``, deterministic for a given seed.
    """
    groups = groups.astype(str)
    n_groups = groups.nunique()
    if n_groups < 2:
        # One group cannot be divided: it all goes to train (validate reports the empty splits).
        return pd.Series("train", index=groups.index, name="split", dtype=object)
    if strata is None:
        labels = np.zeros(len(groups), dtype=int)
    else:
        labels = strata.fillna(_MISSING_STRATUM).astype(str).replace("", _MISSING_STRATUM)
        labels = labels.to_numpy()
    n_folds = _fold_count(recipe, n_groups)
    counts = _folds_per_split(recipe, n_folds)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=recipe.seed)
    fold_of_row = np.empty(len(groups), dtype=int)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(groups)), labels, groups)):
        fold_of_row[held_out] = fold
    # Folds are shuffled by the seed already; test takes the first ones, then val, then train.
    names = ["test"] * counts["test"] + ["val"] * counts["val"] + ["train"] * counts["train"]
    return pd.Series(np.array(names, dtype=object)[fold_of_row], index=groups.index, name="split")


def make_split(frame: pd.DataFrame, spec: CohortSpec) -> pd.Series:
    """The recipe split of a manifest (every column str), grouped by ``spec.group_column``."""
    recipe = spec.split.recipe
    if recipe is None:
        raise ValueError("the spec has a split column, not a recipe")
    ids = frame[spec.id_column]
    if spec.group_column is not None:
        group = frame[spec.group_column]
        groups = group.where(group.str.strip() != "", ids)
    else:
        groups = ids
    strata = None
    first_target = next(iter(spec.targets.values()))
    if recipe.stratify and isinstance(first_target, BinaryTarget | MulticlassTarget):
        strata = frame[first_target.column].str.strip()
    return assign_splits(groups, strata, recipe)
