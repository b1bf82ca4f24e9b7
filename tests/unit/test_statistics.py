"""Tests for streamdrift.statistics, checked against independent references (scipy,
closed forms, formulas re-implemented here) rather than against copied outputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from streamdrift.statistics import (
    categorical_drift,
    chi_square,
    cohen_w,
    hellinger,
    jensen_shannon,
    kl_divergence,
    ks_binned,
    ks_p_value,
    min_effect_p_value,
    numeric_drift,
    psi,
    wasserstein_binned,
)

EPS = 1e-4
NUMERIC_KEYS = {
    "cohen_w",
    "psi",
    "ks",
    "ks_p_value",
    "jensen_shannon",
    "hellinger",
    "wasserstein",
    "kl_divergence",
    "chi_square_p_value",
}
CATEGORICAL_KEYS = {
    "cohen_w",
    "psi",
    "chi_square",
    "chi_square_p_value",
    "jensen_shannon",
    "hellinger",
    "kl_divergence",
}


def _smoothed(counts: np.ndarray, eps: float = EPS) -> np.ndarray:
    """The documented smoothing, written out independently: proportions floored
    at eps, then renormalised."""
    p = np.asarray(counts, dtype=float) / np.sum(counts)
    p = np.where(p < eps, eps, p)
    return p / p.sum()


def _grid_samples(seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued samples on 0..19 from two different distributions."""
    rng = np.random.default_rng(seed)
    a = rng.binomial(19, 0.45, size=3_000)
    b = rng.poisson(8.0, size=1_700).clip(0, 19)
    return a, b


def _decile_binning(reference: np.ndarray):
    """Bins on the reference's deciles plus underflow/overflow bins (12 bins)."""
    lo, hi = float(reference.min()), float(reference.max())
    inner = np.quantile(reference, np.linspace(0.1, 0.9, 9))
    edges = np.concatenate([[lo], inner, [hi]])

    def bin_counts(x: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(inner, x, side="right") + 1
        idx[x < lo] = 0
        idx[x > hi] = 11
        return np.bincount(idx, minlength=12)

    positions = np.concatenate([[lo], (edges[:-1] + edges[1:]) / 2, [hi]])
    return bin_counts, positions


# ----------------------------------------------------------------------------- KS


def test_ks_matches_scipy_on_grid_data() -> None:
    a, b = _grid_samples()
    ref = np.bincount(a, minlength=20)
    cur = np.bincount(b, minlength=20)
    d, p = ks_binned(ref, cur)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert p == pytest.approx(stats.ks_2samp(a, b, method="asymp").pvalue, rel=1e-6)
    # symmetric in the two samples, like the two-sided test
    d2, p2 = ks_binned(cur, ref)
    assert d2 == pytest.approx(d, abs=1e-12)
    assert p2 == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_matches_scipy_on_close_grid_distributions(seed: int) -> None:
    # similar distributions: a moderate p-value, which exercises the non-trivial
    # part of the Kolmogorov distribution
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 20, size=800)
    b = rng.integers(0, 20, size=650)
    ref = np.bincount(a, minlength=20)
    cur = np.bincount(b, minlength=20)
    d, p = ks_binned(ref, cur)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-6)
    assert 1e-4 < p <= 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_ks_p_value_of_a_known_statistic_matches_scipy_and_the_full_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 20, size=900)
    b = rng.integers(0, 20, size=700)
    ref, cur = np.bincount(a, minlength=20), np.bincount(b, minlength=20)
    d, p = ks_binned(ref, cur)
    assert ks_p_value(d, 900, 700) == p
    assert ks_p_value(d, 900, 700) == pytest.approx(
        stats.ks_2samp(a, b, method="asymp").pvalue, rel=1e-6
    )
    positions = np.arange(20.0)
    full = numeric_drift(ref, cur, positions)
    lean = numeric_drift(ref, cur, positions, ks_p=False)
    assert lean == {k: v for k, v in full.items() if k != "ks_p_value"}
    assert ks_p_value(0.0, 900, 700) == 1.0
    assert math.isnan(ks_p_value(float("nan"), 900, 700))
    assert math.isnan(ks_p_value(d, 0, 700))
    assert math.isnan(ks_p_value(d, 0.4, 0.4))  # less than one observation


