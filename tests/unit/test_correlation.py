"""Correlation drift: a window's correlations from its sums against numpy.corrcoef on the
pairwise-complete rows, Fisher's z p-values against scipy's Fisher confidence interval
and against simulation, Holm's procedure against its closed-testing definition, and the
verdict on a correlation that flips sign with unchanged marginals."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from streamdrift import correlation
from streamdrift.correlation import CorrelationSketch

FEATURES = ["a", "b", "c", "d", "e"]


def _rows(rng: np.random.Generator, n: int, rho_ab: float, shift: float = 0.0) -> np.ndarray:
    """Five features: a and b correlated rho_ab, c and d 0.5, e independent; means and
    scales of their own (the sums standardise them)."""
    cov = np.eye(5)
    cov[0, 1] = cov[1, 0] = rho_ab
    cov[2, 3] = cov[3, 2] = 0.5
    z = rng.multivariate_normal(np.zeros(5), cov, n)
    return z * np.array([1.0, 20.0, 0.1, 3.0, 7.0]) + np.array([5.0, -100.0, 0.0, 1e4, 2.0]) + shift


def _holes(x: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    x = x.copy()
    x[rng.uniform(size=x.shape) < share] = np.nan
    return x


def test_window_correlations_from_merged_sums_match_numpy_on_pairwise_complete_rows():
    """Three batches with missing values, summed separately and merged: every pair's
    count and correlation equal numpy.corrcoef over the rows where both are present."""
    rng = np.random.default_rng(1)
    reference = _rows(rng, 5000, 0.8)
    model = correlation.fit(_holes(reference, 0.02, rng), FEATURES, "config")
    assert model is not None
    batches = [_holes(_rows(rng, n, 0.3, shift=2.0), 0.1, rng) for n in (700, 1500, 40)]
    merged = CorrelationSketch.zero(10)
    for b in batches:
        merged = merged + CorrelationSketch.from_values(correlation.standardise(b, model))
    x = np.vstack(batches)
    got = merged.correlation()
    for q, (i, j) in enumerate(zip(*correlation.pair_indices(5), strict=True)):
        both = ~np.isnan(x[:, i]) & ~np.isnan(x[:, j])
        assert merged.n[q] == both.sum()
        want = np.corrcoef(x[both, i], x[both, j])[0, 1]
        assert got[q] == pytest.approx(want, abs=1e-12), (FEATURES[i], FEATURES[j])
    assert model.pair_names()[0] == "a|b"


def test_reference_correlations_match_numpy():
    rng = np.random.default_rng(2)
    x = _rows(rng, 3000, -0.6)
    model = correlation.fit(x, FEATURES, "reference")
    assert model is not None
    want = np.corrcoef(x, rowvar=False)[np.triu_indices(5, 1)]
    np.testing.assert_allclose(model.arrays()[2], want, atol=1e-12)
    assert model.counts == [3000] * 10


def test_a_constant_feature_has_no_correlation():
    rng = np.random.default_rng(3)
    x = _rows(rng, 500, 0.5)
    x[:, 2] = 7.25
    model = correlation.fit(x, FEATURES, "config")
    assert model is not None
    names = model.pair_names()
    assert all((model.reference[q] is None) == ("c" in names[q].split("|")) for q in range(10))
    window = CorrelationSketch.from_values(correlation.standardise(x, model)).correlation()
    assert np.isnan(window[[q for q, n in enumerate(names) if "c" in n.split("|")]]).all()


def test_one_sample_fisher_p_value_matches_scipys_fisher_confidence_interval():
    """With an exact reference (n -> infinity) the test is the one-sample Fisher test of
    rho0, whose p-value is the level at which rho0 sits on the edge of scipy's Fisher
    confidence interval for the correlation (pearsonr(...).confidence_interval)."""
    rng = np.random.default_rng(4)
    for n, rho, rho0 in ((50, 0.3, 0.0), (400, 0.7, 0.6), (1000, -0.2, -0.27), (30, 0.9, 0.5)):
        xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
        result = stats.pearsonr(xy[:, 0], xy[:, 1])
        _, p = correlation.fisher_z_test(
            np.array([result.statistic]), np.array([n]), np.array([rho0]), np.array([10**15])
        )
        interval = result.confidence_interval(confidence_level=1 - float(p[0]))
        bound = interval.low if rho0 < result.statistic else interval.high
        assert bound == pytest.approx(rho0, abs=1e-9), (n, rho, rho0)


def test_two_sample_p_values_are_uniform_when_nothing_changed():
    """Under the null (one correlation, two independent samples of different sizes) the
    p-values are uniform (Kolmogorov–Smirnov against scipy's uniform), and about 1 % of
    them fall below 0.01."""
    rng = np.random.default_rng(5)
    trials, rho = 4000, 0.6

    def correlations(n: int) -> np.ndarray:
        xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], (trials, n))
        x, y = (
            xy[..., 0] - xy[..., 0].mean(1, keepdims=True),
            xy[..., 1] - xy[..., 1].mean(1, keepdims=True),
        )
        return (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))

    _, p = correlation.fisher_z_test(
        correlations(300), np.full(trials, 300), correlations(2000), np.full(trials, 2000)
    )
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert 0.005 <= float(np.mean(p < 0.01)) <= 0.016


def _closed_testing(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm by its definition (Marcus, Peritz & Gabriel's closed testing with Bonferroni
    local tests): H_i is rejected when every intersection of hypotheses holding it is,
    i.e. min over S of p < alpha / |S| for every subset S that contains i."""
    tested = [i for i in range(p.size) if not np.isnan(p[i])]
    out = np.zeros(p.size, dtype=bool)
    for i in tested:
        out[i] = all(
            min(p[j] for j in s) < alpha / len(s)
            for size in range(1, len(tested) + 1)
            for s in combinations(tested, size)
            if i in s
        )
    return out


def test_holm_matches_closed_testing():
    rng = np.random.default_rng(6)
    for _ in range(300):
        m = int(rng.integers(1, 8))
        p = rng.uniform(0, 0.05, m) ** rng.uniform(0.5, 3)
        p[rng.uniform(size=m) < 0.2] = np.nan
        alpha = float(rng.choice([0.01, 0.05]))
        np.testing.assert_array_equal(correlation.holm(p, alpha), _closed_testing(p, alpha))


def _changes(window_rows: np.ndarray, reference_rows: np.ndarray, **gates):
    model = correlation.fit(reference_rows, FEATURES, "config")
    assert model is not None
    sums = CorrelationSketch.from_values(correlation.standardise(window_rows, model))
    settings = {"alpha": 0.01, "min_change": 0.2, "min_samples": 200, **gates}
    r_ref, n_ref = model.arrays()[2], np.asarray(model.counts)
    return correlation.pair_changes(model.features, r_ref, n_ref, sums, **settings)


def test_a_flipped_sign_is_flagged_naming_both_features_and_nothing_else():
    """a and b correlated +0.8 in the reference, -0.8 in the window, every feature's
    marginal distribution unchanged: only that pair is flagged."""
    rng = np.random.default_rng(7)
    reference, window = _rows(rng, 20_000, 0.8), _rows(rng, 3000, -0.8)
    assert stats.ks_2samp(reference[:, 0], window[:, 0]).pvalue > 0.001
    assert stats.ks_2samp(reference[:, 1], window[:, 1]).pvalue > 0.001
    changes = _changes(window, reference)
    assert len(changes) == 10
    flagged = [c for c in changes if c.flagged]
    assert [c.features for c in flagged] == [("a", "b")]
    (ab,) = flagged
    assert ab.reference == pytest.approx(0.8, abs=0.02)
    assert ab.window == pytest.approx(-0.8, abs=0.03)
    assert ab.sample_size == 3000 and ab.reference_size == 20_000


def test_no_flag_on_a_stationary_window_nor_on_a_small_significant_change():
    rng = np.random.default_rng(8)
    reference = _rows(rng, 20_000, 0.8)
    assert not any(c.flagged for c in _changes(_rows(rng, 5000, 0.8), reference))
    # 0.8 -> 0.72 in 50,000 events: highly significant, smaller than the minimum change
    small = _changes(_rows(rng, 50_000, 0.72), reference)
    ab = next(c for c in small if c.features == ("a", "b"))
    assert ab.p_value < 1e-10 and not ab.flagged
    assert _changes(_rows(rng, 150, -0.8), reference) == []  # too few events to judge


def test_beyond_change_p_value_matches_scipys_one_sided_fisher_bound():
    """With an exact reference, "moved by more than delta" is rejected at level p exactly
    when the one-sided (1 - p) Fisher bound of the window's correlation (scipy's
    two-sided interval at 1 - 2p) touches the nearer edge, reference ± delta."""
    rng = np.random.default_rng(9)
    for n, rho, r_ref, delta in (
        (300, -0.25, 0.0, 0.1),
        (2000, 0.37, 0.1, 0.2),
        (80, 0.75, 0.1, 0.4),
    ):
        xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
        result = stats.pearsonr(xy[:, 0], xy[:, 1])
        p = correlation.beyond_change_test(
            np.array([result.statistic]),
            np.array([n]),
            np.array([r_ref]),
            np.array([10**15]),
            delta,
        )[0]
        assert 1e-8 < p < 0.25, p  # the bound is then well defined in floating point
        interval = result.confidence_interval(confidence_level=1 - 2 * p)
        if result.statistic > r_ref:
            assert interval.low == pytest.approx(r_ref + delta, abs=1e-9)
        else:
            assert interval.high == pytest.approx(r_ref - delta, abs=1e-9)


def test_beyond_change_holds_its_level_at_the_edge_and_stays_quiet_inside():
    """Simulated: a correlation that moved by exactly delta is called beyond it about
    as often as the level says (one-sided 5 %), one that did not move almost never."""
    rng = np.random.default_rng(10)
    trials, n, delta = 4000, 500, 0.2

    def correlations(rho: float) -> np.ndarray:
        xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], (trials, n))
        x = xy[..., 0] - xy[..., 0].mean(1, keepdims=True)
        y = xy[..., 1] - xy[..., 1].mean(1, keepdims=True)
        return (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))

    ref, size = np.full(trials, 0.3), np.full(trials, 10**9)
    at_edge = correlation.beyond_change_test(
        correlations(0.5), np.full(trials, n), ref, size, delta
    )
    assert 0.035 <= float(np.mean(at_edge < 0.05)) <= 0.065
    unmoved = correlation.beyond_change_test(
        correlations(0.3), np.full(trials, n), ref, size, delta
    )
    assert float(np.mean(unmoved < 0.05)) < 0.001
