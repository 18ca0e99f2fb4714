"""Tabular clinical data as one token per feature (FT-Transformer's feature tokenizer).

A missing value is information, not padding: its token is a learned per-feature "missing"
embedding, never the token of an imputed constant, and it stays visible to fusion (mask True).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.encoders.registry import register_encoder
from polymodal.errors import ModelError

MISSING_INDEX = 0  # categorical index reserved for a missing value
UNKNOWN_INDEX = 1  # categorical index of a category not seen in training


@register_encoder("tabular_tokens", kinds=("tabular",))
class TabularTokenEncoder(nn.Module):
    """One token per column: numeric value × w_f + b_f, categorical embedding per column.

    A missing value (``numeric_missing`` True, or categorical index 0) gets the column's learned
    missing embedding instead; every token then gets a learned feature-identity embedding.

    Inputs: ``numeric`` (B, F_num) float, ``numeric_missing`` (B, F_num) bool,
    ``categorical`` (B, F_cat) int64.
    Output: tokens (B, F_num + F_cat, dim), numeric columns first, in ``input_info`` order;
    mask (B, F_num + F_cat) all True.

    Args:
        input_info: ``{"kind": "tabular", "numeric": [names], "categorical": {name: cardinality}}``,
            cardinality counting the reserved 0 = missing and 1 = unknown.
        dim: token width.
    """

    def __init__(self, input_info: dict[str, Any], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.numeric_columns = list(input_info["numeric"])
        self.categorical_columns = list(input_info["categorical"])
        cardinalities = [int(input_info["categorical"][c]) for c in self.categorical_columns]
        for column, cardinality in zip(self.categorical_columns, cardinalities, strict=True):
            if cardinality < 2:
                raise ModelError(
                    f"tabular_tokens: categorical column '{column}' has cardinality {cardinality}; "
                    "it must count the reserved 0 = missing and 1 = unknown (at least 2)"
                )
        num_numeric, num_categorical = len(self.numeric_columns), len(cardinalities)
        self.num_tokens = num_numeric + num_categorical
        if self.num_tokens == 0:
            raise ModelError(
                "tabular_tokens: the tabular modality lists no numeric or categorical column"
            )
        self.cardinalities = cardinalities

        bound = 1 / math.sqrt(dim)  # FT-Transformer's uniform init
        self.numeric_weight = nn.Parameter(torch.empty(num_numeric, dim).uniform_(-bound, bound))
        self.numeric_bias = nn.Parameter(torch.empty(num_numeric, dim).uniform_(-bound, bound))
        # All categorical columns share one table; each column reads its own slice of rows.
        self.category_embedding = nn.Embedding(max(sum(cardinalities), 1), dim)
        nn.init.uniform_(self.category_embedding.weight, -bound, bound)
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("category_offsets", offsets[:num_categorical], persistent=False)
        self.missing_embedding = nn.Parameter(
            torch.empty(self.num_tokens, dim).uniform_(-bound, bound)
        )
        self.feature_embedding = nn.Parameter(
            torch.empty(self.num_tokens, dim).uniform_(-bound, bound)
        )

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``numeric`` (B, F_num), ``numeric_missing`` (B, F_num), ``categorical`` (B, F_cat)
        -> tokens (B, F_num + F_cat, dim), mask (B, F_num + F_cat)."""
        numeric = inputs["numeric"].float()
        numeric_missing = inputs["numeric_missing"].bool()
        categorical = inputs["categorical"].long()
        categorical = self._check(numeric, categorical)
        parts, missing_parts = [], []
        if self.numeric_columns:
            # A stand-in under a missing flag may be anything (even NaN): zero it before use.
            values = numeric.masked_fill(numeric_missing, 0.0)
            parts.append(
                values[..., None] * self.numeric_weight + self.numeric_bias
            )  # (B, F_num, D)
            missing_parts.append(numeric_missing)
        if self.categorical_columns:
            parts.append(
                self.category_embedding(categorical + self.category_offsets)
            )  # (B, F_cat, D)
            missing_parts.append(categorical == MISSING_INDEX)
        tokens = torch.cat(parts, dim=1)  # (B, F, D)
        missing = torch.cat(missing_parts, dim=1)[..., None]  # (B, F, 1)
        tokens = torch.where(missing, self.missing_embedding, tokens) + self.feature_embedding
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    def _check(self, numeric: Tensor, categorical: Tensor) -> Tensor:
        """``categorical`` checked against the columns and vocabularies (raises on a mismatch)."""
        if numeric.shape[1] != len(self.numeric_columns) or categorical.shape[1] != len(
            self.categorical_columns
        ):
            raise ModelError(
                f"tabular_tokens was built for {len(self.numeric_columns)} numeric and "
                f"{len(self.categorical_columns)} categorical columns but got {numeric.shape[1]} "
                f"and {categorical.shape[1]}; encode with the preprocessing state it was fitted with"
            )
        if not self.categorical_columns:
            return categorical
        limits = torch.tensor(self.cardinalities, device=categorical.device)
        bad = (categorical < 0) | (categorical >= limits)
        if torch.compiler.is_exporting():
            # A graph cannot raise on values: an index outside its column's vocabulary reads as
            # an unknown category there, never as a row of the next column's table.
            return torch.where(bad, UNKNOWN_INDEX, categorical)
        if bad.any():
            column = int(bad.any(dim=0).nonzero()[0])
            name, value = (
                self.categorical_columns[column],
                int(categorical[:, column][bad[:, column]][0]),
            )
            raise ModelError(
                f"tabular_tokens: categorical column '{name}' holds index {value} but its vocabulary "
                f"has {self.cardinalities[column]} entries (0 = missing, 1 = unknown); encode with "
                "the preprocessing state this model was fitted with"
            )
        return categorical
