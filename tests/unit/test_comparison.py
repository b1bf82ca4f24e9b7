"""Tests for streamdrift.comparison, against independent references: DeLong written out from
the paper's definition on raw vectors, scikit-learn's ROC-AUC, scipy's binomial test and
chi-square distribution, and scipy's paired t-test on the raw errors the sums come from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from streamdrift.comparison import (
    EXACT_BELOW,
    Outcome,
    delong_test,
    joint_score_histograms,
    mae_comparison,
    mcnemar_test,
    paired_t_test,
    verdict,
)

# --------------------------------------------------------------------------- DeLong


def _delong_raw(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, ...]:
    """DeLong, DeLong & Clarke-Pearson (1988) on raw scores, straight from the definition:
    psi(X, Y) = 1 if X > Y, 1/2 if X == Y, 0 otherwise over every (positive, negative)
    pair; V10 and V01 the row and column means of psi per model; S10 and S01 the sample
    covariance matrices (divisors m - 1 and n - 1); Var(AUC_b - AUC_a) = c'(S10/m +
    S01/n)c with c = (-1, 1). O(m * n) on purpose. Returns (auc_a, auc_b, se, z, p)."""
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.empty((2, m))
    v01 = np.empty((2, n))
    for r, s in enumerate((a, b)):
        x_pos, x_neg = s[y][:, None], s[~y][None, :]
        psi = (x_pos > x_neg) + 0.5 * (x_pos == x_neg)
        v10[r] = psi.mean(axis=1)
        v01[r] = psi.mean(axis=0)
    auc = v10.mean(axis=1)
    s = np.cov(v10) / m + np.cov(v01) / n
    c = np.array([-1.0, 1.0])
    se = math.sqrt(c @ s @ c)
    z = (auc[1] - auc[0]) / se
    return float(auc[0]), float(auc[1]), se, z, float(2 * stats.norm.sf(abs(z)))


def _scores(
    rng: np.random.Generator, n: int, prevalence: float, sep_a: float, sep_b: float, rho: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated scores in (0, 1): a logistic of label * separation plus
    noise with correlation `rho` between the models."""
    y = rng.random(n) < prevalence
    common = rng.normal(size=n)
    noise_a = math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=n)
    noise_b = math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=n)
    a = 1 / (1 + np.exp(-(sep_a * y + noise_a - sep_a / 2)))
    b = 1 / (1 + np.exp(-(sep_b * y + noise_b - sep_b / 2)))
    return y, a, b


def _bin_index(score: np.ndarray, bins: int) -> np.ndarray:
    """The documented bin rule, written out: floor(score * bins), clipped to the range."""
    return np.minimum(np.floor(score * bins), bins - 1).astype(int)


@pytest.mark.parametrize(
    ("seed", "n", "prevalence", "bins", "sep_a", "sep_b", "rho"),
    [
        (1, 400, 0.3, 100, 1.5, 2.0, 0.6),
        (2, 250, 0.5, 10, 1.0, 1.0, 0.9),  # coarse bins: many ties
        (3, 600, 0.1, 100, 2.5, 1.5, 0.3),
        (4, 120, 0.4, 5, 0.5, 1.5, 0.0),  # very coarse, independent scores
        (5, 300, 0.6, 37, 2.0, 2.1, 0.95),
    ],
)
def test_delong_from_histograms_equals_delong_on_raw_bin_indices(
    seed: int, n: int, prevalence: float, bins: int, sep_a: float, sep_b: float, rho: float
) -> None:
    y, a, b = _scores(np.random.default_rng(seed), n, prevalence, sep_a, sep_b, rho)
    pos, neg = joint_score_histograms(y, a, b, bins)
    got = delong_test(pos, neg)
    ia, ib = _bin_index(a, bins), _bin_index(b, bins)
    auc_a, auc_b, se, z, p = _delong_raw(y, ia, ib)
    assert got.auc_a == pytest.approx(auc_a, abs=1e-12)
    assert got.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert got.difference == pytest.approx(auc_b - auc_a, abs=1e-12)
    assert got.standard_error == pytest.approx(se, rel=1e-9)
    assert got.z == pytest.approx(z, rel=1e-9)
    assert got.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert (got.n_pos, got.n_neg) == (y.sum(), (~y).sum())
    # the AUCs are the ordinary ROC-AUCs of the binned scores
    assert got.auc_a == pytest.approx(roc_auc_score(y, ia), abs=1e-12)
    assert got.auc_b == pytest.approx(roc_auc_score(y, ib), abs=1e-12)


