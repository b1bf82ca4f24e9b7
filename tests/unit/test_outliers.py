"""The outlier model, calibrated on the reference: its false-outlier rate on new
reference-like data, and how many injected outliers it finds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamdrift import outliers, synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    ref = synthetic.write_reference(tmp_path_factory.mktemp("o") / "r.csv", rows=20_000)
    return build_profile(
        "m", ref, features=[*synthetic.NUMERIC, "country"], config=MonitorConfig(outlier_rate=0.001)
    )


def _scores(profile, x):
    model = profile.outliers
    return outliers.score(x, *model.arrays())


def test_false_outlier_rate_matches_the_configured_rate(profile):
    """100,000 new reference-like events: the flagged share is within the tolerance of
    the configured rate, counting both the binomial noise of the 100,000 and that of the
    10,000 held-out reference rows the threshold was taken from."""
    rng = np.random.default_rng(99)
    x, *_ = synthetic._rows(rng, 100_000)
    flagged = float((_scores(profile, x) > profile.outliers.threshold).mean())
    rate, n_new, n_calibration = 0.001, 100_000, 10_000
    tolerance = 3.5 * math.sqrt(rate * (1 - rate) * (1 / n_new + 1 / n_calibration))
    assert abs(flagged - rate) <= tolerance, (flagged, tolerance)


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
