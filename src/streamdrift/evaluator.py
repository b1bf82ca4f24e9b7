"""Evaluation: turn touched windows into published alerts, one evaluator per model.

Runs inside any worker, after its batch is committed. A Redis lease makes it one
evaluator at a time per model; dirty marks in Redis (set by every apply) say which
windows changed since the last evaluation, so a window touched by a worker that died is
still evaluated by whichever worker comes next.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import orjson
from confluent_kafka import Producer

from streamdrift.alerts import (
    drift_alerts,
    encode,
    outlier_alerts,
    output_alerts,
    performance_alert,
    quality_alerts,
)
from streamdrift.events import Alert
from streamdrift.join import id_horizon
from streamdrift.model_health import open_quality_episodes
from streamdrift.monitors import (
    output_drift,
    performance_check,
    quality_findings,
    window_drift,
)
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store import Store
from streamdrift.telemetry import WorkerMetrics

log = logging.getLogger("streamdrift.evaluator")

#: A claimed alert not marked published after this long lost its publisher.
REPUBLISH_AFTER_SECONDS = 300.0  # well past the evaluation lease and a slow flush


class Evaluator:
    def __init__(
        self,
        store: Store,
        producer: Producer,
        alerts_topic: str,
        owner: str,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.topic = alerts_topic
        self.owner = owner
        self.published = 0
        self.health = metrics.model_health if metrics is not None else None

    def evaluate(self, profile: ReferenceProfile, now: float | None = None) -> list[Alert]:
        """Evaluate the model's dirty windows; returns the alerts newly published."""
        model = profile.model_id
        if not self.store.schedule.try_lock(model, self.owner):
            return []
        try:
            now = time.time() if now is None else now
            self._republish(model, now)
            marks = self.store.schedule.dirty(model)
            starts = sorted(
                {int(m.split(":")[1]) for m, _ in marks if m.split(":")[0] == str(profile.revision)}
            )
            fresh: list[Alert] = []
            all_starts = self.store.windows.starts(model, profile.revision)
            episodes = self.store.counters.quality_episodes(model)
            before = dict(episodes)
            windows = self.store.windows.read(profile, starts)
            for window in windows:
                for alert in self._window_alerts(profile, window, all_starts, now, episodes):
                    if self.store.alerts.claim(model, alert.alert_id, encode(alert), now):
                        fresh.append(alert)
            if episodes != before:
                self.store.counters.save_quality_episodes(model, episodes)
            sent = self._publish(model, [encode(a) for a in fresh], [a.alert_id for a in fresh])
            self.store.schedule.clear(model, marks)
            self.store.records.sweep(model, id_horizon(profile), now)
            cfg = profile.config
            self.store.alerts.prune(
                model, now - cfg.retention_seconds - 2 * cfg.window_seconds, now
            )
            if self.health is not None:  # the latest complete window, as gauges
                opened = open_quality_episodes(episodes, all_starts, cfg.window_seconds)
                self.health.observe_latest(
                    self.store.windows, profile, all_starts, windows, now, opened
                )
            return [a for a in fresh if a.alert_id in sent]
        finally:
            self.store.schedule.unlock(model, self.owner)

    def _window_alerts(
        self,
        profile: ReferenceProfile,
        window: WindowSketch,
        all_starts: list[int],
        now: float,
        episodes: dict[str, tuple[int, int]],
    ) -> list[Alert]:
        """Every monitor on one window: data quality, feature drift, outliers, prediction
        and label drift, and performance against the reference and the recent windows."""
        drift = window_drift(profile, window)
        findings = quality_findings(profile, window)
        alerts = quality_alerts(profile, window, findings, now, episodes)
        alerts += drift_alerts(profile, window, drift, now)
        alerts += outlier_alerts(profile, window, now)
        alerts += output_alerts(profile, window, output_drift(profile, window), drift, now)
        if window.performance is not None:
            k = profile.config.performance.detector_windows
            earlier = [s for s in all_starts if s < window.start][-k:]
            recent = self.store.windows.read_performance(profile, earlier)
            finding = performance_check(profile, window, recent)
            if finding is not None:
                alert = performance_alert(profile, window, finding, drift, now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _republish(self, model: str, now: float) -> None:
        stale = self.store.alerts.unpublished(model, now - REPUBLISH_AFTER_SECONDS)
        if stale:
            ids = [orjson.loads(a)["alert_id"] for a in stale]
            log.warning(
                "re-sending %d alert(s) of %s claimed by a worker that died", len(ids), model
            )
            self._publish(model, stale, ids)

    def _publish(self, model: str, payloads: list[bytes], ids: list[str]) -> set[str]:
        """Produce and wait for the broker's acknowledgement; only acknowledged alerts are
        marked published, the others stay claimed and are re-sent later."""
        if not payloads:
            return set()
        delivered: set[str] = set()

        def on_delivery(aid: str, err: object, _msg: object) -> None:
            if err is None:
                delivered.add(aid)
            else:
                log.error("alert %s not delivered: %s", aid, err)

        for aid, payload in zip(ids, payloads, strict=True):
            self.producer.produce(
                self.topic,
                key=model.encode(),
                value=payload,
                headers=[("alert_id", aid.encode())],
                on_delivery=partial(on_delivery, aid),
            )
        self.producer.flush(30)
        self.store.alerts.mark_published(model, sorted(delivered), time.time())
        self.published += len(delivered)
        return delivered
