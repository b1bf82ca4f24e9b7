"""The outlier model, calibrated on the reference: its false-outlier rate on new
reference-like data, the pieces of the calibration against scipy and simulation, and how
many injected outliers it finds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from streamdrift import outliers, synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile

RATE = 0.001
#: the acceptance band of the flagged share around the configured rate
TOLERANCE = 0.3

FEATURE_SETS = {
    "1 Gaussian": (1, ("gaussian",)),
    "1 lognormal": (1, ("lognormal",)),
    "1 Student-t": (1, ("student-t",)),
    "5 mixed": (5, synthetic.MIX_KINDS),
    "20 mixed": (20, synthetic.MIX_KINDS),
    "50 mixed": (50, synthetic.MIX_KINDS),
}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    ref = synthetic.write_reference(tmp_path_factory.mktemp("o") / "r.csv", rows=20_000)
    return build_profile(
        "m", ref, features=[*synthetic.NUMERIC, "country"], config=MonitorConfig(outlier_rate=RATE)
    )


def _scores(profile, x):
    model = profile.outliers
    return outliers.score(x, *model.arrays())


def _draw(feature_set: str, rows: int, seed: int) -> np.ndarray:
    d, kinds = FEATURE_SETS[feature_set]
    return synthetic.feature_mix(np.random.default_rng(seed), rows, d, kinds)


def _flagged_share(reference: np.ndarray, stream: np.ndarray) -> float:
    """The share of the stream's events beyond the threshold of the reference's model."""
    model = outliers.fit(reference, [f"x{j}" for j in range(reference.shape[1])], RATE)
    assert model is not None
    return float((outliers.score(stream, *model.arrays()) > model.threshold).mean())


def test_false_outlier_rate_matches_the_configured_rate(profile):
    """The profile's model (20 features, 20,000 reference rows): 200,000 new
    reference-like events are flagged at the configured rate, within ±30 %."""
    rng = np.random.default_rng(99)
    x, *_ = synthetic._rows(rng, 200_000)
    flagged = float((_scores(profile, x) > profile.outliers.threshold).mean())
    assert abs(flagged / RATE - 1) <= TOLERANCE, flagged


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_flagged_share_of_reference_like_traffic_is_the_rate(feature_set, seed):
    """A 50,000-row reference of skewed, heavy-tailed, integer and correlated features:
    200,000 fresh events from its distribution are flagged at 0.1 % ± 30 %."""
    flagged = _flagged_share(
        _draw(feature_set, 50_000, seed), _draw(feature_set, 200_000, 10_000 + seed)
    )
    assert abs(flagged / RATE - 1) <= TOLERANCE, flagged


def test_small_references_are_calibrated_on_average():
    """2,000-row references: no single one can promise ±30 % (even knowing the data
    Gaussian, the best threshold from 2,000 rows misses it for one reference in ten, and
    a heavy tail's 0.1 % lies beyond what 2,000 rows show), so: over 40 references the
    flagged share is the rate on average (geometric mean within ±20 %), and none is off
    by more than a factor of 4. The former half-split calibration averaged about twice
    the rate here: an empirical quantile of 1,000 scores is their second largest."""
    shares = []
    for feature_set in ("1 Student-t", "5 mixed", "20 mixed", "50 mixed"):
        stream = _draw(feature_set, 200_000, 10_000)
        shares += [_flagged_share(_draw(feature_set, 2000, seed), stream) for seed in range(10)]
    ratios = np.array(shares) / RATE
    assert abs(np.exp(np.log(ratios).mean()) - 1) <= 0.2, ratios
    assert ((ratios >= 0.25) & (ratios <= 4)).all(), ratios


@pytest.mark.parametrize("xi", [-0.2, 0.0, 0.25])
def test_gpd_fit_agrees_with_scipy(xi):
    """Zhang & Stephens' estimate lands where scipy's maximum likelihood does, and on
    the parameters the excesses were drawn with."""
    excesses = stats.genpareto.rvs(xi, scale=2.0, size=5000, random_state=3)
    shape, scale = outliers.gpd_fit(excesses)
    ml_shape, _, ml_scale = stats.genpareto.fit(excesses, floc=0)
    assert shape == pytest.approx(ml_shape, abs=0.01)
    assert scale == pytest.approx(ml_scale, rel=0.01)
    assert shape == pytest.approx(xi, abs=0.05)
    assert scale == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("xi", [-0.3, 0.0, 0.4])
def test_gpd_quantile_is_scipys(xi):
    u, sigma, exceed, rate = 4.0, 1.5, 0.1, 0.001
    expected = u + stats.genpareto.isf(rate / exceed, xi, scale=sigma)
    assert outliers.gpd_quantile(u, xi, sigma, exceed, rate) == pytest.approx(expected)


def test_cross_scores_are_distributed_as_new_events_scores():
    """The premise of the calibration: a reference row's cross-score is distributed as a
    new event's score under the model fit on all rows."""
    d, kinds = FEATURE_SETS["20 mixed"]
    reference = synthetic.feature_mix(np.random.default_rng(4), 20_000, d, kinds)
    stream = synthetic.feature_mix(np.random.default_rng(5), 100_000, d, kinds)
    levels = [0.5, 0.9, 0.99]
    cross = np.quantile(outliers.cross_scores(reference), levels)
    new = np.quantile(outliers.score(stream, *outliers.estimate(reference)), levels)
    # the 0.99 quantile of 20,000 heavy-tailed scores is known to about ±2 %
    assert (np.abs(cross / new - 1) <= [0.01, 0.01, 0.05]).all(), (cross, new)


def test_size_factor_is_the_measured_gap_between_fold_and_final_models():
    """50 Gaussian features, 500 rows: models fit on 400 of them score new data higher
    than the model fit on all 500, by what size_factor says (within a fifth of it)."""
    d, rows = 50, 500
    rng = np.random.default_rng(6)
    stream = rng.standard_normal((100_000, d))
    gaps = []
    for _ in range(8):
        reference = rng.standard_normal((rows, d))
        final = np.quantile(outliers.score(stream, *outliers.estimate(reference)), 0.9)
        fold = np.quantile(outliers.score(stream, *outliers.estimate(reference[:400])), 0.9)
        gaps.append(np.log(fold / final))
    predicted = -np.log(outliers.size_factor(rows, 400, d))
    assert np.mean(gaps) == pytest.approx(predicted, rel=0.2)


def test_features_of_a_few_values_get_a_threshold_on_one_of_the_scores():
    """Only a flag, a small count and a constant: the scores take a few values, and the
    threshold is the least of them that flags at most the rate of the reference, so
    fresh events are not flagged above the rate (a threshold just below a value would
    flag every event with it)."""
    rng = np.random.default_rng(8)

    def rows(n):
        return np.column_stack([rng.binomial(1, 0.05, n), rng.poisson(0.5, n), np.ones(n)])

    model = outliers.fit(rows(5000), ["flag", "count", "constant"], RATE)
    assert model is not None
    arrays = model.arrays()
    assert model.threshold in set(outliers.score(rows(5000), *arrays).tolist())
    flagged = float((outliers.score(rows(200_000), *arrays) > model.threshold).mean())
    assert flagged <= (1 + TOLERANCE) * RATE, flagged


def test_a_constant_reference_makes_a_model():
    model = outliers.fit(np.full((500, 2), 3.0), ["a", "b"], RATE)
    assert model is not None and model.threshold == 0.0


def test_too_few_rows_make_no_model():
    assert outliers.fit(np.ones((199, 3)), ["a", "b", "c"], RATE) is None


def test_injected_outliers_are_found_and_explained(profile):
    rng = np.random.default_rng(5)
    x, *_ = synthetic._rows(rng, 2000)
    shifted = rng.choice(len(synthetic.NUMERIC), size=(2000, 2))
    for i, (a, b) in enumerate(shifted):
        x[i, a] += 6 * synthetic.SDS[a]
        x[i, b] -= 6 * synthetic.SDS[b]
    found = _scores(profile, x) > profile.outliers.threshold
    recall = float(found.mean())
    assert recall >= 0.9, recall  # measured: 0.95 (two features 6 sd out of 20)
    top = outliers.contributions(x[0], profile.outliers, top=2)
    assert {t["feature"] for t in top} == {synthetic.NUMERIC[j] for j in shifted[0]}


def test_missing_values_do_not_make_an_outlier(profile):
    x = np.full((1, len(synthetic.NUMERIC)), np.nan)
    assert _scores(profile, x)[0] == 0.0