def test_ks_binned_is_lower_bound_on_continuous_data() -> None:
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.1, 0.3, 1.0):
        a = rng.normal(0.0, 1.0, size=5_000)
        b = rng.normal(shift, 1.2, size=1_500)
        edges = np.concatenate([[-np.inf], np.quantile(a, np.linspace(0.1, 0.9, 9)), [np.inf]])
        ref, _ = np.histogram(a, bins=edges)
        cur, _ = np.histogram(b, bins=edges)
        d, p = ks_binned(ref, cur)
        exact = stats.ks_2samp(a, b, method="asymp")
        assert d <= exact.statistic + 1e-12
        assert p >= exact.pvalue - 1e-12  # conservative


def test_ks_identical_gives_zero_and_p_one() -> None:
    d, p = ks_binned([5, 0, 7, 3], [10, 0, 14, 6])
    assert d == pytest.approx(0.0, abs=1e-15)
    assert p == pytest.approx(1.0)


# ----------------------------------------------------------------- Jensen–Shannon


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([10, 20, 30, 40], [40, 30, 20, 10]),
        ([5, 0, 3, 0, 2], [0, 4, 4, 1, 1]),
        ([1, 1], [1, 3]),
        ([0.5, 2.25, 7.0], [3.0, 0.0, 1.5]),  # fractional (e.g. decayed) counts
    ],
)
def test_jensen_shannon_matches_scipy(ref: list[float], cur: list[float]) -> None:
    expected = jensenshannon(np.asarray(ref, float), np.asarray(cur, float), base=2)
    assert jensen_shannon(ref, cur) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_jensen_shannon_random_vectors_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        ref = rng.integers(0, 50, size=30)
        cur = rng.integers(0, 50, size=30)
        expected = jensenshannon(ref.astype(float), cur.astype(float), base=2)
        assert jensen_shannon(ref, cur) == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- KL


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([10, 20, 30, 40], [40, 30, 20, 10]),
        ([5, 0, 3, 0, 2], [0, 4, 4, 1, 1]),  # empty bins on both sides
        ([100, 0], [50, 50]),
    ],
)
def test_kl_matches_scipy_entropy(ref: list[int], cur: list[int]) -> None:
    p_s = _smoothed(np.asarray(ref))
    q_s = _smoothed(np.asarray(cur))
    expected = stats.entropy(q_s, p_s)  # KL(current || reference), nats
    got = kl_divergence(ref, cur)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)


def test_kl_custom_eps() -> None:
    ref, cur = np.array([100, 0, 0]), np.array([10, 5, 85])
    expected = stats.entropy(_smoothed(cur, 1e-3), _smoothed(ref, 1e-3))
    assert kl_divergence(ref, cur, eps=1e-3) == pytest.approx(expected, rel=1e-9)


def test_kl_without_empty_bins_is_unsmoothed() -> None:
    ref, cur = [1, 1], [1, 3]
    # closed form: 1/4 ln(1/2) + 3/4 ln(3/2)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_divergence(ref, cur) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- Hellinger


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([10, 20, 30, 40], [40, 30, 20, 10]),
        ([5, 0, 3, 0, 2], [0, 4, 4, 1, 1]),
        ([0.5, 2.25, 7.0], [3.0, 0.0, 1.5]),
    ],
)
def test_hellinger_matches_norm_formula(ref: list[float], cur: list[float]) -> None:
    p = np.asarray(ref, float) / np.sum(ref)
    q = np.asarray(cur, float) / np.sum(cur)
    expected = np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / np.sqrt(2)
    assert hellinger(ref, cur) == pytest.approx(expected, rel=1e-9)


