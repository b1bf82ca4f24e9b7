"""Champion against challenger on the same labelled ids, from mergeable counts.

A challenger (a shadow model) scores the same requests as the champion; once labels join,
the question is whether the challenger is better. The evidence has to come from state that
adds up in Redis across batches, workers and windows, never from raw vectors, so each test
here takes counts or sums:

* ROC-AUC — DeLong's paired test from the joint score histograms of the positives and of
  the negatives (`delong_test`; `joint_score_histograms` is the batch update).
* Accuracy — McNemar's test from the 2×2 table of (champion correct, challenger correct)
  (`mcnemar_test`).
* Regression — the paired t-test on absolute errors from n, Σd and Σd², with
  d = |e_champion| − |e_challenger| (`paired_t_test`, `mae_comparison`).

Every result's ``difference`` is oriented so that a positive value favours the challenger
(AUC_b − AUC_a, accuracy_b − accuracy_a, MAE_a − MAE_b), which lets `verdict` turn any of
them into "better / worse / no difference" at a level and a minimum practical difference.

Conventions as in `streamdrift.statistics`: a result that the data cannot define (no
positives, no pairs, zero variance) is ``nan``, not an exception, so a monitor reports "no
evidence" for that window; malformed input (wrong shapes, negative or non-finite counts) is
a programming error and raises ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr, stdtr, stdtrit
from scipy.stats import binom

__all__ = [
    "DEFAULT_SCORE_BINS",
    "EXACT_BELOW",
    "DeLongResult",
    "McNemarResult",
    "Outcome",
    "PairedComparison",
    "PairedTTest",
    "Verdict",
    "delong_test",
    "joint_score_histograms",
    "mae_comparison",
    "mcnemar_test",
    "paired_t_test",
    "verdict",
]

DEFAULT_SCORE_BINS = 100
"""Score bins per model for the joint histograms: 100 × 100 cells per class."""

EXACT_BELOW = 25
"""McNemar: fewer discordant pairs than this use the exact binomial test (see
`mcnemar_test`)."""

_NAN = float("nan")

Float2D = NDArray[np.float64]


# --------------------------------------------------------------------------- ROC-AUC


@dataclass(frozen=True, slots=True)
class DeLongResult:
    """DeLong's paired test of two ROC-AUCs on the same ids (a = champion, b = challenger).

    ``difference`` is ``auc_b - auc_a``; ``standard_error`` its DeLong standard error,
    ``z = difference / standard_error`` and ``p_value`` the two-sided normal p-value.
    ``n_pos``/``n_neg`` are the (possibly fractional) totals of the two histograms.
    """

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    z: float
    p_value: float
    n_pos: float
    n_neg: float


def joint_score_histograms(
    is_positive: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    bins: int = DEFAULT_SCORE_BINS,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The batch update of `delong_test`'s state: ``(pos, neg)``, each ``bins × bins``.

    ``pos[i, j]`` counts the positive ids whose champion score falls in bin ``i`` and
    challenger score in bin ``j``; ``neg`` the same for negatives. A score in [0, 1] goes to
    bin ``floor(score * bins)`` clipped to ``[0, bins - 1]`` (1.0 in the last bin), the
    rule of `streamdrift.performance.score_bin`. Histograms of two batches add up.
    """
    y = np.asarray(is_positive, dtype=bool)
    a = np.asarray(score_a, dtype=np.float64)
    b = np.asarray(score_b, dtype=np.float64)
    if y.ndim != 1 or a.shape != y.shape or b.shape != y.shape:
        raise ValueError(
            f"labels and scores must be 1-D of one length: {y.shape}, {a.shape}, {b.shape}"
        )
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    ia = np.clip((a * bins).astype(np.int64), 0, bins - 1)
    ib = np.clip((b * bins).astype(np.int64), 0, bins - 1)
    cell = ia * bins + ib
    pos = np.bincount(cell[y], minlength=bins * bins).reshape(bins, bins)
    neg = np.bincount(cell[~y], minlength=bins * bins).reshape(bins, bins)
    return pos, neg


def _joint_counts(pos: ArrayLike, neg: ArrayLike) -> tuple[Float2D, Float2D]:
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise ValueError(f"pos and neg must be 2-D of one shape, got {p.shape} and {q.shape}")
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise ValueError("counts must be finite")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("counts must be non-negative")
    return p, q


