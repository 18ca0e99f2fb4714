"""The split recipe: grouped, seeded train/val/test fractions, stratified on the first target.

Rows are never split apart from their group (patient or lesion; the row id when the spec has no
group column). The cohort is cut into K folds with scikit-learn's ``StratifiedGroupKFold`` and
whole folds are handed to train, val and test; K is the smallest number of folds (at most 20)
that expresses the recipe's fractions, so ``0.7/0.15/0.15`` becomes 14/3/3 folds of 20.

Small cohorts never stop on the recipe; they are split as closely as their groups allow and a
:class:`SplitWarning` names the recipe, the counts and what changed:

* K is at most the number of groups, and a split the recipe asks for gets at least one fold
  (only a cohort with fewer groups than requested splits leaves one empty; one group: all train).
* A class can be spread over at most as many folds as it has groups. When the largest class has
  fewer groups than K, K shrinks to it if the shares stay within 10 points of the recipe's (20
  patients per class: 7 folds, 71/14/14 %); otherwise the split is grouped but not stratified.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from polymodal import targets
from polymodal.data.spec import SPLITS, CohortSpec, SplitRecipe

MAX_FOLDS = 20
# How far a split's share may move from the recipe's fraction to keep stratification on a
# small cohort (fewer folds make coarser shares).
MAX_SHARE_DRIFT = 0.1
# Stratum of rows whose stratification label is blank, so they spread like any class.
_MISSING_STRATUM = "\x00missing"
_ADVICE = (
    "to choose the split yourself, put train/val/test in a manifest column and set split.column"
)


class SplitWarning(UserWarning):
    """The split recipe could not be followed exactly on this cohort; the message says how."""


def _fold_count(recipe: SplitRecipe, limit: int) -> int:
    """The K up to ``min(MAX_FOLDS, limit)`` whose multiples of 1/K come closest to the recipe.

    K is at least 2, and at least one fold per split the recipe asks for while ``limit`` allows.
    """
    fractions = np.array([recipe.train, recipe.val, recipe.test])
    most = max(2, min(MAX_FOLDS, limit))
    candidates = range(min(max(2, int((fractions > 0).sum())), most), most + 1)
    errors = [
        np.abs(np.array([_shares(recipe, k)[s] for s in SPLITS]) - fractions).max()
        for k in candidates
    ]
    return candidates[int(np.argmin(np.round(errors, 6)))]


def _folds_per_split(recipe: SplitRecipe, n_folds: int) -> dict[str, int]:
    """Folds per split; a split the recipe asks for gets at least one fold while folds last."""
    val = max(round(recipe.val * n_folds), int(recipe.val > 0))
    test = max(round(recipe.test * n_folds), int(recipe.test > 0))
    # Train always keeps at least one fold; the smaller splits give way first.
    while val + test >= n_folds:
        if test >= val and test > 0:
            test -= 1
        else:
            val -= 1
    return {"val": val, "test": test, "train": n_folds - val - test}


def _describe(recipe: SplitRecipe) -> str:
    return (
        f"split recipe (train {recipe.train:g}, val {recipe.val:g}, test {recipe.test:g}, "
        f"seed {recipe.seed})"
    )


def _shares(recipe: SplitRecipe, n_folds: int) -> dict[str, float]:
    counts = _folds_per_split(recipe, n_folds)
    return {s: counts[s] / n_folds for s in SPLITS}


def _stratified_folds(
    groups: pd.Series, labels: np.ndarray, recipe: SplitRecipe, n_folds: int
) -> tuple[np.ndarray, int]:
    """Labels to stratify on and the fold count, when the classes are too small for ``n_folds``.

    A class can be balanced over at most as many folds as it has groups. When even the largest
    class has fewer groups than ``n_folds``, the folds shrink to its size, as long as the shares
    stay within :data:`MAX_SHARE_DRIFT` of the recipe; otherwise the recipe's shares win and the
    split is made by group without stratification. Either way a :class:`SplitWarning` says so.
    """
    per_class = pd.Series(groups.to_numpy()).groupby(labels).nunique()
    largest = int(per_class.max())
    if largest >= n_folds:
        return labels, n_folds
    sizes = ", ".join(
        f"{'(blank)' if label == _MISSING_STRATUM else repr(label)}: {count}"
        for label, count in per_class.items()
    )
    small = (
        f"{_describe(recipe)}: the classes have too few groups for {n_folds} stratified "
        f"folds (groups per class: {sizes})"
    )
    wanted = {"train": recipe.train, "val": recipe.val, "test": recipe.test}
    reduced = _fold_count(recipe, largest) if largest >= 2 else 0
    shares = _shares(recipe, reduced) if reduced else {}
    if shares and max(abs(shares[s] - wanted[s]) for s in SPLITS) <= MAX_SHARE_DRIFT:
        shown = ", ".join(f"{s} {share:.0%}" for s, share in shares.items())
        warnings.warn(
            f"{small}; using {reduced} folds, so the shares are {shown}; {_ADVICE}",
            SplitWarning,
            stacklevel=3,
        )
        return labels, reduced
    warnings.warn(
        f"{small}; splitting by group without stratification to keep the recipe's shares; "
        f"{_ADVICE}",
        SplitWarning,
        stacklevel=3,
    )
    return np.zeros(len(groups), dtype=int), n_folds


def assign_splits(groups: pd.Series, strata: pd.Series | None, recipe: SplitRecipe) -> pd.Series:
    """Assign "train"/"val"/"test" to every row, keeping each group in one split.

    Small cohorts are split as closely to the recipe as their groups allow, with a
    :class:`SplitWarning` that says what changed: classes with fewer groups than folds get
    fewer, larger folds (or no stratification at all), and a split the recipe asks for stays
    empty only when there are fewer groups than requested splits (one group: all train).

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
        split = pd.Series("train", index=groups.index, name="split", dtype=object)
        _warn_empty(recipe, split, n_groups)
        return split
    if strata is None:
        labels = np.zeros(len(groups), dtype=int)
    else:
        labels = strata.fillna(_MISSING_STRATUM).astype(str).replace("", _MISSING_STRATUM)
        labels = labels.to_numpy()
    n_folds = _fold_count(recipe, n_groups)
    if strata is not None:
        labels, n_folds = _stratified_folds(groups, labels, recipe, n_folds)
    counts = _folds_per_split(recipe, n_folds)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=recipe.seed)
    fold_of_row = np.empty(len(groups), dtype=int)
    with warnings.catch_warnings():
        # A class with fewer groups than folds cannot reach every fold; that is expected.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        folds = list(splitter.split(np.zeros(len(groups)), labels, groups))
    for fold, (_, held_out) in enumerate(folds):
        fold_of_row[held_out] = fold
    # Folds are shuffled by the seed already; test takes the first ones, then val, then train.
    names = ["test"] * counts["test"] + ["val"] * counts["val"] + ["train"] * counts["train"]
    split = pd.Series(np.array(names, dtype=object)[fold_of_row], index=groups.index, name="split")
    _warn_empty(recipe, split, n_groups)
    return split


def _warn_empty(recipe: SplitRecipe, split: pd.Series, n_groups: int) -> None:
    """Warn when a split the recipe asks for got no row (too few groups to go round)."""
    empty = [s for s in SPLITS if getattr(recipe, s) > 0 and not (split == s).any()]
    if empty:
        warnings.warn(
            f"{_describe(recipe)}: the cohort has {n_groups} group(s), too few for every "
            f"split; {' and '.join(empty)} get no rows; {_ADVICE}",
            SplitWarning,
            stacklevel=3,
        )


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
    if recipe.stratify and targets.get(first_target.kind).class_valued:
        strata = frame[first_target.column].str.strip()
    return assign_splits(groups, strata, recipe)