# -------------------------------------------------------------------- Wasserstein


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    for _ in range(10):
        positions = np.sort(rng.normal(0, 3, size=15))
        ref = rng.integers(0, 40, size=15)
        cur = rng.integers(0, 40, size=15)
        ref[rng.integers(0, 15)] = 0  # some empty bins
        expected = stats.wasserstein_distance(positions, positions, u_weights=ref, v_weights=cur)
        assert wasserstein_binned(ref, cur, positions) == pytest.approx(expected, rel=1e-9)
        assert wasserstein_binned(ref, cur, positions, scale=2.5) == pytest.approx(
            expected / 2.5, rel=1e-9
        )


def test_wasserstein_point_masses() -> None:
    # all mass at 1.0 vs all mass at 4.0: distance 3
    positions = [0.0, 1.0, 2.5, 4.0]
    assert wasserstein_binned([0, 7, 0, 0], [0, 0, 0, 3], positions) == pytest.approx(3.0)


@pytest.mark.parametrize("scale", [None, 0.0, -1.0, float("nan")])
def test_wasserstein_scale_ignored_unless_positive(scale: float | None) -> None:
    positions = [0.0, 1.0, 2.0]
    expected = stats.wasserstein_distance(
        positions, positions, u_weights=[1, 2, 3], v_weights=[3, 2, 1]
    )
    assert wasserstein_binned([1, 2, 3], [3, 2, 1], positions, scale=scale) == pytest.approx(
        expected
    )


def test_wasserstein_rejects_bad_positions() -> None:
    with pytest.raises(ValueError):
        wasserstein_binned([1, 2, 3], [3, 2, 1], [0.0, 1.0])
    with pytest.raises(ValueError):
        wasserstein_binned([1, 2, 3], [3, 2, 1], [0.0, 2.0, 1.0])
    with pytest.raises(ValueError):
        wasserstein_binned([1, 2, 3], [3, 2, 1], [-np.inf, 1.0, 2.0])


# --------------------------------------------------------------------- chi-square


def test_chi_square_matches_scipy() -> None:
    ref = np.array([120, 80, 45, 30, 25])
    cur = np.array([100, 95, 30, 50, 10])
    res = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    stat, p = chi_square(ref, cur)
    assert stat == pytest.approx(res.statistic, rel=1e-9)
    assert p == pytest.approx(res.pvalue, rel=1e-9)


def test_chi_square_drops_categories_empty_in_both() -> None:
    ref = np.array([30, 0, 12, 0, 8, 5])
    cur = np.array([25, 0, 0, 0, 14, 9])  # index 2 empty only in current: kept
    both_nonzero = (ref + cur) > 0
    table = np.vstack([ref[both_nonzero], cur[both_nonzero]])
    res = stats.chi2_contingency(table, correction=False)
    stat, p = chi_square(ref, cur)
    assert stat == pytest.approx(res.statistic, rel=1e-9)
    assert p == pytest.approx(res.pvalue, rel=1e-9)


def test_chi_square_single_category() -> None:
    assert chi_square([0, 10, 0], [0, 4, 0]) == (0.0, 1.0)


# ---------------------------------------------------------------------------- PSI


def test_psi_two_bin_closed_form() -> None:
    # p = (1/2, 1/2), q = (1/4, 3/4):
    # PSI = (1/4 - 1/2) ln(1/2) + (3/4 - 1/2) ln(3/2) = (1/4) ln 3
    assert psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3.0), rel=1e-12)