def test_joint_histograms_count_ids_by_bin_pair_and_add_up_across_batches() -> None:
    y, a, b = _scores(np.random.default_rng(7), 500, 0.3, 1.0, 1.0, 0.5)
    a[:3] = [0.0, 1.0, 0.999999]  # the edges: 1.0 goes to the last bin
    pos, neg = joint_score_histograms(y, a, b, 20)
    want_pos, want_neg = np.zeros((20, 20), int), np.zeros((20, 20), int)
    np.add.at(want_pos, (_bin_index(a[y], 20), _bin_index(b[y], 20)), 1)
    np.add.at(want_neg, (_bin_index(a[~y], 20), _bin_index(b[~y], 20)), 1)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(neg, want_neg)
    p1, n1 = joint_score_histograms(y[:200], a[:200], b[:200], 20)
    p2, n2 = joint_score_histograms(y[200:], a[200:], b[200:], 20)
    np.testing.assert_array_equal(p1 + p2, pos)
    np.testing.assert_array_equal(n1 + n2, neg)


def test_delong_fractional_counts_are_frequency_weights() -> None:
    """Doubled counts are the same test as every id listed twice."""
    y, a, b = _scores(np.random.default_rng(11), 150, 0.4, 1.0, 1.5, 0.5)
    pos, neg = joint_score_histograms(y, a, b, 25)
    got = delong_test(pos * 2.0, neg * 2.0)
    ia, ib = _bin_index(a, 25), _bin_index(b, 25)
    _, _, se, _, p = _delong_raw(np.repeat(y, 2), np.repeat(ia, 2), np.repeat(ib, 2))
    assert got.standard_error == pytest.approx(se, rel=1e-9)
    assert got.p_value == pytest.approx(p, rel=1e-9)
    half = delong_test(pos * 0.5, neg * 0.5)  # decayed: same AUCs, wider interval
    assert (half.auc_a, half.auc_b) == pytest.approx((got.auc_a, got.auc_b))
    assert half.standard_error > got.standard_error


def test_delong_p_values_under_the_null_are_uniform() -> None:
    """Two equally good, correlated scorers: p-values over 400 windows are uniform, and the
    rejection rate at 0.05 lies within the 99.9% binomial range of 400 draws at 0.05."""
    rng = np.random.default_rng(2024)
    sims = 400
    p_values = np.empty(sims)
    for k in range(sims):
        y, a, b = _scores(rng, 300, 0.3, 1.5, 1.5, 0.7)
        p_values[k] = delong_test(*joint_score_histograms(y, a, b)).p_value
    rejections = int((p_values < 0.05).sum())
    low, high = stats.binom.ppf([0.0005, 0.9995], sims, 0.05)
    assert low <= rejections <= high
    assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_delong_rejects_a_real_difference() -> None:
    rng = np.random.default_rng(99)
    outcomes = []
    for _ in range(50):
        y, a, b = _scores(rng, 600, 0.3, 1.0, 2.0, 0.5)  # AUC about 0.76 against 0.92
        outcomes.append(verdict(delong_test(*joint_score_histograms(y, a, b))).outcome)
        y, a, b = _scores(rng, 600, 0.3, 2.0, 1.0, 0.5)
        outcomes.append(verdict(delong_test(*joint_score_histograms(y, a, b))).outcome)
    assert outcomes[0::2].count(Outcome.BETTER) >= 48
    assert outcomes[1::2].count(Outcome.WORSE) >= 48


def test_delong_degenerate_cases() -> None:
    empty = np.zeros((10, 10))
    one = np.zeros((10, 10))
    one[3, 4] = 5
    no_negatives = delong_test(one, empty)
    assert math.isnan(no_negatives.auc_a) and math.isnan(no_negatives.p_value)
    assert no_negatives.n_pos == 5 and no_negatives.n_neg == 0

    # a single positive: AUCs defined, no sample variance
    single = np.zeros((10, 10))
    single[8, 9] = 1
    neg = np.zeros((10, 10))
    neg[2, 1], neg[5, 9] = 3, 2
    r = delong_test(single, neg)
    assert (r.auc_a, r.auc_b) == (1.0, 0.8)  # 5/5; (3 + 2/2)/5
    assert math.isnan(r.standard_error) and math.isnan(r.p_value)

    # identical scores: every pair ordered alike, zero variance
    y, a, _ = _scores(np.random.default_rng(5), 200, 0.5, 1.0, 1.0, 0.0)
    same = delong_test(*joint_score_histograms(y, a, a))
    assert same.difference == 0.0 and same.standard_error == 0.0
    assert math.isnan(same.z) and math.isnan(same.p_value)
    assert verdict(same).outcome is Outcome.UNDETERMINED

    with pytest.raises(ValueError):
        delong_test(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError):
        delong_test(-np.ones((3, 3)), np.zeros((3, 3)))


