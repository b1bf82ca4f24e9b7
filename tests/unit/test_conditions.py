"""What one window shows, as conditions: present, checked and absent, or unchecked; the
volume check against scipy's Poisson tails; a performance alert's likely cause."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson

from streamdrift.alerts import condition_key, likely_cause
from streamdrift.conditions import History, window_conditions
from streamdrift.monitors import FeatureDrift, QualityFinding, volume_check
from streamdrift.sketch import sketch_events
from tests.unit.test_monitors import WINDOW, _window


def _sketch(profile, events):
    (window,) = sketch_events(events, profile).values()
    return window


def test_a_drifted_window_shows_its_conditions_and_a_clean_one_checks_them(profile):
    rng = np.random.default_rng(4)
    drifted = _sketch(profile, _window(rng, 2000, 0, shift={"f07": 1.0}))
    found = window_conditions(profile, drifted, History(), 1.0, closed=True, followed=True)
    keys = {condition_key(a) for a, _ in found.present}
    assert "data_drift:f07" in keys
    magnitude = dict((condition_key(a), m) for a, m in found.present)["data_drift:f07"]
    assert magnitude > 1  # the statistic over its threshold
    clean = _sketch(profile, _window(rng, 2000, WINDOW))
    found = window_conditions(profile, clean, History(), 1.0, closed=True, followed=True)
    assert found.present == []
    assert found.covers("data_drift:f07") and found.covers("data_quality:out_of_range:f03")
    assert found.covers("outlier:share")
    assert not found.covers("volume:events")  # no history: traffic not judged
    assert not found.covers("performance_degradation:roc_auc")  # no labels
    small = _sketch(profile, _window(rng, 100, 2 * WINDOW))
    found = window_conditions(profile, small, History(), 1.0, closed=True, followed=True)
    assert not found.covers("data_drift:f07") and not found.covers("data_quality:x:y")


def test_volume_against_poisson_tails(profile):
    rolling = [1000, 980, 1020, 1010, 990]
    collapse = volume_check(profile, 30, rolling, [])
    assert collapse.abnormal and collapse.baseline == "rolling"
    assert collapse.expected == 1000 and collapse.ratio == pytest.approx(0.03)
    assert collapse.p_value == pytest.approx(poisson.cdf(30, 1000))
    surge = volume_check(profile, 5000, rolling, [])
    assert surge.abnormal and surge.p_value == pytest.approx(poisson.sf(4999, 1000))
    # a real dip, but not below a quarter: traffic varies; not an alert
    assert not volume_check(profile, 300, rolling, []).abnormal
    # a quarter of a tiny expectation is not significant: 0 of 2 is chance
    assert not volume_check(profile, 0, [2, 2, 2], []).abnormal
    assert volume_check(profile, 30, rolling[:2], []) is None  # too little history


def test_a_seasonal_volume_baseline_wins_when_configured(profile):
    cfg = profile.config.model_copy(
        update={"volume": profile.config.volume.model_copy(update={"season_seconds": 86400})}
    )
    seasonal = profile.model_copy(update={"config": cfg})
    # night traffic is a fifth of the day's: against the same hour yesterday, normal
    night = volume_check(seasonal, 200, [1000] * 10, [210, 190])
    assert night.baseline == "seasonal" and not night.abnormal
    assert volume_check(profile, 200, [1000] * 10, [210, 190]).abnormal


def _drift(feature: str, drifted: bool, n: int = 2000) -> FeatureDrift:
    return FeatureDrift(
        feature,
        "numeric",
        n,
        0,
        {},
        "psi",
        0.5 if drifted else 0.01,
        0.2,
        1e-9 if drifted else 0.5,
        drifted,
    )


def _quality(kind: str, feature: str) -> QualityFinding:
    return QualityFinding(kind, feature, 50, 0.05, 0.01, f"{kind} detail")


def test_likely_cause_checks_outputs_and_inputs_before_the_concept(profile):
    features = {f: _drift(f, False) for f in profile.features}
    assert likely_cause(profile, features, [], {})[0] == "concept_drift"
    # impossible predictions (scores outside [0, 1]) are the model's outputs' problem
    cause, evidence = likely_cause(profile, features, [_quality("invalid_output", "score")], {})
    assert cause == "output_problem" and "invalid_output in 'score'" in evidence[0]
    cause, _ = likely_cause(profile, features, [_quality("missing_values", "f02")], {})
    assert cause == "data_quality"
    shifted = {**features, "f07": _drift("f07", True)}
    cause, evidence = likely_cause(profile, shifted, [], {})
    assert cause == "data_drift" and evidence[0].startswith("'f07' drifted")
    # the predictions moved with no input drift: the model changed
    cause, _ = likely_cause(profile, features, [], {"__prediction__": _drift("score", True)})
    assert cause == "output_problem"
    # inputs too few to check: no verdict on the concept
    few = {f: _drift(f, False, n=50) for f in profile.features}
    assert likely_cause(profile, few, [], {})[0] == "unknown"


def test_outlier_share_against_a_small_reference_needs_more_evidence(profile):
    """The same window share, 0.3 % against a calibrated 0.1 %: significant against a
    50,000-row reference, not against a 2,000-row one (two reference rows lay beyond
    the threshold: its true rate is barely known). Checked against scipy's binomial
    test on the pooled outliers."""
    from scipy.stats import binomtest

    from streamdrift.monitors import outlier_share
    from streamdrift.sketch import WindowSketch

    window = WindowSketch(start=0, count=10_000, outliers=30)
    large = profile.model_copy(update={"rows": 50_000})
    small = profile.model_copy(update={"rows": 2_000})
    found = outlier_share(large, window)
    assert found is not None and found["share"] == 0.003
    want = binomtest(30, 80, 10_000 / 60_000, alternative="greater").pvalue
    assert found["p_value"] == pytest.approx(want)
    assert outlier_share(small, window) is None
    # a real rise is still caught from the small reference: 2 % of the window
    assert outlier_share(small, WindowSketch(start=0, count=10_000, outliers=200)) is not None


def test_a_drop_whose_inputs_cannot_be_checked_yet_waits_for_the_window(profile):
    """A window still filling with too few events to check its inputs: its performance
    drop is not raised as "unknown" cause yet; once the window is complete it is."""
    from streamdrift.performance import PerformanceSketch

    rng = np.random.default_rng(9)
    window = _sketch(profile, _window(rng, 120, 3 * WINDOW))  # < min_samples per feature
    n = 600  # labelled pairs of a classifier that is now wrong 60 % of the time
    actual = rng.integers(0, 2, n)
    wrong = rng.random(n) < 0.6
    predicted = np.where(wrong, 1 - actual, actual)
    score = np.clip(np.where(predicted == 1, 0.8, 0.2) + rng.normal(0, 0.05, n), 0, 1)
    window.performance = PerformanceSketch.from_pairs(
        "binary",
        [str(a) for a in actual],
        [str(p) for p in predicted],
        score,
        positive=profile.positive_class,
        score_edges=profile.score_edges,
    )

    def drop_alerts(closed: bool) -> list:
        found = window_conditions(profile, window, History(), 1.0, closed=closed, followed=True)
        return [a for a, _ in found.present if a.type == "performance_degradation"]

    assert drop_alerts(closed=False) == []
    (alert,) = drop_alerts(closed=True)
    assert alert.context["cause"] == "unknown"


def test_single_outlying_events_are_recorded_always_and_alerts_only_when_asked(profile):
    """Two events planted far out in one feature each: the window records them (with
    the features that make them extreme) whatever `outlier_alerts` says; only with
    "events" does the window also raise one alert per recorded event, outside any
    episode, carrying that event's features. The episodes' conditions are the same."""
    from streamdrift import synthetic

    rng = np.random.default_rng(12)
    events = _window(rng, 2000, 0)
    planted = {"0": "f07", "1": "f12"}  # the first events: recorded before any other
    for pid, feature in planted.items():
        j = synthetic.NUMERIC.index(feature)
        events.features[int(pid)][feature] = float(synthetic.MEANS[j] + 15 * synthetic.SDS[j])
    window = _sketch(profile, events)
    recorded = {ex["prediction_id"]: ex for ex in window.outlier_examples}
    assert len(recorded) <= profile.config.outlier_alerts_per_window
    assert window.outliers >= len(recorded)
    for pid, feature in planted.items():
        top = recorded[pid]["features"][0]
        assert top["feature"] == feature and top["z"] > 10

    assert profile.config.outlier_alerts == "share"  # the default
    shared = window_conditions(profile, window, History(), 1.0, closed=True, followed=True)
    assert shared.events == []

    cfg = profile.config.model_copy(update={"outlier_alerts": "events"})
    per_event = profile.model_copy(update={"config": cfg})
    found = window_conditions(per_event, window, History(), 1.0, closed=True, followed=True)
    alerts = {a.context["prediction_id"]: a for a in found.events}
    assert list(alerts) == [ex["prediction_id"] for ex in window.outlier_examples]
    for pid, alert in alerts.items():
        assert alert.type == "outlier" and alert.statistic == "robust_mahalanobis"
        assert alert.severity == "info" and alert.sample_size == 1
        assert alert.episode_id == alert.alert_id  # its own episode: nothing resolves it
        assert alert.context["features"] == recorded[pid]["features"]
        assert alert.feature == recorded[pid]["features"][0]["feature"]
        assert alert.value == recorded[pid]["score"] > profile.outliers.threshold
        assert f"prediction {pid} is an outlier" in alert.message
    for pid, feature in planted.items():
        assert alerts[pid].feature == feature and f"{feature} (z=+" in alerts[pid].message
    assert len({a.alert_id for a in found.events}) == len(found.events)
    # the episodes see the same conditions either way
    assert [(condition_key(a), m) for a, m in found.present] == [
        (condition_key(a), m) for a, m in shared.present
    ]
    assert found.checked == shared.checked
    # a slice raises no single-event alerts of its own (the model's already name them)
    sliced = window_conditions(
        per_event, window, History(), 1.0, closed=True, followed=True, sliced=True
    )
    assert sliced.events == []
