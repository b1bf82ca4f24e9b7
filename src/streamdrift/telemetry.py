"""The monitor's own health: Prometheus metrics, liveness and readiness, JSON logs.

A worker serves `/metrics`, `/healthz` (the consume loop turned recently) and `/readyz`
(it has partitions and Redis answers) on STREAMDRIFT_METRICS_PORT. Metrics are updated
once per batch, never per event; the health of the models themselves (`model_health`),
once per evaluation.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamdrift.model_health import ModelHealth
from streamdrift.redaction import mask_any, mask_text

log = logging.getLogger("streamdrift.telemetry")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class WorkerMetrics:
    """The worker's Prometheus metrics, in a registry of its own; `model_health` holds
    the gauges of the models it evaluates (at most `max_features` features per model)."""

    def __init__(self, max_features: int = 20) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("streamdrift_events", "Events read, by topic", ["topic"], registry=r)
        self.bytes = Counter(
            "streamdrift_bytes", "Bytes of events read, by topic", ["topic"], registry=r
        )
        self.counted = Counter(
            "streamdrift_predictions_counted",
            "Predictions counted into windows (first delivery)",
            registry=r,
        )
        self.replayed = Counter(
            "streamdrift_replayed_events",
            "Re-delivered events skipped by the offset fences",
            registry=r,
        )
        self.labels_joined = Counter(
            "streamdrift_labels_joined", "Labels joined to their predictions", registry=r
        )
        self.batches = Counter("streamdrift_batches", "Batches processed", registry=r)
        self.batch_seconds = Histogram(
            "streamdrift_batch_seconds",
            "Time to process one polled batch (decode to commit)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "streamdrift_apply_seconds",
            "Time spent on one model's atomic Redis apply: sending it and waiting for the "
            "reply (not the next batch polled and decoded meanwhile)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.script_seconds = Histogram(
            "streamdrift_apply_script_seconds",
            "How long one apply script ran in Redis, by Redis's clock: the time Redis "
            "served no other client (see STREAMDRIFT_MAX_APPLY_MS)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_limit = Gauge(
            "streamdrift_batch_limit",
            "Messages the worker asks for per poll: STREAMDRIFT_BATCH_SIZE, less while "
            "applies would hold Redis longer than STREAMDRIFT_MAX_APPLY_MS",
            registry=r,
        )
        self.evaluation_seconds = Histogram(
            "streamdrift_evaluation_seconds",
            "Time of one model's evaluation",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "streamdrift_dead_letters",
            "Events sent to a dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.alerts = Counter(
            "streamdrift_alerts", "Alerts published, by type", ["type"], registry=r
        )
        self.fence_conflicts = Counter(
            "streamdrift_fence_conflicts",
            "Applies refused because another worker moved a fence",
            registry=r,
        )
        self.join_rereads = Counter(
            "streamdrift_join_rereads",
            "Applies worked out again because another worker appended to a journal shard "
            "of the batch's ids since this worker replayed it",
            registry=r,
        )
        self.join_records_held = Gauge(
            "streamdrift_join_records_held",
            "The join's records this worker holds in memory, every model (about 110-210 "
            "bytes each; bounded by the ids within the join horizon)",
            registry=r,
        )
        self.lag = Gauge(
            "streamdrift_consumer_lag",
            "Messages behind the end of the partition",
            ["topic", "partition"],
            registry=r,
        )
        self.last_loop = Gauge(
            "streamdrift_last_loop_timestamp_seconds",
            "When the consume loop last turned",
            registry=r,
        )
        self.assigned = Gauge("streamdrift_assigned_partitions", "Partitions assigned", registry=r)
        self.paused = Gauge(
            "streamdrift_paused",
            "1 while consumption is paused to wait out a fault, by fault",
            ["fault"],
            registry=r,
        )
        #: monotonic time the current pause began (None: not paused)
        self.paused_since: float | None = None
        self.state_lost = Gauge(
            "streamdrift_state_lost",
            "1 while Redis has lost the state this worker counted into (re-register models)",
            registry=r,
        )
        self.resyncs = Counter(
            "streamdrift_resyncs",
            "Times the worker read its partitions again from Redis's fences, by cause",
            ["cause"],
            registry=r,
        )
        self.topic_recreated = Counter(
            "streamdrift_topic_recreated",
            "Topics found under a new incarnation (deleted and created again)",
            registry=r,
        )
        self.model_health = ModelHealth(r, max_features)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ServedMetrics(Protocol):
    """What `HealthServer` needs of a process's metrics (the worker's, the notifier's)."""

    last_loop: Gauge

    def render(self) -> bytes: ...


class HealthServer:
    """`/metrics`, `/healthz`, `/readyz` on a background thread. A port in use is logged
    and skipped: a worker must not die for its dashboard."""

    def __init__(
        self,
        metrics: ServedMetrics,
        ready: Any,
        port: int,
        host: str = "0.0.0.0",
        stale_after: float = 60.0,
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.stale_after = stale_after
        self.server: ThreadingHTTPServer | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    outer._send(self, 200, outer.metrics.render(), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    age = time.time() - outer.metrics.last_loop._value.get()
                    ok = age < outer.stale_after
                    outer._send(
                        self,
                        200 if ok else 503,
                        orjson.dumps({"alive": ok, "loop_age_seconds": round(age, 3)}),
                    )
                elif self.path.startswith("/readyz"):
                    ok, why = outer.ready()
                    outer._send(
                        self, 200 if ok else 503, orjson.dumps({"ready": ok, "reason": why})
                    )
                else:
                    outer._send(self, 404, b"not found\n", "text/plain")

            def log_message(self, *args: Any) -> None:  # quiet: scrapes are not news
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            log.warning("metrics endpoint not served: port %s: %s", port, e)
            return
        threading.Thread(
            target=self.server.serve_forever, daemon=True, name="streamdrift-health"
        ).start()

    @property
    def port(self) -> int | None:
        return self.server.server_address[1] if self.server else None

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        code: int,
        body: bytes,
        content_type: str = "application/json",
    ) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields
    (model_id, topic, partition, offsets...), so logs can be searched by model.

    Message, exception and extra fields are masked (`redaction`): a library's error text
    or a logged URL must not carry a password into the log store."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = mask_any(value)
        if record.exc_info:
            doc["exception"] = mask_text(self.formatException(record.exc_info))
        return orjson.dumps(doc, default=lambda v: mask_text(str(v))).decode()


class TextFormatter(logging.Formatter):
    """`STREAMDRIFT_LOG_FORMAT=text`: one plain line, masked like the JSON lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # a long-running process logs librdkafka's warnings and errors (each once)
    logging.getLogger("streamdrift.librdkafka").setLevel(logging.WARNING)