def _placement(other: NDArray[np.float64], total: float, above: bool) -> NDArray[np.float64]:
    """Share of the other class's ids an id in each bin outranks, ties counting ½.

    For a positive in bin k that is (negatives below k + ½ negatives in k) / n_neg; for a
    negative, (positives above k + ½ positives in k) / n_pos."""
    cum = np.cumsum(other)
    beyond = cum[-1] - cum if above else cum - other
    return (beyond + 0.5 * other) / total


def delong_test(pos: ArrayLike, neg: ArrayLike) -> DeLongResult:
    """DeLong's test that two correlated ROC-AUCs are equal, from joint score histograms.

    ``pos[i, j]`` (``neg[i, j]``) counts the positive (negative) ids whose champion score is
    in bin ``i`` and challenger score in bin ``j``; counts may be fractional (decayed).
    The result equals DeLong's test on the raw scores when each id's score is its bin
    index, ties counting ½ (DeLong, DeLong & Clarke-Pearson, *Biometrics* 44, 1988), in the
    form of Sun & Xu (*IEEE Signal Process. Lett.* 21, 2014):

    * structural components: for each positive ``V10 = (#neg below + ½ #neg tied) / n``,
      for each negative ``V01 = (#pos above + ½ #pos tied) / m``, per model; each AUC is
      the mean of either;
    * ``Var(AUC_b − AUC_a) = S10 / m + S01 / n`` where ``S10`` (``S01``) is the sample
      variance, divisor m − 1 (n − 1), of ``V10_b − V10_a`` over the positives (of
      ``V01_b − V01_a`` over the negatives) — the quadratic form ``c' S c`` with
      ``c = (−1, 1)`` of the papers' covariance matrices.

    An id's components depend only on its bins, so they are computed per bin from the
    marginals' cumulative sums and the variances are sums over the B × B cells: O(B²),
    whatever the number of ids.

    Degenerate cases: no positives or no negatives — AUCs and everything else nan; fewer
    than 2 positives or 2 negatives (no sample variance) or zero variance (the two models
    order every pair alike, e.g. identical scores, or both separate the classes
    perfectly) — the AUCs and difference are given, ``standard_error`` is nan or 0, and
    ``z`` and ``p_value`` are nan: the normal approximation says nothing there.
    """
    p, q = _joint_counts(pos, neg)
    m, n = float(p.sum()), float(q.sum())
    if m <= 0.0 or n <= 0.0:
        return DeLongResult(_NAN, _NAN, _NAN, _NAN, _NAN, _NAN, m, n)
    # champion scores index the rows, challenger scores the columns
    pos_a, pos_b = p.sum(axis=1), p.sum(axis=0)
    neg_a, neg_b = q.sum(axis=1), q.sum(axis=0)
    v10_a = _placement(neg_a, n, above=False)
    v10_b = _placement(neg_b, n, above=False)
    v01_a = _placement(pos_a, m, above=True)
    v01_b = _placement(pos_b, m, above=True)
    auc_a = float(pos_a @ v10_a) / m
    auc_b = float(pos_b @ v10_b) / m
    difference = auc_b - auc_a
    if m <= 1.0 or n <= 1.0:
        return DeLongResult(auc_a, auc_b, difference, _NAN, _NAN, _NAN, m, n)
    # centred on the mean (the difference) before squaring: no cancellation of large sums
    d10 = v10_b[np.newaxis, :] - v10_a[:, np.newaxis] - difference
    d01 = v01_b[np.newaxis, :] - v01_a[:, np.newaxis] - difference
    s10 = float((p * d10 * d10).sum()) / (m - 1.0)
    s01 = float((q * d01 * d01).sum()) / (n - 1.0)
    se = math.sqrt(s10 / m + s01 / n)
    if not se > 0.0:
        return DeLongResult(auc_a, auc_b, difference, se, _NAN, _NAN, m, n)
    z = difference / se
    return DeLongResult(auc_a, auc_b, difference, se, z, float(2.0 * ndtr(-abs(z))), m, n)


# --------------------------------------------------------------------------- accuracy

McNemarMethod = Literal["exact", "mid-p", "chi-square"]


