"""Property: the split recipe splits any group/stratum layout without an exception.

Whatever the groups, labels and fractions: every row gets train/val/test, a group never spans
two splits, the same seed gives the same split, and a split the recipe asks for is empty only
when there are fewer groups than requested splits.
"""

from __future__ import annotations

import warnings

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from polymodal.data.spec import SPLITS, SplitRecipe
from polymodal.data.splits import SplitWarning, assign_splits


@st.composite
def recipes(draw) -> SplitRecipe:
    train = draw(st.floats(0.01, 0.99))
    val = draw(st.sampled_from([0.0, 1e-9]) | st.floats(0.0, 1.0 - train))
    val = min(val, 1.0 - train)
    test = max(0.0, 1.0 - train - val)
    if test >= 1.0 or val >= 1.0:
        val, test = 0.0, 1.0 - train
    return SplitRecipe(
        train=train,
        val=val,
        test=test,
        seed=draw(st.integers(0, 2**32 - 1)),
        stratify=draw(st.booleans()),
    )


@st.composite
def layouts(draw) -> tuple[pd.Series, pd.Series | None]:
    n_rows = draw(st.integers(1, 60))
    n_groups = draw(st.integers(1, n_rows))
    groups = draw(st.lists(st.integers(0, n_groups - 1), min_size=n_rows, max_size=n_rows))
    labels = st.sampled_from(["a", "b", "c", "", " ", None]) | st.text(max_size=3)
    strata = draw(st.none() | st.lists(labels, min_size=n_rows, max_size=n_rows).map(pd.Series))
    index = draw(st.sampled_from(["range", "shifted"]))
    series = pd.Series([f"g{g}" for g in groups])
    if index == "shifted":  # a filtered frame keeps its old row labels
        series.index = series.index * 3 + 7
        if strata is not None:
            strata.index = series.index
    return series, strata


@given(layouts(), recipes())
def test_any_layout_is_split_by_group(layout, recipe):
    groups, strata = layout
    strata = strata if recipe.stratify else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        split = assign_splits(groups, strata, recipe)
        again = assign_splits(groups, strata, recipe)
    assert split.index.equals(groups.index)
    assert set(split) <= set(SPLITS)
    assert split.equals(again)
    assert (split.groupby(groups).nunique() == 1).all()
    wanted = [s for s in SPLITS if getattr(recipe, s) > 0]
    if groups.nunique() >= len(wanted):
        assert set(wanted) <= set(split), (wanted, split.value_counts().to_dict())