# --------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(("b", "c"), [(0, 1), (3, 9), (9, 3), (7, 7), (0, 12), (10, 14), (1, 23)])
def test_mcnemar_exact_with_few_discordant_pairs_is_the_binomial_test(b: int, c: int) -> None:
    got = mcnemar_test(50, b, c, 20)
    assert got.method == "exact"
    assert math.isnan(got.statistic)
    assert got.p_value == pytest.approx(stats.binomtest(c, b + c, 0.5).pvalue, rel=1e-12)
    # mid-p: P(X = k) counted half, k = min(b, c)
    k = min(b, c)
    tail = stats.binom.cdf(k - 1, b + c, 0.5) + 0.5 * stats.binom.pmf(k, b + c, 0.5)
    mid = mcnemar_test(50, b, c, 20, mid_p=True)
    assert mid.method == "mid-p"
    assert mid.p_value == pytest.approx(min(1.0, 2 * tail), rel=1e-12)
    assert mid.p_value <= got.p_value


@pytest.mark.parametrize(("b", "c"), [(12, 13), (20, 5), (5, 20), (40, 40), (130, 170), (3, 60)])
def test_mcnemar_chi_square_with_continuity_correction(b: int, c: int) -> None:
    got = mcnemar_test(500, b, c, 100)
    assert got.method == "chi-square"
    x2 = max(0, abs(b - c) - 1) ** 2 / (b + c)  # Edwards (1948)
    assert got.statistic == pytest.approx(x2, rel=1e-12)
    assert got.p_value == pytest.approx(stats.chi2.sf(x2, df=1), rel=1e-9)


def test_mcnemar_rule_accuracies_and_degenerate_cases() -> None:
    assert EXACT_BELOW == 25
    assert mcnemar_test(0, 10, 14, 0).method == "exact"
    assert mcnemar_test(0, 10, 15, 0).method == "chi-square"
    assert mcnemar_test(0, 10, 15, 0, exact_below=100).method == "exact"

    rng = np.random.default_rng(3)
    correct_a = rng.random(1000) < 0.80
    correct_b = np.where(rng.random(1000) < 0.7, correct_a, rng.random(1000) < 0.86)
    table = [
        int((correct_a & correct_b).sum()),
        int((correct_a & ~correct_b).sum()),
        int((~correct_a & correct_b).sum()),
        int((~correct_a & ~correct_b).sum()),
    ]
    r = mcnemar_test(*table)
    assert r.accuracy_a == pytest.approx(correct_a.mean())
    assert r.accuracy_b == pytest.approx(correct_b.mean())
    assert r.difference == pytest.approx(correct_b.mean() - correct_a.mean())
    assert (r.n, r.champion_only, r.challenger_only) == (1000, table[1], table[2])

    assert mcnemar_test(30, 0, 0, 5).p_value == 1.0
    empty = mcnemar_test(0, 0, 0, 0)
    assert math.isnan(empty.accuracy_a) and math.isnan(empty.p_value)
    assert verdict(empty).outcome is Outcome.UNDETERMINED
    with pytest.raises(ValueError):
        mcnemar_test(1, -1, 0, 0)
    with pytest.raises(ValueError):
        mcnemar_test(1, 0.5, 0, 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- paired t


def _error_sums(err_a: np.ndarray, err_b: np.ndarray) -> tuple[int, float, float, float, float]:
    d = np.abs(err_a) - np.abs(err_b)
    return (
        d.size,
        float(np.abs(err_a).sum()),
        float(np.abs(err_b).sum()),
        float(d.sum()),
        float((d * d).sum()),
    )


@pytest.mark.parametrize(("seed", "n", "scale_b"), [(1, 30, 1.0), (2, 500, 0.9), (3, 5000, 1.1)])
def test_paired_t_from_sums_equals_ttest_rel_on_the_raw_errors(
    seed: int, n: int, scale_b: float
) -> None:
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=n)
    err_a = 5.0 * (shared + 0.5 * rng.normal(size=n))
    err_b = 5.0 * scale_b * (shared + 0.5 * rng.normal(size=n))
    count, sum_abs_a, sum_abs_b, sum_d, sum_d2 = _error_sums(err_a, err_b)
    want = stats.ttest_rel(np.abs(err_a), np.abs(err_b))
    ci = want.confidence_interval(0.9)
    for got in (
        paired_t_test(count, sum_d, sum_d2, confidence=0.9),
        mae_comparison(count, sum_abs_a, sum_abs_b, sum_d2, confidence=0.9),
    ):
        assert got.t == pytest.approx(want.statistic, rel=1e-8)
        assert got.p_value == pytest.approx(want.pvalue, rel=1e-8)
        assert got.df == want.df == n - 1
        assert got.ci_low == pytest.approx(ci.low, rel=1e-8)
        assert got.ci_high == pytest.approx(ci.high, rel=1e-8)
        assert got.difference == pytest.approx(np.mean(np.abs(err_a) - np.abs(err_b)))
        assert got.standard_deviation == pytest.approx(
            np.std(np.abs(err_a) - np.abs(err_b), ddof=1)
        )
    mae = mae_comparison(count, sum_abs_a, sum_abs_b, sum_d2)
    assert (mae.mae_a, mae.mae_b) == pytest.approx((np.abs(err_a).mean(), np.abs(err_b).mean()))
    assert math.isnan(paired_t_test(count, sum_d, sum_d2).mae_a)


