"""Paired tests of two models scored on the same rows: grouped bootstrap, DeLong, McNemar, Holm.

* :func:`grouped_weights` draws bootstrap resamples of *patients*: a resample is a count per
  patient, and each row weighs as much as its patient was drawn. All R resamples are one
  ``(R, G)`` array of drawn patients (G = patients), turned into ``(R, n)`` row weights without a
  Python loop per resample; :mod:`polymodal.evaluation.resampled_metrics` scores them at once.
  Both models are scored on the *same* resamples, which is what makes the test paired.
* :func:`bootstrap_difference` turns the resampled differences into a percentile interval and a
  two-sided p-value (from the bootstrap standard error).
* :func:`delong` compares two AUROCs on the same rows by DeLong's variance of the difference,
  computed with the fast midrank algorithm (Sun & Xu 2014, IEEE Signal Process. Lett. 21:1389).
* :func:`mcnemar` compares two accuracies on the same rows from the discordant pairs, exact
  (binomial) and mid-p.
* :func:`holm` adjusts a family of p-values (Holm 1979), step-down, strong FWER control.

DeLong and McNemar treat rows as independent. Several rows of one patient (images, visits) are
correlated, and both tests then understate the variance: their p-values are too small. The
grouped bootstrap resamples whole patients and holds either way; :mod:`polymodal.evaluation.compare`
uses it for its verdicts and reports DeLong and McNemar beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from scipy.stats import binom, binomtest, norm, rankdata

# Row weights of one block of resamples hold at most this many numbers (float64: 16 MB), so
# 10,000 resamples of 100,000 rows run in blocks instead of one 8 GB array.
BLOCK_ELEMENTS = 2_000_000


def group_codes(groups: Sequence | np.ndarray) -> tuple[np.ndarray, int]:
    """Patient ids ``(n,)`` → a code 0..G−1 per row ``(n,)`` and G, the number of patients."""
    values = np.asarray(groups)
    if values.dtype.kind == "O":
        values = values.astype(str)  # mixed int/str ids must still sort
    _, codes = np.unique(values, return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if len(codes) else 0


def grouped_weights(
    codes: np.ndarray, n_groups: int, n_resamples: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """Row weights of ``n_resamples`` patient-grouped bootstrap resamples, in blocks.

    Each resample draws ``n_groups`` patients with replacement (one row of an ``(R, G)`` array);
    a row's weight is how often its patient was drawn, so a patient's rows come and go together.
    Yields float arrays ``(R_block, n)``; the same seed gives the same resamples, so two models
    scored on the blocks of one call are scored on identical resamples.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(n_resamples, BLOCK_ELEMENTS // max(len(codes), n_groups, 1)))
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        drawn = rng.integers(0, n_groups, size=(size, n_groups))  # (R_block, G) patient draws
        # Count draws per patient for every resample at once: resample r's patient g is bin
        # r·G + g of one bincount.
        flat = (drawn + (np.arange(size) * n_groups)[:, None]).ravel()
        counts = np.bincount(flat, minlength=size * n_groups).reshape(size, n_groups)
        yield counts[:, codes].astype(np.float64)  # (R_block, n)


class BootstrapDifference(NamedTuple):
    """Difference A − B on the full data, its percentile interval and two-sided p-values."""

    difference: float
    low: float
    high: float
    p: float  # from the bootstrap standard error (no floor; what Holm adjusts)
    p_percentile: float  # from the share of resamples beyond 0 (floor 2/(V + 1))
    standard_error: float
    n_valid: int  # resamples in which both models' metric was defined


def bootstrap_difference(
    difference: float, resampled: np.ndarray, level: float = 0.95
) -> BootstrapDifference:
    """Summarise the resampled differences ``(R,)`` (NaN where undefined in a resample).

    The interval is the percentile interval of the V defined resamples. The p-value is the
    bootstrap Wald test, ``z = d / SD(d*)``, ``p = 2·Φ(−|z|)``: the counting form
    (``p_percentile = min(1, 2·(min(#(d* ≤ 0), #(d* ≥ 0)) + 1) / (V + 1))``, also returned)
    cannot go below 2/(V + 1), so after Holm over hundreds of subsets and metrics nothing
    could ever be called better with a few thousand resamples. A model against itself (every
    d* exactly 0) gets a difference of 0 and p = 1 either way.
    """
    valid = resampled[np.isfinite(resampled)]
    n_valid = len(valid)
    if n_valid < 2 or not np.isfinite(difference):
        nan = np.nan
        return BootstrapDifference(float(difference), nan, nan, nan, nan, nan, n_valid)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [tail, 1.0 - tail])
    below = int((valid <= 0).sum())
    above = int((valid >= 0).sum())
    p_percentile = min(1.0, 2.0 * (min(below, above) + 1) / (n_valid + 1))
    standard_error = float(np.std(valid, ddof=1))
    if difference == 0.0:
        p = 1.0
    elif standard_error == 0.0:
        p = 0.0  # every resample shows the same non-zero difference
    else:
        p = float(2 * norm.sf(abs(difference) / standard_error))
    return BootstrapDifference(
        float(difference), float(low), float(high), p, p_percentile, standard_error, n_valid
    )


