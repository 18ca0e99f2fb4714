"""tabular_tokens: one token per feature, learned per-feature missing embeddings."""

from __future__ import annotations

import pytest
import torch

from polymodal.encoders import create_encoder
from polymodal.errors import ModelError

INFO = {"kind": "tabular", "numeric": ["age", "crp"], "categorical": {"sex": 4, "site": 6}}


def encoder():
    torch.manual_seed(0)
    return create_encoder("tabular_tokens", input_info=INFO, dim=8)


def row(age: float, crp: float, sex: int, site: int, *, age_missing: bool = False) -> dict:
    return {
        "numeric": torch.tensor([[age, crp]]),
        "numeric_missing": torch.tensor([[age_missing, False]]),
        "categorical": torch.tensor([[sex, site]]),
    }


def test_one_token_per_feature_all_valid() -> None:
    tokens, mask = encoder()(row(0.5, -1.0, 2, 3))
    assert tokens.shape == (1, 4, 8) and mask.all()


def test_numeric_token_is_value_times_weight_plus_bias_plus_identity() -> None:
    model = encoder()
    tokens, _ = model(row(0.5, -1.0, 2, 3))
    expected = 0.5 * model.numeric_weight[0] + model.numeric_bias[0] + model.feature_embedding[0]
    torch.testing.assert_close(tokens[0, 0], expected)


def test_missing_value_gets_the_missing_embedding_whatever_the_stand_in() -> None:
    model = encoder()
    zero, _ = model(row(0.0, -1.0, 2, 3, age_missing=True))
    garbage, _ = model(row(float("nan"), -1.0, 2, 3, age_missing=True))
    expected = model.missing_embedding[0] + model.feature_embedding[0]
    torch.testing.assert_close(zero[0, 0], expected)
    torch.testing.assert_close(garbage, zero)
    # A measured 0 is not the same thing as a missing value.
    measured_zero, _ = model(row(0.0, -1.0, 2, 3))
    assert not torch.allclose(measured_zero[0, 0], zero[0, 0])


def test_categorical_zero_is_missing_and_one_is_unknown() -> None:
    model = encoder()
    missing, _ = model(row(0.5, -1.0, 0, 3))
    unknown, _ = model(row(0.5, -1.0, 1, 3))
    torch.testing.assert_close(
        missing[0, 2], model.missing_embedding[2] + model.feature_embedding[2]
    )
    assert not torch.allclose(unknown[0, 2], missing[0, 2])
    # Columns read their own rows of the shared table: index 2 of "sex" is not index 2 of "site".
    both_two, _ = model(row(0.5, -1.0, 2, 2))
    assert not torch.allclose(
        both_two[0, 2] - model.feature_embedding[2], both_two[0, 3] - model.feature_embedding[3]
    )


def test_changing_one_feature_changes_only_its_token() -> None:
    model = encoder()
    before, _ = model(row(0.5, -1.0, 2, 3))
    after, _ = model(row(0.5, 2.0, 2, 3))
    changed = ~torch.isclose(before, after).all(dim=-1)[0]
    assert changed.tolist() == [False, True, False, False]


def test_out_of_vocabulary_index_names_the_column() -> None:
    with pytest.raises(
        ModelError, match="column 'site' holds index 6 but its vocabulary has 6 entries"
    ):
        encoder()(row(0.5, -1.0, 2, 6))


def test_wrong_column_count_and_empty_spec_are_refused() -> None:
    with pytest.raises(
        ModelError, match="built for 2 numeric and 2 categorical columns but got 1 and 2"
    ):
        encoder()(
            {
                "numeric": torch.zeros(1, 1),
                "numeric_missing": torch.zeros(1, 1, dtype=torch.bool),
                "categorical": torch.ones(1, 2, dtype=torch.long),
            }
        )
    with pytest.raises(ModelError, match="lists no numeric or categorical column"):
        create_encoder(
            "tabular_tokens",
            input_info={"kind": "tabular", "numeric": [], "categorical": {}},
            dim=8,
        )
    with pytest.raises(ModelError, match="'sex' has cardinality 1"):
        create_encoder(
            "tabular_tokens",
            input_info={"kind": "tabular", "numeric": [], "categorical": {"sex": 1}},
            dim=8,
        )


def test_numeric_only_and_categorical_only_tables() -> None:
    numeric_only = create_encoder(
        "tabular_tokens", input_info={"kind": "tabular", "numeric": ["a"], "categorical": {}}, dim=8
    )
    tokens, _ = numeric_only(
        {
            "numeric": torch.ones(2, 1),
            "numeric_missing": torch.zeros(2, 1, dtype=torch.bool),
            "categorical": torch.zeros(2, 0, dtype=torch.long),
        }
    )
    assert tokens.shape == (2, 1, 8)
    categorical_only = create_encoder(
        "tabular_tokens",
        input_info={"kind": "tabular", "numeric": [], "categorical": {"s": 3}},
        dim=8,
    )
    tokens, _ = categorical_only(
        {
            "numeric": torch.zeros(2, 0),
            "numeric_missing": torch.zeros(2, 0, dtype=torch.bool),
            "categorical": torch.tensor([[2], [0]]),
        }
    )
    assert tokens.shape == (2, 1, 8)