def test_paired_t_degenerate_cases() -> None:
    empty = paired_t_test(0, 0.0, 0.0)
    assert math.isnan(empty.difference) and math.isnan(empty.p_value)
    one = paired_t_test(1, 2.0, 4.0)
    assert one.difference == 2.0 and math.isnan(one.t) and math.isnan(one.p_value)
    # every difference 0.1: a variance of rounding noise only
    constant = paired_t_test(1000, 1000 * 0.1, 1000 * 0.1**2)
    assert constant.standard_deviation == 0.0
    assert math.isnan(constant.p_value)
    assert constant.ci_low == constant.ci_high == pytest.approx(0.1)
    with pytest.raises(ValueError):
        paired_t_test(10, 1.0, -1.0)
    with pytest.raises(ValueError):
        paired_t_test(10, 1.0, 1.0, confidence=1.0)


def test_mae_comparison_rejects_a_better_challenger() -> None:
    rng = np.random.default_rng(8)
    err_a = rng.normal(scale=2.0, size=2000)
    err_b = rng.normal(scale=1.5, size=2000)
    count, sum_abs_a, sum_abs_b, _, sum_d2 = _error_sums(err_a, err_b)
    result = mae_comparison(count, sum_abs_a, sum_abs_b, sum_d2)
    assert verdict(result, min_difference=0.1).outcome is Outcome.BETTER
    assert verdict(result, min_difference=1.0).outcome is Outcome.NO_DIFFERENCE


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class _Result:
    difference: float
    p_value: float


@pytest.mark.parametrize(
    ("difference", "p_value", "min_difference", "outcome"),
    [
        (0.03, 0.001, 0.0, Outcome.BETTER),
        (-0.03, 0.001, 0.0, Outcome.WORSE),
        (0.03, 0.2, 0.0, Outcome.NO_DIFFERENCE),  # not significant
        (0.03, 0.001, 0.05, Outcome.NO_DIFFERENCE),  # significant, too small to matter
        (-0.05, 0.001, 0.05, Outcome.WORSE),  # the minimum itself is enough
        (0.03, 0.05, 0.0, Outcome.NO_DIFFERENCE),  # p must be below alpha
        (float("nan"), float("nan"), 0.0, Outcome.UNDETERMINED),
        (0.03, float("nan"), 0.0, Outcome.UNDETERMINED),
    ],
)
def test_verdict(
    difference: float, p_value: float, min_difference: float, outcome: Outcome
) -> None:
    v = verdict(_Result(difference, p_value), alpha=0.05, min_difference=min_difference)
    assert v.outcome is outcome
    assert v.significant == (outcome in (Outcome.BETTER, Outcome.WORSE))
    assert (v.alpha, v.min_difference) == (0.05, min_difference)


def test_verdict_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        verdict(_Result(0.1, 0.01), alpha=0.0)
    with pytest.raises(ValueError):
        verdict(_Result(0.1, 0.01), min_difference=-0.1)