class DeLongResult(NamedTuple):
    """Two AUROCs on the same rows, the variance of their difference and its two-sided p."""

    auroc_a: float
    auroc_b: float
    difference: float  # auroc_a − auroc_b
    variance: float  # DeLong's estimate of Var(auroc_a − auroc_b)
    z: float
    p: float


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of each row of ``x (k, n)``, ties sharing their mean rank (midranks)."""
    return rankdata(x, method="average", axis=1)


def delong_covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs ``(k,)`` of ``scores (k, n)`` against ``positive (n,)`` bool and DeLong's
    covariance matrix of them ``(k, k)``, by the fast midrank algorithm (Sun & Xu 2014).

    With m positives and l negatives, the placement values are V10_i (share of negatives
    ranked below positive i, ties counting ½) and V01_j (share of positives above negative j);
    both come from midranks within the positives, within the negatives and overall, in
    O(k·n log n) instead of DeLong's O(k·m·l) pairs. ``Cov = S10/m + S01/l`` with S the sample
    covariances of the placement values across models.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    m, n_neg = int(positive.sum()), int((~positive).sum())
    if m < 2 or n_neg < 2:
        raise ValueError(f"DeLong needs at least two positives and two negatives, got {m}, {n_neg}")
    pos, neg = scores[:, positive], scores[:, ~positive]  # (k, m), (k, l)
    rank_pos, rank_neg = _midranks(pos), _midranks(neg)
    rank_all = _midranks(np.concatenate([pos, neg], axis=1))  # (k, m + l)
    aurocs = (rank_all[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n_neg)
    v10 = (rank_all[:, :m] - rank_pos) / n_neg  # (k, m): negatives below each positive
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # (k, l): positives above each negative
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n_neg
    return aurocs, covariance


def delong(positive: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult:
    """DeLong's paired test of AUROC(A) = AUROC(B) on the same rows (independent rows assumed).

    ``positive (n,)`` bool; ``score_a``, ``score_b (n,)`` higher = more likely positive. Two
    identical scores give a difference of 0 and p = 1.
    """
    (auc_a, auc_b), cov = delong_covariance(positive, np.stack([score_a, score_b]))
    difference = float(auc_a - auc_b)
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if difference == 0.0:
        return DeLongResult(float(auc_a), float(auc_b), 0.0, max(variance, 0.0), 0.0, 1.0)
    if variance <= 0.0:  # different AUROCs, no variance: every placement value is 0 or 1
        return DeLongResult(float(auc_a), float(auc_b), difference, 0.0, np.inf, 0.0)
    z = difference / np.sqrt(variance)
    return DeLongResult(
        float(auc_a), float(auc_b), difference, variance, float(z), 2 * norm.sf(abs(z))
    )


class McNemarResult(NamedTuple):
    """Discordant pairs and McNemar's exact and mid-p two-sided p-values."""

    only_a_correct: int  # rows A gets right and B wrong
    only_b_correct: int
    p_exact: float
    p_mid: float


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """McNemar's test of equal accuracy from two models' per-row correctness ``(n,)`` bool.

    Only discordant rows count: under equal accuracy each of the ``b + c`` is "A right, B
    wrong" with probability ½. Exact: the two-sided binomial p (scipy's ``binomtest``); mid-p:
    the exact p less the probability of the observed count (Fagerland et al. 2013), less
    conservative and closer to nominal. Rows are assumed independent.
    """
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    if b + c == 0:
        return McNemarResult(b, c, 1.0, 1.0)
    p_exact = float(binomtest(b, b + c, 0.5).pvalue)
    # Symmetric null: two-sided exact = 2·P(X ≤ min); mid-p halves the observed point's mass.
    k = min(b, c)
    p_mid = min(1.0, 2.0 * (binom.cdf(k, b + c, 0.5) - 0.5 * binom.pmf(k, b + c, 0.5)))
    return McNemarResult(b, c, p_exact, float(p_mid))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN, not counted).

    The i-th smallest of m p-values becomes ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))``; rejecting
    where the adjusted p < α controls the chance of any false "better" at α.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