@dataclass(frozen=True, slots=True)
class McNemarResult:
    """McNemar's test of two accuracies on the same ids (a = champion, b = challenger).

    ``difference = accuracy_b − accuracy_a = (challenger_only − champion_only) / n``.
    ``statistic`` is the continuity-corrected chi-square for ``method == "chi-square"`` and
    nan for the binomial methods.
    """

    accuracy_a: float
    accuracy_b: float
    difference: float
    statistic: float
    p_value: float
    method: McNemarMethod
    n: int
    champion_only: int
    challenger_only: int


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def mcnemar_test(
    both_correct: int,
    champion_only: int,
    challenger_only: int,
    both_wrong: int,
    *,
    exact_below: int = EXACT_BELOW,
    mid_p: bool = False,
) -> McNemarResult:
    """McNemar's test that the champion and the challenger are equally accurate.

    The cells of the paired 2×2 table: ids both classify correctly, only the champion,
    only the challenger, neither. Only the discordant pairs ``b = champion_only`` and
    ``c = challenger_only`` carry evidence (McNemar, *Psychometrika* 12, 1947): under the
    null each is ``Binomial(b + c, ½)``.

    Rule: with fewer than ``exact_below`` (default 25) discordant pairs the chi-square
    approximation is poor, so the exact two-sided binomial p-value
    ``min(1, 2 · P(X ≤ min(b, c)))`` is used (``scipy.stats.binomtest(b, b + c)``); with
    ``mid_p`` the mid-p variant ``2 · P(X < min(b, c)) + P(X = min(b, c))``, which
    Fagerland, Lydersen & Laake (*BMC Med. Res. Methodol.* 13, 2013) found closer to
    nominal. Otherwise the chi-square statistic with Edwards' continuity correction
    ``max(0, |b − c| − 1)² / (b + c)`` on 1 degree of freedom (Edwards, *Psychometrika*
    13, 1948). No discordant pair: p = 1. No ids at all: accuracies and p nan.
    """
    n11 = _count("both_correct", both_correct)
    b = _count("champion_only", champion_only)
    c = _count("challenger_only", challenger_only)
    n00 = _count("both_wrong", both_wrong)
    n = n11 + b + c + n00
    discordant = b + c
    exact = discordant < exact_below
    method: McNemarMethod = ("mid-p" if mid_p else "exact") if exact else "chi-square"
    if n == 0:
        return McNemarResult(_NAN, _NAN, _NAN, _NAN, _NAN, method, 0, 0, 0)
    acc_a, acc_b = (n11 + b) / n, (n11 + c) / n
    statistic = _NAN
    if discordant == 0:
        p_value = 1.0
    elif exact:
        k = min(b, c)
        tail = float(binom.cdf(k, discordant, 0.5))
        if mid_p:
            tail -= 0.5 * float(binom.pmf(k, discordant, 0.5))
        p_value = min(1.0, 2.0 * tail)
    else:
        statistic = max(0.0, abs(b - c) - 1.0) ** 2 / discordant
        # chi-square(1) survival = P(|Z| > sqrt(x))
        p_value = float(2.0 * ndtr(-math.sqrt(statistic)))
    return McNemarResult(acc_a, acc_b, acc_b - acc_a, statistic, p_value, method, n, b, c)


# --------------------------------------------------------------------------- regression


@dataclass(frozen=True, slots=True)
class PairedTTest:
    """Paired t-test on d = |e_champion| − |e_challenger| over the same ids.

    ``difference`` is the mean of d (= MAE_a − MAE_b: positive favours the challenger),
    ``standard_deviation`` the sample standard deviation of d, ``t`` and ``df = n − 1`` the
    statistic and its degrees of freedom, ``p_value`` two-sided, ``[ci_low, ci_high]`` the
    ``confidence`` interval of the mean difference. ``mae_a``/``mae_b`` are filled by
    `mae_comparison` and nan from `paired_t_test`.
    """

    n: int
    difference: float
    standard_deviation: float
    t: float
    df: int
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    mae_a: float = _NAN
    mae_b: float = _NAN


#: a variance below this share of the mean square of d is rounding noise of the sums
_VARIANCE_RESOLUTION = 1e-12