def test_psi_published_style_example() -> None:
    # A scorecard-style table: expected (development) vs actual (recent) percentages
    # per score band, PSI computed with the textbook formula written out here.
    expected_pct = np.array([0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10])
    actual_pct = np.array([0.05, 0.07, 0.08, 0.10, 0.12, 0.13, 0.11, 0.12, 0.12, 0.10])
    expected_psi = np.sum((actual_pct - expected_pct) * np.log(actual_pct / expected_pct))
    ref_counts = expected_pct * 20_000
    cur_counts = actual_pct * 5_000
    assert psi(ref_counts, cur_counts) == pytest.approx(expected_psi, rel=1e-9)
    assert 0.05 < expected_psi < 0.1  # sanity on the example itself


def test_psi_with_empty_bins_uses_documented_smoothing() -> None:
    ref = np.array([40, 30, 0, 30])
    cur = np.array([0, 30, 40, 30])
    p_s, q_s = _smoothed(ref), _smoothed(cur)
    expected = np.sum((q_s - p_s) * np.log(q_s / p_s))
    got = psi(ref, cur)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)
    # PSI is the symmetrised KL: KL(q||p) + KL(p||q)
    assert got == pytest.approx(stats.entropy(q_s, p_s) + stats.entropy(p_s, q_s), rel=1e-9)


def test_psi_properties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.integers(0, 100, size=12)
        y = rng.integers(0, 100, size=12)
        assert psi(x, x) == pytest.approx(0.0, abs=1e-15)
        assert psi(x, 3 * x) == pytest.approx(0.0, abs=1e-12)  # scale-free
        assert psi(x, y) == pytest.approx(psi(y, x), rel=1e-12)
        assert psi(x, y) >= 0.0
    base = np.array([10, 20, 40, 20, 10])
    small = np.array([8, 18, 40, 22, 12])
    large = np.array([2, 8, 30, 35, 25])
    assert 0.0 < psi(base, small) < psi(base, large)


# ---------------------------------------------------------------------- edge cases


ALL_SCALAR = [psi, kl_divergence, jensen_shannon, hellinger]


