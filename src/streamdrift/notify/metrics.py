"""The notifier's Prometheus metrics (`/metrics` on STREAMDRIFT_NOTIFY_METRICS_PORT):
what became of each alert, each delivery and each attempt, per sink."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class NotifyMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.alerts = Counter(
            "streamdrift_notify_alerts",
            "Alerts read, by what routing made of them: routed, unrouted (no route matched), "
            "invalid (not an alert; recorded in .undelivered)",
            ["outcome"],
            registry=r,
        )
        self.deliveries = Counter(
            "streamdrift_notify_deliveries",
            "Deliveries finished, by sink and outcome: delivered, gave_up",
            ["sink", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "streamdrift_notify_attempts",
            "Delivery attempts, by sink and result: ok, failed",
            ["sink", "result"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "streamdrift_notify_delivery_seconds",
            "From reading an alert to its delivery to a sink, retries included",
            ["sink"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.undelivered = Counter(
            "streamdrift_notify_undelivered",
            "Records produced to the .undelivered topic",
            registry=r,
        )
        self.in_flight = Gauge(
            "streamdrift_notify_in_flight", "Alerts read and not yet settled", registry=r
        )
        self.assigned = Gauge(
            "streamdrift_notify_assigned_partitions", "Partitions assigned", registry=r
        )
        self.last_loop = Gauge(
            "streamdrift_notify_last_loop_timestamp_seconds",
            "When the consume loop last turned",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
