"""The split recipe on small cohorts: as close to the recipe as the groups allow, never a crash."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from polymodal.data.spec import SplitRecipe
from polymodal.data.splits import SplitWarning, assign_splits


def split_of(groups, strata, recipe=None):
    return assign_splits(pd.Series(groups), pd.Series(strata), recipe or SplitRecipe())


def groups_per_split(split, groups):
    return pd.Series(groups).groupby(split.to_numpy()).nunique().to_dict()


def test_ten_patients_per_class_stay_stratified_with_fewer_folds():
    groups = [f"p{i}" for i in range(20)]
    labels = ["a", "b"] * 10
    with pytest.warns(SplitWarning) as caught:
        split = split_of(groups, labels)
    [message] = [str(w.message) for w in caught]
    assert message.startswith("split recipe (train 0.7, val 0.15, test 0.15, seed 0): ")
    assert "groups per class: 'a': 10, 'b': 10" in message
    assert "using 7 folds, so the shares are train 71%, val 14%, test 14%" in message
    assert "set split.column" in message
    assert groups_per_split(split, groups) == {"test": 3, "train": 14, "val": 3}
    # Stratified: every split holds both classes.
    assert pd.crosstab(split.to_numpy(), np.array(labels)).min().min() >= 1


def test_three_patients_per_class_keep_the_shares_without_stratification():
    groups = [f"p{i}" for i in range(6)]
    with pytest.warns(SplitWarning, match="splitting by group without stratification"):
        split = split_of(groups, ["a", "b"] * 3)
    assert groups_per_split(split, groups) == {"test": 1, "train": 4, "val": 1}


def test_a_class_with_one_member_is_no_problem():
    groups = [f"p{i}" for i in range(30)]
    labels = ["a"] * 29 + ["b"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = split_of(groups, labels)
    assert [str(w.message) for w in caught] == []  # scikit-learn's small-class warning too
    assert groups_per_split(split, groups) == {"test": 6, "train": 18, "val": 6}


def test_two_groups_fill_train_and_val_and_say_that_test_is_empty():
    with pytest.warns(SplitWarning) as caught:
        split = split_of(["p0", "p1"], ["a", "b"])
    assert sorted(split) == ["train", "val"]
    assert "the cohort has 2 group(s), too few for every split; test get no rows" in str(
        caught[-1].message
    )


def test_a_small_requested_split_gets_one_fold():
    groups = [f"p{i}" for i in range(100)]
    split = assign_splits(pd.Series(groups), None, SplitRecipe(train=0.98, val=0.01, test=0.01))
    counts = split.value_counts()
    assert counts["val"] >= 1 and counts["test"] >= 1 and counts["train"] >= 90


def test_blank_labels_form_a_stratum_of_their_own():
    groups = [f"p{i}" for i in range(40)]
    split = split_of(groups, ["a", ""] * 20)
    assert groups_per_split(split, groups) == {"test": 6, "train": 28, "val": 6}