@pytest.mark.parametrize("fn", ALL_SCALAR)
@pytest.mark.parametrize(
    ("ref", "cur"), [([], []), ([0, 0, 0], [1, 2, 3]), ([1, 2, 3], [0, 0, 0]), ([0, 0], [0, 0])]
)
def test_zero_totals_give_nan(fn, ref: list[int], cur: list[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 either
        assert math.isnan(fn(ref, cur))


@pytest.mark.parametrize(("ref", "cur"), [([], []), ([0, 0, 0], [1, 2, 3]), ([1, 2, 3], [0, 0, 0])])
def test_zero_totals_tests_and_bundles_give_nan(ref: list[int], cur: list[int]) -> None:
    positions = np.arange(len(ref), dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(math.isnan(v) for v in ks_binned(ref, cur))
        assert all(math.isnan(v) for v in chi_square(ref, cur))
        assert math.isnan(wasserstein_binned(ref, cur, positions))
        num = numeric_drift(ref, cur, positions)
        cat = categorical_drift(ref, cur)
    assert set(num) == NUMERIC_KEYS
    assert set(cat) == CATEGORICAL_KEYS
    assert all(math.isnan(v) for v in num.values())
    assert all(math.isnan(v) for v in cat.values())


def test_identical_distributions() -> None:
    ref = [12, 30, 0, 45, 13]
    cur = [24, 60, 0, 90, 26]
    positions = [-2.0, -1.0, 0.0, 1.0, 2.0]
    num = numeric_drift(ref, cur, positions, scale=1.3)
    for key in ("psi", "ks", "jensen_shannon", "hellinger", "wasserstein", "kl_divergence"):
        assert num[key] == pytest.approx(0.0, abs=1e-7), key
    assert num["ks_p_value"] == pytest.approx(1.0)
    assert num["chi_square_p_value"] == pytest.approx(1.0)
    cat = categorical_drift(ref, cur)
    assert cat["chi_square"] == pytest.approx(0.0, abs=1e-12)
    assert cat["chi_square_p_value"] == pytest.approx(1.0)


def test_disjoint_supports() -> None:
    ref = [10, 5, 0, 0]
    cur = [0, 0, 7, 3]
    assert jensen_shannon(ref, cur) == pytest.approx(1.0, abs=1e-12)
    assert hellinger(ref, cur) == pytest.approx(1.0, abs=1e-12)
    assert math.isfinite(psi(ref, cur)) and psi(ref, cur) > 5
    assert math.isfinite(kl_divergence(ref, cur)) and kl_divergence(ref, cur) > 5
    d, p = ks_binned(ref, cur)
    assert d == pytest.approx(1.0)
    assert p < 1e-3


def test_no_inf_or_nan_with_empty_bins() -> None:
    ref = [0, 0, 50, 50, 0]
    cur = [30, 0, 0, 0, 70]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        num = numeric_drift(ref, cur, [0.0, 1.0, 2.0, 3.0, 4.0])
        cat = categorical_drift(ref, cur)
    assert all(math.isfinite(v) for v in num.values())
    assert all(math.isfinite(v) for v in cat.values())


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError):
        psi([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        hellinger([1, -2, 3], [1, 2, 3])
    with pytest.raises(ValueError):
        jensen_shannon([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError):
        chi_square([[1, 2], [3, 4]], [[1, 2], [3, 4]])


def test_ks_fractional_weights_below_one_observation() -> None:
    d, p = ks_binned([0.2, 0.1], [0.1, 0.2])
    assert d == pytest.approx(1 / 3)
    assert math.isnan(p)


# ------------------------------------------------------------------------ Cohen's w


def _w_reference(ref: np.ndarray, cur: np.ndarray) -> float:
    """Cohen's w from its definition, in plain numpy, averaged proportions as the
    expected ones, less (K - 1)(1/n_r + 1/n_c)."""
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2
    k = np.count_nonzero(m)
    raw = np.sum(np.divide((q - p) ** 2, m, out=np.zeros_like(m), where=m > 0))
    return float(np.sqrt(max(0.0, raw - (k - 1) * (1 / ref.sum() + 1 / cur.sum()))))


@pytest.mark.parametrize("seed", range(20))
def test_cohen_w_with_equal_totals_is_the_chi_square_contingency_effect(seed: int) -> None:
    # With equal totals the averaged proportions are the pooled ones, so
    # w^2 = (X^2 - dof) / (n_r n_c / (n_r + n_c)) for scipy's X^2 of the 2xK table.
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 25))
    n = int(rng.integers(50, 5_000))
    ref = rng.multinomial(n, rng.dirichlet(np.ones(k))).astype(float)
    cur = rng.multinomial(n, rng.dirichlet(np.ones(k))).astype(float)
    keep = (ref + cur) > 0
    x2, _, dof, _ = chi2_contingency(np.vstack([ref[keep], cur[keep]]), correction=False)
    expected = np.sqrt(max(0.0, (x2 - dof) / (n * n / (2 * n))))
    assert cohen_w(ref, cur) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_cohen_w_matches_its_definition_for_unequal_totals(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 30))
    ref = rng.multinomial(20_000, rng.dirichlet(np.ones(k))).astype(float)
    cur = rng.multinomial(int(rng.integers(1, 10_000)), rng.dirichlet(np.ones(k))).astype(float)
    assert cohen_w(ref, cur) == pytest.approx(_w_reference(ref, cur), rel=1e-9, abs=1e-12)


def test_cohen_w_of_the_issue_category_shift() -> None:
    # .30/.25/.20/.15/.10 -> .20 each: sum (q-p)^2/m = .01/.25 + .0025/.225 + 0
    # + .0025/.175 + .01/.15, the population value with no sampling noise
    p0 = np.array([0.30, 0.25, 0.20, 0.15, 0.10])
    population = math.sqrt(0.01 / 0.25 + 0.0025 / 0.225 + 0.0025 / 0.175 + 0.01 / 0.15)
    assert cohen_w(p0 * 1e12, np.full(5, 0.2) * 1e12) == pytest.approx(population, rel=1e-9)
    assert 0.36 < population < 0.37
    # with the noise term of a 20,000-row reference and a 10,000-event window
    w = cohen_w(p0 * 20_000, np.full(5, 2_000.0))
    assert w == pytest.approx(math.sqrt(population**2 - 4 * (1 / 20_000 + 1 / 10_000)))


def test_cohen_w_edges() -> None:
    assert cohen_w([5, 5], [5, 5]) == 0.0  # the noise term is clipped at 0
    assert cohen_w([10, 0], [0, 10]) == pytest.approx(math.sqrt(4 - 0.2))  # disjoint
    assert cohen_w([1e12, 0], [0, 1e12]) == pytest.approx(2.0)  # the upper bound
    assert cohen_w([0, 7, 0], [0, 3, 0]) == 0.0  # one category: nothing to compare
    # a category only the window has is finite: its m is half the window's share
    assert math.isfinite(cohen_w([100, 100, 0], [90, 90, 20]))
    assert math.isnan(cohen_w([0, 0], [1, 2]))


def test_cohen_w_is_near_zero_without_drift_at_every_size() -> None:
    # the plug-in value grows like sqrt((K-1)/n) without drift; less its noise it stays
    # near 0 for every window size and number of categories
    rng = np.random.default_rng(3)
    for k in (3, 20):
        p0 = np.full(k, 1 / k)
        ref = rng.multinomial(20_000, p0)
        for n in (200, 2_000, 10_000):
            cur = [rng.multinomial(n, p0) for _ in range(200)]
            ws = [cohen_w(ref, c) for c in cur]
            assert np.mean(ws) < 0.1 and np.quantile(ws, 0.9) < 0.25
            # the plug-in value of 20 categories in 200 events would read as a medium effect
            if (k, n) == (20, 200):
                p = ref / ref.sum()
                raw = [np.sqrt(np.sum((c / n - p) ** 2 / ((c / n + p) / 2))) for c in cur]
                assert np.mean(raw) > 0.25


# ---------------------------------------------------------------- bundles / keys


def test_bundles_agree_with_individual_functions() -> None:
    ref = np.array([50, 120, 200, 120, 50, 0])
    cur = np.array([20, 80, 150, 160, 70, 20])
    positions = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    num = numeric_drift(ref, cur, positions, scale=np.float64(1.5))
    assert set(num) == NUMERIC_KEYS
    d, p = ks_binned(ref, cur)
    assert num["psi"] == psi(ref, cur)
    assert num["ks"] == d and num["ks_p_value"] == p
    assert num["jensen_shannon"] == jensen_shannon(ref, cur)
    assert num["hellinger"] == hellinger(ref, cur)
    assert num["wasserstein"] == wasserstein_binned(ref, cur, positions, scale=1.5)
    assert num["kl_divergence"] == kl_divergence(ref, cur)
    assert num["chi_square_p_value"] == chi_square(ref, cur)[1]
    assert num["cohen_w"] == cohen_w(ref, cur)
    assert all(type(v) is float for v in num.values())

    cat = categorical_drift(ref, cur)
    assert set(cat) == CATEGORICAL_KEYS
    assert (cat["chi_square"], cat["chi_square_p_value"]) == chi_square(ref, cur)
    assert cat["psi"] == psi(ref, cur)
    assert cat["jensen_shannon"] == jensen_shannon(ref, cur)
    assert cat["hellinger"] == hellinger(ref, cur)
    assert cat["kl_divergence"] == kl_divergence(ref, cur)
    assert cat["cohen_w"] == cohen_w(ref, cur)
    assert all(type(v) is float for v in cat.values())


# -------------------------------------------------------------------- behavioural


def test_behaviour_no_drift_vs_one_sd_shift() -> None:
    rng = np.random.default_rng(2024)
    reference = rng.normal(0.0, 1.0, size=50_000)
    bin_counts, positions = _decile_binning(reference)
    ref = bin_counts(reference)
    assert ref.sum() == reference.size
    scale = float(reference.std())

    same = numeric_drift(ref, bin_counts(rng.normal(0.0, 1.0, size=2_000)), positions, scale)
    assert same["psi"] < 0.05
    assert same["jensen_shannon"] < 0.05
    assert same["ks_p_value"] > 1e-3

    shifted = numeric_drift(ref, bin_counts(rng.normal(1.0, 1.0, size=2_000)), positions, scale)
    assert shifted["psi"] > 0.5
    assert shifted["ks_p_value"] < 1e-6
    assert shifted["jensen_shannon"] > same["jensen_shannon"]
    assert shifted["hellinger"] > same["hellinger"]
    # the normed Wasserstein distance of a 1-sd shift is 1 on raw data; coarse decile
    # bins with midpoint positions distort it, so only its order of magnitude is checked
    assert 0.5 < shifted["wasserstein"] < 2.0
    assert same["wasserstein"] < 0.15


# ---- the minimum-effect test ------------------------------------------------------------


def _table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(2, 25))
    p0 = rng.dirichlet(np.ones(k))
    q = 0.8 * p0 + 0.2 * rng.dirichlet(np.ones(k))
    ref = rng.multinomial(int(rng.integers(200, 20_000)), p0).astype(float)
    cur = rng.multinomial(int(rng.integers(200, 10_000)), q).astype(float)
    return ref, cur


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("w_min", [0.05, 0.15, 0.3])
def test_min_effect_p_value_is_scipys_noncentral_chi_square(seed: int, w_min: float) -> None:
    # X^2 and its degrees of freedom from scipy's chi2_contingency, non-centrality
    # n_eff * w_min^2, survival function from scipy's ncx2
    rng = np.random.default_rng(seed)
    ref, cur = _table(rng)
    keep = (ref + cur) > 0
    x2, p, dof, _ = chi2_contingency(np.vstack([ref[keep], cur[keep]]), correction=False)
    n_eff = ref.sum() * cur.sum() / (ref.sum() + cur.sum())
    expected = stats.ncx2.sf(x2, dof, n_eff * w_min**2)
    got = min_effect_p_value(ref, cur, w_min)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert got >= p  # never weaker evidence than the chi-square test asks for


@pytest.mark.parametrize("seed", range(10))
def test_min_effect_p_value_at_zero_is_the_chi_square_p_value(seed: int) -> None:
    ref, cur = _table(np.random.default_rng(50 + seed))
    keep = (ref + cur) > 0
    _, p, _, _ = chi2_contingency(np.vstack([ref[keep], cur[keep]]), correction=False)
    assert min_effect_p_value(ref, cur, 0.0) == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert min_effect_p_value(ref, cur, 0.0) == chi_square(ref, cur)[1]


def test_min_effect_p_value_grows_with_the_effect_ruled_out() -> None:
    ref, cur = _table(np.random.default_rng(7))
    ps = [min_effect_p_value(ref, cur, w) for w in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]
    assert ps == sorted(ps) and ps[-1] > ps[0]


def test_min_effect_test_holds_its_level_at_the_effect_it_rules_out() -> None:
    """Two populations whose w (on the pooled shares, equal totals) is exactly 0.15: at
    level 0.05 the test rejects "w <= 0.15" about 5 % of the time, while the chi-square
    test, whose null (no change) is false, rejects nearly always."""
    p0 = np.array([0.30, 0.25, 0.20, 0.15, 0.10])
    target = np.full(5, 0.2)
    n = 2_000

    def pooled_w(t: float) -> float:
        q = (1 - t) * p0 + t * target
        m = (p0 + q) / 2
        return float(np.sqrt(np.sum((q - p0) ** 2 / m)))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pooled_w(mid) < 0.15 else (lo, mid)
    q = (1 - hi) * p0 + hi * target
    rng = np.random.default_rng(11)
    trials = 2_000
    rejected = chi_rejected = 0
    for _ in range(trials):
        ref, cur = rng.multinomial(n, p0), rng.multinomial(n, q)
        rejected += min_effect_p_value(ref, cur, 0.15) < 0.05
        chi_rejected += chi_square(ref, cur)[1] < 0.05
    assert 0.03 < rejected / trials < 0.075
    assert chi_rejected / trials > 0.95


def test_min_effect_p_value_edges() -> None:
    assert math.isnan(min_effect_p_value([0, 0], [1, 2], 0.1))
    assert math.isnan(min_effect_p_value([1, 2], [0, 0], 0.1))
    assert min_effect_p_value([0, 7, 0], [0, 3, 0], 0.1) == 1.0  # one category
    assert min_effect_p_value([50, 50], [50, 50], 0.1) == pytest.approx(
        stats.ncx2.sf(0.0, 1, 50 * 0.01)
    )
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="w_min"):
            min_effect_p_value([1, 2], [2, 1], bad)


