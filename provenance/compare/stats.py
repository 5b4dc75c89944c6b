"""Statistics with their nulls: correlation tests, p-value combination, all in log space.

p-values of derived models underflow a float (1e-300 and below), so tests
return log10 p computed from the distributions' log survival functions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LN10 = math.log(10.0)
LOG10P_FLOOR = -1000.0  # far below anything a decision uses; keeps JSON finite


def pearson_log10p(r: np.ndarray | float, n: int) -> np.ndarray:
    """One-sided log10 p of Pearson r > 0 for n independent pairs (exact under normality).

    Under the null of independent vectors, t = r sqrt((n-2)/(1-r^2)) follows
    Student's t with n-2 degrees of freedom.
    """
    r = np.clip(np.asarray(r, dtype=np.float64), -0.999999999999, 0.999999999999)
    if n < 4:
        return np.zeros_like(r)
    t = r * np.sqrt((n - 2) / (1.0 - r * r))
    return np.maximum(stats.t.logsf(t, n - 2) / LN10, LOG10P_FLOOR)


def clustered_log10p(x: np.ndarray, y: np.ndarray, clusters: np.ndarray | None = None) -> tuple[float, float]:
    """Correlation of x and y and its one-sided log10 p, robust to dependence within clusters.

    The products (x - mean)(y - mean) are summed per cluster (for weights: per
    hidden dimension, the coordinate two independent models do not share),
    and the sum over clusters is self-normalised: z = sum a_c / sqrt(sum a_c^2).
    Under the null of independent models the cluster sums have random signs
    (flipping the sign of a hidden dimension of one model changes nothing), so
    z follows the sign-flip distribution; we use Student's t with C - 1 degrees
    of freedom. Unlike the plain Pearson test, this stays valid when the
    magnitudes of both models share structure (frequent tokens have larger
    embedding rows in every model trained on the same text), which makes the
    plain test wildly anti-conservative.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    xc, yc = x - x.mean(), y - y.mean()
    denominator = np.linalg.norm(xc) * np.linalg.norm(yc)
    r = float(xc @ yc / denominator) if denominator > 0 else 0.0
    products = xc * yc
    if clusters is None:
        sums = products
    else:
        _, inverse = np.unique(np.asarray(clusters).reshape(-1), return_inverse=True)
        sums = np.bincount(inverse, weights=products)
    return r, sign_flip_log10p(sums)


def sign_flip_log10p(sums: np.ndarray) -> float:
    """One-sided log10 p that cluster sums this positive arose with random signs.

    z = sum a_c / sqrt(sum a_c^2), referred to Student's t with C - 1 degrees
    of freedom (C non-zero clusters; fewer than 3: no evidence, p = 1).
    """
    sums = np.asarray(sums, dtype=np.float64).reshape(-1)
    count = int(np.count_nonzero(sums))
    scale = float(np.sqrt(np.sum(sums * sums)))
    if count < 3 or scale == 0:
        return 0.0
    z = float(np.sum(sums)) / scale
    return float(max(stats.t.logsf(z, count - 1) / LN10, LOG10P_FLOOR))


def sign_count_log10p(sums: np.ndarray) -> float:
    """One-sided log10 p of the number of positive cluster sums under random signs: exact (binomial, 1/2).

    Where nearly every cluster is positive (a copy) this reaches 2^-C, far
    below what Student's t gives for the self-normalised sum of the same
    clusters; where magnitudes carry the evidence the sum is stronger.
    """
    sums = np.asarray(sums, dtype=np.float64).reshape(-1)
    nonzero = sums[sums != 0]
    if nonzero.size < 3:
        return 0.0
    positive = int(np.count_nonzero(nonzero > 0))
    return float(max(stats.binom.logsf(positive - 1, nonzero.size, 0.5) / LN10, LOG10P_FLOOR))


def sum_or_count_log10p(sums: np.ndarray) -> float:
    """The stronger of the self-normalised sum and the sign count, Bonferroni over the two; where that reaches
    one (both p >= 0.5) the sum's own p-value, which is then at least 0.5 too (no test at a level below 0.5
    changes)."""
    by_sum = sign_flip_log10p(sums)
    combined = min(by_sum, sign_count_log10p(sums)) + math.log10(2.0)
    return combined if combined < 0 else by_sum


def standardise(rows: np.ndarray) -> np.ndarray:
    """Centre and scale each row to unit norm (rows of zeros stay zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    centred = rows - rows.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def whitening_transform(rows: np.ndarray):
    """The map that centres and decorrelates `rows` with their own covariance (ZCA), as a function that
    applies it to any rows of the same width. Directions with no variance (below 1e-10 of the largest)
    are dropped from the inverse."""
    rows = np.asarray(rows, dtype=np.float64)
    mean = rows.mean(axis=0)
    if rows.shape[0] < 2:
        return lambda other: np.asarray(other, dtype=np.float64) - mean
    centred = rows - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / (centred.shape[0] - 1))
    keep = values > max(float(values.max()), 0.0) * 1e-10
    if not keep.any():
        return lambda other: np.asarray(other, dtype=np.float64) - mean
    matrix = (vectors[:, keep] / np.sqrt(values[keep])) @ vectors[:, keep].T
    return lambda other: (np.asarray(other, dtype=np.float64) - mean) @ matrix


def whiten(rows: np.ndarray) -> np.ndarray:
    """Rows centred and decorrelated with their own covariance: columns then have unit variance and zero
    sample correlation with each other."""
    return whitening_transform(rows)(rows)


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation between every row of a and every row of b."""
    return standardise(a) @ standardise(b).T


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(correlation_matrix(x[None, :], y[None, :])[0, 0])


def fisher_log10p(log10ps: list[float] | np.ndarray) -> float:
    """Fisher's method on log10 p-values: -2 sum ln p ~ chi2(2k) under independent nulls."""
    values = np.asarray(log10ps, dtype=np.float64)
    if values.size == 0:
        return 0.0
    statistic = -2.0 * LN10 * values.sum()
    return float(max(stats.chi2.logsf(statistic, 2 * values.size) / LN10, LOG10P_FLOOR))


def bonferroni_log10p(log10p: float, tests: int) -> float:
    return min(0.0, log10p + math.log10(max(tests, 1)))


def p_from_log10(log10p: float) -> float:
    return 10.0 ** log10p if log10p > -320 else 0.0


def format_p(log10p: float) -> str:
    if log10p < -300:
        return "p < 1e-300"
    p = 10.0 ** log10p
    return f"p = {p:.2g}" if p >= 1e-4 else f"p = 1e{log10p:.0f}"