def paired_t_test(n: int, sum_d: float, sum_d2: float, confidence: float = 0.95) -> PairedTTest:
    """Student's paired t-test from the sums of the differences (Student, *Biometrika* 6,
    1908): ``mean = Σd / n``, ``s² = (Σd² − (Σd)² / n) / (n − 1)``,
    ``t = mean / (s / √n)`` on ``n − 1`` degrees of freedom, as
    ``scipy.stats.ttest_rel(abs_err_a, abs_err_b)`` on the raw errors; the interval is
    ``mean ± t_{(1+confidence)/2, n−1} · s / √n``.

    The variance from sums loses the digits that ``(Σd)²/n`` cancels; a variance below
    1e-12 of the mean square of d cannot be told from rounding and counts as zero.
    Degenerate cases: n = 0 — everything nan; n = 1 or zero variance (every difference
    equal) — the mean is given, the interval collapses to it when the variance is zero, and
    ``t`` and ``p_value`` are nan.
    """
    count = _count("n", n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (math.isfinite(sum_d) and math.isfinite(sum_d2)) or sum_d2 < 0.0:
        raise ValueError("sums must be finite and sum_d2 non-negative")
    if count == 0:
        return PairedTTest(0, _NAN, _NAN, _NAN, 0, _NAN, _NAN, _NAN, confidence)
    mean = sum_d / count
    if count == 1:
        return PairedTTest(1, mean, _NAN, _NAN, 0, _NAN, _NAN, _NAN, confidence)
    df = count - 1
    variance = (sum_d2 - sum_d * mean) / df
    if variance <= _VARIANCE_RESOLUTION * sum_d2 / count:
        return PairedTTest(count, mean, 0.0, _NAN, df, _NAN, mean, mean, confidence)
    sd = math.sqrt(variance)
    se = sd / math.sqrt(count)
    t = mean / se
    p_value = float(2.0 * stdtr(df, -abs(t)))
    half = float(stdtrit(df, 0.5 + confidence / 2.0)) * se
    return PairedTTest(count, mean, sd, t, df, p_value, mean - half, mean + half, confidence)


def mae_comparison(
    n: int, sum_abs_a: float, sum_abs_b: float, sum_d2: float, confidence: float = 0.95
) -> PairedTTest:
    """`paired_t_test` from the two models' sums of absolute errors Σ|e_a|, Σ|e_b| (so
    Σd = Σ|e_a| − Σ|e_b|) and Σd², also reporting ``mae_a`` and ``mae_b``."""
    result = paired_t_test(n, sum_abs_a - sum_abs_b, sum_d2, confidence)
    if result.n == 0:
        return result
    return PairedTTest(
        result.n,
        result.difference,
        result.standard_deviation,
        result.t,
        result.df,
        result.p_value,
        result.ci_low,
        result.ci_high,
        result.confidence,
        mae_a=sum_abs_a / result.n,
        mae_b=sum_abs_b / result.n,
    )


# --------------------------------------------------------------------------- verdict


class PairedComparison(Protocol):
    """Any of the results above: a difference (positive favours the challenger) and its
    two-sided p-value."""

    @property
    def difference(self) -> float: ...

    @property
    def p_value(self) -> float: ...


class Outcome(StrEnum):
    """What a comparison says about the challenger."""

    BETTER = "better"  #: significantly and practically better than the champion
    WORSE = "worse"  #: significantly and practically worse
    #: no significant difference of at least the practical size (not proof of equality)
    NO_DIFFERENCE = "no_difference"
    #: the window cannot tell (no ids, no variance): p-value or difference is nan
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An outcome with the numbers and the rule's parameters that produced it."""

    outcome: Outcome
    difference: float
    p_value: float
    alpha: float
    min_difference: float

    @property
    def significant(self) -> bool:
        """True if the challenger differs from the champion (better or worse)."""
        return self.outcome in (Outcome.BETTER, Outcome.WORSE)


def verdict(result: PairedComparison, alpha: float = 0.05, min_difference: float = 0.0) -> Verdict:
    """Better, worse or no difference: significant at level ``alpha`` (``p < alpha``) *and*
    an observed difference of at least ``min_difference`` in size (in the result's units:
    AUC or accuracy points, MAE units). The test says the difference is real; the minimum
    says it is large enough to act on — with many labels a negligible difference is
    significant. Nan p-value or difference: ``UNDETERMINED``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not min_difference >= 0.0:
        raise ValueError(f"min_difference must be non-negative, got {min_difference}")
    d, p = float(result.difference), float(result.p_value)
    if math.isnan(d) or math.isnan(p):
        outcome = Outcome.UNDETERMINED
    elif p < alpha and d != 0.0 and abs(d) >= min_difference:
        outcome = Outcome.BETTER if d > 0.0 else Outcome.WORSE
    else:
        outcome = Outcome.NO_DIFFERENCE
    return Verdict(outcome, d, p, alpha, min_difference)
