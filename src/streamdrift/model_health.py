"""Model health in Prometheus: each model's latest complete window, as gauges.

Alerts on the alerts topic say when something changed; these gauges say where each
model stands, for dashboards and alert rules: the drift of its features and outputs,
its headline metric against the reference, label coverage, outlier share, events, the
window's start (so a model that stopped getting events shows its age) and its open
alert episodes. A window is complete once a later window exists or its end has passed:
the window being filled would show a half-counted picture.

Every number comes from the monitors (`window_drift`, `output_drift`,
`window_performance`, `headline_metric`), so a gauge and an alert never disagree.

Label cardinality is bounded: per model, at most `max_features` features (the highest
drift statistic against its threshold; `STREAMDRIFT_METRICS_MAX_FEATURES`). A feature
that leaves the top, a model this worker has not evaluated for `stale_after` seconds
(another worker took its partitions, or it stopped getting events while this one is
busy) and a model with no complete window have their series removed, not left stale.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge

from streamdrift.monitors import (
    FeatureDrift,
    headline_metric,
    output_drift,
    window_drift,
    window_performance,
)
from streamdrift.profile import LABEL, PREDICTION, ReferenceProfile
from streamdrift.sketch import WindowSketch

#: a model's series are removed when this worker has not evaluated it for this long
STALE_AFTER_SECONDS = 300.0
#: the names the model's outputs go by in the `output` label
OUTPUT_NAMES = {PREDICTION: "prediction", LABEL: "label"}

LabelValues = tuple[str, ...]


class WindowReader(Protocol):
    """What is read from Redis: `store.windows`."""

    def read(self, profile: ReferenceProfile, starts: list[int]) -> list[WindowSketch]: ...


def latest_complete(starts: list[int], width: int, now: float) -> int | None:
    """The start of the newest complete window among `starts` (ascending): one a later
    window follows, or whose end has passed. None while only the current one exists."""
    if not starts:
        return None
    if starts[-1] + width <= now:
        return starts[-1]
    return starts[-2] if len(starts) > 1 else None


def _thresholds(profile: ReferenceProfile) -> dict[LabelValues, float]:
    """The model policy's threshold per statistic that judges one of its kinds of
    feature: the defaults differ by kind, and a categorical feature cannot take KS."""
    kinds = sorted({ref.kind for ref in profile.features.values()}) or ["numeric"]
    return {(s,): t for s, t in (profile.config.drift.judge(k) for k in kinds)}


def top_features(drift: Mapping[str, FeatureDrift], limit: int) -> list[FeatureDrift]:
    """The `limit` features with the highest statistic against its threshold (ties by
    name); a statistic that could not be computed (nan) ranks last."""

    def rank(d: FeatureDrift) -> tuple[float, str]:
        ratio = d.value / d.threshold if d.threshold else d.value
        return (-ratio if not math.isnan(ratio) else math.inf, d.feature)

    return sorted(drift.values(), key=rank)[: max(limit, 0)]


class ModelHealth:
    """The model-health gauges of one worker, in the worker's registry.

    `observe` takes one model's latest complete window and what the monitors computed
    on it, and replaces that model's series; `observe_latest` finds that window (reading
    it from Redis when the evaluation did not) and calls `observe`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        max_features: int = 20,
        stale_after: float = STALE_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_features = max_features
        self.stale_after = stale_after
        self.clock = clock

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, ["model", *labels], registry=registry)

        self.window_start = gauge(
            "streamdrift_model_window_start_timestamp_seconds",
            "Start of the model's latest complete window (epoch seconds, event time)",
        )
        self.window_seconds = gauge(
            "streamdrift_model_window_seconds", "Length of the model's windows"
        )
        self.events = gauge(
            "streamdrift_model_window_events", "Predictions counted in the latest complete window"
        )
        self.feature_drift = gauge(
            "streamdrift_model_feature_drift",
            "Drift statistic of a feature in the latest complete window "
            "(top features by statistic / threshold)",
            "feature",
            "statistic",
        )
        self.feature_drifted = gauge(
            "streamdrift_model_feature_drifted",
            "1 if the feature drifted in the latest complete window (effect size and test)",
            "feature",
        )
        self.drifted_features = gauge(
            "streamdrift_model_drifted_features",
            "Features drifted in the latest complete window (all, not only those exported)",
        )
        self.drift_threshold = gauge(
            "streamdrift_model_drift_threshold",
            "The drift statistic's threshold (the model's drift policy, per statistic in use)",
            "statistic",
        )
        self.output_drift = gauge(
            "streamdrift_model_output_drift",
            "Drift statistic of the prediction or the joined labels in the latest complete window",
            "output",
            "statistic",
        )
        self.output_drifted = gauge(
            "streamdrift_model_output_drifted",
            "1 if the prediction (or label) drifted in the latest complete window",
            "output",
        )
        self.headline = gauge(
            "streamdrift_model_performance",
            "Headline metric of the latest complete window (once it has enough labels)",
            "metric",
        )
        self.headline_reference = gauge(
            "streamdrift_model_performance_reference",
            "Headline metric on the reference data",
            "metric",
        )
        self.label_coverage = gauge(
            "streamdrift_model_label_coverage",
            "Share of the latest complete window's predictions with a joined label",
        )
        self.outlier_share = gauge(
            "streamdrift_model_outlier_share",
            "Share of the latest complete window's predictions flagged as outliers",
        )
        self.outlier_rate = gauge(
            "streamdrift_model_outlier_rate",
            "Share of reference-like events the outlier model flags (its configured rate, "
            "or the share a score of few values allows)",
        )
        self.episodes = gauge(
            "streamdrift_model_open_episodes", "Alert episodes of the model still open"
        )
        #: model -> gauge -> label values (after the model) of the series it has now
        self._series: dict[str, dict[Gauge, set[LabelValues]]] = {}
        self._seen: dict[str, float] = {}

    # ---- the evaluator's call --------------------------------------------------------------
    def observe_latest(
        self,
        windows: WindowReader,
        profile: ReferenceProfile,
        starts: list[int],
        evaluated: list[WindowSketch],
        now: float,
        open_episodes: int,
    ) -> None:
        """After one evaluation of a model: its latest complete window among `starts`
        (the windows of its revision, ascending), taken from the windows the evaluation
        read or else read now (one round trip), with the monitors' verdicts on it."""
        start = latest_complete(starts, profile.config.window_seconds, now)
        window = next((w for w in evaluated if w.start == start), None)
        if window is None and start is not None:
            window = next(iter(windows.read(profile, [start])), None)
        if window is None:
            self.forget(profile.model_id)
            self.expire()
            return
        self.observe(
            profile,
            window,
            window_drift(profile, window, ks_p=False),
            output_drift(profile, window, ks_p=False),
            window_performance(profile, window),
            open_episodes,
        )

    def observe(
        self,
        profile: ReferenceProfile,
        window: WindowSketch,
        drift: Mapping[str, FeatureDrift],
        outputs: Mapping[str, FeatureDrift],
        performance: Mapping[str, float],
        open_episodes: int,
    ) -> None:
        """Replace the model's series with those of `window`: `drift` and `outputs` as
        `window_drift` and `output_drift` give them, `performance` as
        `window_performance`. Series the window no longer has are removed; so are those
        of models not observed for `stale_after` seconds."""
        model, cfg = profile.model_id, profile.config
        values: dict[Gauge, dict[LabelValues, float]] = {
            self.window_start: {(): float(window.start)},
            self.window_seconds: {(): float(cfg.window_seconds)},
            self.events: {(): float(window.count)},
            self.drifted_features: {(): float(sum(d.drifted for d in drift.values()))},
            self.drift_threshold: _thresholds(profile),
            self.episodes: {(): float(open_episodes)},
            self.feature_drift: {},
            self.feature_drifted: {},
            self.output_drift: {},
            self.output_drifted: {},
            self.headline: {},
            self.headline_reference: {},
            self.label_coverage: {},
            self.outlier_share: {},
            self.outlier_rate: {},
        }
        for d in top_features(drift, self.max_features):
            values[self.feature_drift][(d.feature, d.statistic)] = d.value
            values[self.feature_drifted][(d.feature,)] = float(d.drifted)
        for name, d in outputs.items():
            output = OUTPUT_NAMES.get(name, name)
            values[self.output_drift][(output, d.statistic)] = d.value
            values[self.output_drifted][(output,)] = float(d.drifted)
        metric = headline_metric(profile)
        value = performance.get(metric, math.nan)
        enough = performance.get("labelled", 0.0) >= cfg.performance.min_labels
        if enough and not math.isnan(value):
            values[self.headline][(metric,)] = value
        if metric in profile.reference_performance:
            values[self.headline_reference][(metric,)] = profile.reference_performance[metric]
        if window.count and (profile.label is not None or window.performance is not None):
            values[self.label_coverage][()] = performance.get("label_coverage", 0.0)
        if profile.outliers is not None:
            values[self.outlier_rate][()] = profile.outliers.expected_rate
            if window.count:
                values[self.outlier_share][()] = window.outliers / window.count
        self._replace(model, values)
        self._seen[model] = self.clock()
        self.expire()

    # ---- removal -----------------------------------------------------------------------------
    def forget(self, model: str) -> None:
        """Remove every series of `model`."""
        for gauge, labels in self._series.pop(model, {}).items():
            for values in labels:
                gauge.remove(model, *values)
        self._seen.pop(model, None)

    def expire(self) -> None:
        """Forget the models not observed for `stale_after` seconds."""
        cutoff = self.clock() - self.stale_after
        for model in [m for m, seen in self._seen.items() if seen < cutoff]:
            self.forget(model)

    def models(self) -> list[str]:
        """The models this worker exports series of."""
        return sorted(self._series)

    def _replace(self, model: str, values: dict[Gauge, dict[LabelValues, float]]) -> None:
        exported = self._series.setdefault(model, {})
        for gauge, series in values.items():
            before = exported.get(gauge, set())
            for gone in before - series.keys():
                gauge.remove(model, *gone)
            for labels, value in series.items():
                gauge.labels(model, *labels).set(value)
            exported[gauge] = set(series)
