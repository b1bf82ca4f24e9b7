"""Model-health gauges on plain objects: a real reference profile, windows sketched from
simulated events, a registry of their own. What the gauges must show comes from the
monitors (for drift) or from numpy and scikit-learn on the simulated arrays."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import roc_auc_score

from streamdrift.model_health import (
    ModelHealth,
    latest_complete,
    top_features,
)
from streamdrift.monitors import output_drift, window_drift, window_performance
from streamdrift.performance import PerformanceSketch
from streamdrift.profile import LABEL
from streamdrift.sketch import CategoricalSketch, WindowSketch, sketch_events
from streamdrift.telemetry import WorkerMetrics
from tests.unit.test_monitors import _window as simulated_events

WINDOW = 3600
FEATURES = 22


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _window(profile, start: int, n: int, seed: int, shift=(), spread=(), labelled: int = 0):
    """A window of `n` simulated events (`test_monitors._window`); `shift` moves features
    by one sd, `spread` doubles theirs; the first `labelled` events get a label
    (Bernoulli(score))."""
    rng = np.random.default_rng(seed)
    events = simulated_events(
        rng, n, start, shift=dict.fromkeys(shift, 1.0), spread=dict.fromkeys(spread, 2.0)
    )
    (window,) = sketch_events(events, profile).values()
    if labelled:
        s = np.asarray(events.predictions[:labelled], dtype=float)
        y = (rng.random(labelled) < s).astype(int)
        classes = np.where(s >= 0.5, "1", "0").tolist()
        window.performance = PerformanceSketch.from_pairs(
            "binary", y.tolist(), classes, s, "1", score_edges=profile.score_edges
        )
        # the join counts each label into the window's label column, as a category
        window.categorical[LABEL] = CategoricalSketch(Counter(str(v) for v in y.tolist()))
    return window, (y, s) if labelled else None


def _observe(health, profile, window, episodes=0):
    health.observe(
        profile,
        window,
        window_drift(profile, window),
        output_drift(profile, window),
        window_performance(profile, window),
        episodes,
    )


def _series(registry, name: str, model: str | None = None) -> dict[tuple, float]:
    """Label values (model first) -> value of every series of gauge `name`."""
    out = {}
    for family in registry.collect():
        if family.name == name:
            for s in family.samples:
                if model is None or s.labels["model"] == model:
                    out[tuple(s.labels.values())] = s.value
    return out


def _features(registry, model: str = "fraud") -> dict[str, float]:
    rows = _series(registry, "streamdrift_model_feature_drift", model)
    return {labels[1]: v for labels, v in rows.items()}


# ---- the latest complete window ------------------------------------------------------------


def test_latest_complete_window():
    assert latest_complete([], 60, 1000.0) is None
    # the current window alone is not complete; once its end passes it is
    assert latest_complete([960], 60, 1000.0) is None
    assert latest_complete([960], 60, 1020.0) == 960
    # a later window makes one complete, whatever the clock says
    assert latest_complete([840, 960], 60, 1000.0) == 840
    assert latest_complete([840, 960], 60, 1020.0) == 960
    assert latest_complete([0, 60, 120], 60, 10.0) == 60


def test_features_are_capped_to_the_most_drifted(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry, max_features=4)
    window, _ = _window(profile, 0, 3000, seed=1, shift=["f07"], spread=["f03"])
    drift = window_drift(profile, window)
    _observe(health, profile, window)

    ranked = sorted(drift.values(), key=lambda d: -d.value / d.threshold)
    expected = {d.feature: d.value for d in ranked[:4]}
    assert _features(registry) == pytest.approx(expected, rel=1e-12)
    assert {"f07", "f03"} <= set(expected)
    flags = {k[1]: v for k, v in _series(registry, "streamdrift_model_feature_drifted").items()}
    assert flags == {f: float(drift[f].drifted) for f in expected}
    assert flags["f07"] == flags["f03"] == 1.0
    # the count covers every feature, exported or not
    drifted = registry.get_sample_value("streamdrift_model_drifted_features", {"model": "fraud"})
    assert drifted == sum(d.drifted for d in drift.values()) == 2
    # the default policy: Cohen's w at 0.3 for numeric and categorical features alike
    assert _series(registry, "streamdrift_model_drift_threshold") == {("fraud", "cohen_w"): 0.3}


def test_features_leaving_the_top_lose_their_series(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry, max_features=2)
    first, _ = _window(profile, 0, 3000, seed=2, shift=["f07"], spread=["f03"])
    _observe(health, profile, first)
    assert set(_features(registry)) == {"f07", "f03"}

    second, _ = _window(profile, WINDOW, 3000, seed=3, shift=["f12", "f15"])
    _observe(health, profile, second)
    assert set(_features(registry)) == {"f12", "f15"}
    flags = _series(registry, "streamdrift_model_feature_drifted")
    assert {k[1] for k in flags} == {"f12", "f15"}
    assert registry.get_sample_value(
        "streamdrift_model_window_start_timestamp_seconds", {"model": "fraud"}
    ) == float(WINDOW)


def test_no_feature_series_with_a_cap_of_zero(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry, max_features=0)
    window, _ = _window(profile, 0, 3000, seed=4, shift=["f07"])
    _observe(health, profile, window)
    assert _features(registry) == {}
    assert registry.get_sample_value("streamdrift_model_drifted_features", {"model": "fraud"}) == 1


def test_top_features_rank_nan_last():
    from streamdrift.monitors import FeatureDrift

    def fd(name, value):
        return FeatureDrift(name, "numeric", 500, 0, {}, "psi", value, 0.2, 1.0, False)

    drift = {n: fd(n, v) for n, v in (("a", 0.1), ("b", float("nan")), ("c", 0.3), ("d", 0.1))}
    assert [d.feature for d in top_features(drift, 3)] == ["c", "a", "d"]
    assert [d.feature for d in top_features(drift, 10)] == ["c", "a", "d", "b"]


# ---- models: removal ----------------------------------------------------------------------


def test_a_model_not_evaluated_for_a_while_loses_its_series(profile):
    registry, clock = CollectorRegistry(), Clock()
    health = ModelHealth(registry, max_features=3, stale_after=300, clock=clock)
    other = profile.model_copy(update={"model_id": "churn"})
    window, _ = _window(profile, 0, 1000, seed=5)
    _observe(health, profile, window)
    clock.now = 200
    _observe(health, other, window)
    assert health.models() == ["churn", "fraud"]

    clock.now = 400  # fraud last seen at 0, churn at 200
    _observe(health, other, window)
    assert health.models() == ["churn"]
    for family in registry.collect():
        assert all(s.labels["model"] == "churn" for s in family.samples), family.name
    assert _features(registry, "churn")


def test_forget_removes_every_series_of_the_model(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry)
    window, _ = _window(profile, 0, 1000, seed=6, labelled=300)
    _observe(health, profile, window, episodes=2)
    assert sum(len(f.samples) for f in registry.collect()) > FEATURES
    health.forget("fraud")
    assert sum(len(f.samples) for f in registry.collect()) == 0


class Reader:
    """`store.windows` with the windows in hand; counts its reads."""

    def __init__(self, windows: list[WindowSketch]) -> None:
        self.windows = {w.start: w for w in windows}
        self.reads: list[list[int]] = []

    def read(self, profile, starts):
        self.reads.append(starts)
        return [self.windows[s] for s in starts if s in self.windows]


def test_observe_latest_reads_the_window_only_when_the_evaluation_did_not(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry)
    old, _ = _window(profile, 0, 500, seed=7)
    current, _ = _window(profile, WINDOW, 400, seed=8)
    reader = Reader([old, current])
    now = WINDOW + 10.0  # the window at WINDOW is still being filled

    health.observe_latest(reader, profile, [0, WINDOW], [current], now, 1)
    assert reader.reads == [[0]]
    events = registry.get_sample_value("streamdrift_model_window_events", {"model": "fraud"})
    assert events == 500.0
    assert registry.get_sample_value("streamdrift_model_open_episodes", {"model": "fraud"}) == 1

    health.observe_latest(reader, profile, [0, WINDOW], [old, current], now, 0)
    assert reader.reads == [[0]]  # the evaluation read it: no second read


def test_no_complete_window_removes_the_model(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry)
    window, _ = _window(profile, 0, 500, seed=9)
    reader = Reader([window])
    health.observe_latest(reader, profile, [0], [], WINDOW + 1.0, 0)
    assert health.models() == ["fraud"]
    # registered again: the new revision has only its current window
    health.observe_latest(reader, profile, [2 * WINDOW], [], 2 * WINDOW + 1.0, 0)
    assert health.models() == []
    assert sum(len(f.samples) for f in registry.collect()) == 0
    # an expired window reads as nothing
    health.observe_latest(Reader([]), profile, [0], [], WINDOW + 1.0, 0)
    assert health.models() == []


# ---- performance, labels, outliers, outputs -------------------------------------------------


def test_headline_metric_coverage_and_outliers(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry)
    window, (y, score) = _window(profile, 0, 2000, seed=10, labelled=600)
    _observe(health, profile, window)
    model = {"model": "fraud"}
    auc = registry.get_sample_value("streamdrift_model_performance", model | {"metric": "roc_auc"})
    assert auc == pytest.approx(roc_auc_score(y, score), abs=0.005)
    reference = registry.get_sample_value(
        "streamdrift_model_performance_reference", model | {"metric": "roc_auc"}
    )
    assert reference == profile.reference_performance["roc_auc"]
    assert registry.get_sample_value("streamdrift_model_label_coverage", model) == 600 / 2000
    assert registry.get_sample_value("streamdrift_model_outlier_share", model) == (
        window.outliers / 2000
    )
    assert registry.get_sample_value("streamdrift_model_outlier_rate", model) == 0.001
    outputs = output_drift(profile, window)
    for name, output in (("__prediction__", "prediction"), ("__label__", "label")):
        d = outputs[name]
        labels = model | {"output": output, "statistic": d.statistic}
        assert registry.get_sample_value("streamdrift_model_output_drift", labels) == d.value
        drifted = registry.get_sample_value(
            "streamdrift_model_output_drifted", model | {"output": output}
        )
        assert drifted == float(d.drifted)


def test_headline_metric_waits_for_enough_labels(profile):
    registry = CollectorRegistry()
    health = ModelHealth(registry)
    labelled, _ = _window(profile, 0, 2000, seed=11, labelled=600)
    _observe(health, profile, labelled)
    few, _ = _window(profile, WINDOW, 2000, seed=12, labelled=50)  # min_labels is 200
    _observe(health, profile, few)
    assert _series(registry, "streamdrift_model_performance") == {}
    assert _series(registry, "streamdrift_model_performance_reference")
    assert registry.get_sample_value("streamdrift_model_label_coverage", {"model": "fraud"}) == (
        50 / 2000
    )
    # no label yet: coverage 0, not a missing series
    none, _ = _window(profile, 2 * WINDOW, 2000, seed=13)
    _observe(health, profile, none)
    assert registry.get_sample_value("streamdrift_model_label_coverage", {"model": "fraud"}) == 0
    assert _series(registry, "streamdrift_model_output_drift") == {
        ("fraud", "prediction", "cohen_w"): output_drift(profile, none)["__prediction__"].value
    }


def test_worker_metrics_carry_the_model_health_gauges(profile):
    metrics = WorkerMetrics(max_features=1)
    window, _ = _window(profile, 0, 3000, seed=14, shift=["f07"])
    _observe(metrics.model_health, profile, window)
    assert set(_features(metrics.registry)) == {"f07"}
    assert b'streamdrift_model_feature_drift{feature="f07"' in metrics.render()