def test_bundles_add_the_min_effect_p_value_only_when_asked() -> None:
    ref, cur = [100, 200, 300, 50], [60, 50, 60, 30]
    positions = [0.0, 1.0, 2.0, 3.0]
    assert "min_effect_p_value" not in numeric_drift(ref, cur, positions)
    assert "min_effect_p_value" not in categorical_drift(ref, cur)
    num = numeric_drift(ref, cur, positions, min_effect=0.15)
    cat = categorical_drift(ref, cur, min_effect=0.15)
    assert set(num) == NUMERIC_KEYS | {"min_effect_p_value"}
    assert set(cat) == CATEGORICAL_KEYS | {"min_effect_p_value"}
    expected = min_effect_p_value(ref, cur, 0.15)
    assert num["min_effect_p_value"] == cat["min_effect_p_value"] == expected
    assert math.isnan(categorical_drift([0, 0], [1, 2], min_effect=0.15)["min_effect_p_value"])


def test_the_p_values_core_functions_give_scipys_public_values_bit_for_bit():
    """The KS and minimum-effect p-values call scipy's functions behind `kstwo.sf` and
    `ncx2.sf` directly (the evaluator calls them per feature and window); over a grid
    they must give the public functions' values exactly."""
    from streamdrift import statistics as st

    assert st._kstwo_sf.__name__ == "ks" and st._ncx2_sf.__name__ == "nc"  # taken here
    rng = np.random.default_rng(5)
    for n in (1.0, 2.0, 7.0, 40.0, 333.0, 5_000.0, 120_000.0):
        for d in (*rng.uniform(0, 1, 12), 1e-6, 0.5, 1.0):
            assert st._kstwo_sf(float(d), n) == stats.kstwo.sf(d, n), (d, n)
    for df in (1, 2, 5, 19, 99, 300):
        for lam in (1e-4, 0.3, 4.0, 80.0, 2_000.0):
            for x in (*rng.uniform(0, 3 * (df + lam), 8), 0.0, 1e-6):
                assert st._ncx2_sf(float(x), df, lam) == stats.ncx2.sf(x, df, lam), (x, df, lam)


def test_a_huge_window_matching_the_reference_has_a_min_effect_p_of_one():
    """scipy's ncx2.sf raises OverflowError for a statistic near 0 with a large λ (here
    2·10^8 events, one count apart): the p-value is 1 there, not an error."""
    with pytest.raises(OverflowError):
        stats.ncx2.sf(1e-9, 1, 1e6)  # what the p-value stands on, as scipy has it
    assert min_effect_p_value([100_000_000, 100_000_001], [100_000_000, 100_000_000], 0.1) == 1.0
