"""Kafka clients as streamdrift configures them: one place for consumer, producer and
admin settings, so the worker, the CLI and the demo talk to the broker the same way."""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamdrift.config import Settings
from streamdrift.errors import ConfigError, ConnectionProblem
from streamdrift.redaction import mask_url

log = logging.getLogger("streamdrift.kafka")

#: where librdkafka's own log goes (instead of stderr): warnings and errors, each distinct
#: message once. A broker that is down makes librdkafka repeat the same line many times a
#: second; the command or the worker says what is wrong in one line of its own.
LIBRDKAFKA = logging.getLogger("streamdrift.librdkafka")


class OncePerMessage(logging.Filter):
    """Passes a message the first time only, numbers aside ("after 0ms" = "after 4ms")."""

    _NUMBERS = re.compile(r"\d+")

    def __init__(self, limit: int = 1000) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        key = self._NUMBERS.sub("#", record.getMessage())
        if key in self.seen:
            return False
        if len(self.seen) < self.limit:
            self.seen.add(key)
        return True


LIBRDKAFKA.addFilter(OncePerMessage())


def _common(settings: Settings) -> dict[str, Any]:
    """Every client's settings: the user's, and librdkafka's log into `LIBRDKAFKA`."""
    return {**settings.kafka_common(), "logger": LIBRDKAFKA, "log_level": 4}


def unreachable(settings: Settings, error: Exception, timeout: float) -> ConnectionProblem:
    """One line for a broker that did not answer: the address in force, where it came
    from, and what librdkafka said last."""
    reason = error.args[0].str() if error.args and hasattr(error.args[0], "str") else error
    return ConnectionProblem(
        f"cannot reach Kafka at {mask_url(settings.kafka_bootstrap)} "
        f"(STREAMDRIFT_KAFKA_BOOTSTRAP) within {timeout:g} s: {reason}",
        "start the broker, or set STREAMDRIFT_KAFKA_BOOTSTRAP to where it runs",
    )


def consumer(settings: Settings, **overrides: Any) -> _Consumer:
    """A consumer-group member that never commits on its own: offsets are committed only
    after the batch's Redis apply succeeded (DESIGN decision 2)."""
    conf = {
        **_common(settings),
        "group.id": settings.consumer_group,
        "client.id": f"streamdrift-{socket.gethostname()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(settings.session_timeout_ms // 5, 500),
        "fetch.max.bytes": 64 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
        # librdkafka's default 1 s backoff on a full fetch queue stalls a worker that
        # drains a backlog faster than one fetch per second refills it.
        "fetch.queue.backoff.ms": 10,
        # A topic deleted and created again is noticed within this (default: 5 min).
        "topic.metadata.refresh.interval.ms": 10_000,
        # the worker commits without waiting: a failure is heard here, at a later poll
        "on_commit": _commit_failed,
        **overrides,
    }
    return _Consumer(conf)


def _commit_failed(error: KafkaError | None, _partitions: list[Any]) -> None:
    if error is not None:  # e.g. the partitions moved in a rebalance; Redis is right either way
        log.info("offset commit failed (a lag hint only): %s", error)


def producer(settings: Settings, **overrides: Any) -> Producer:
    conf = {
        **_common(settings),
        "linger.ms": 5,
        "acks": "all",
        "compression.type": "none",
        **overrides,
    }
    return Producer(conf)


def admin(settings: Settings) -> AdminClient:
    return AdminClient(_common(settings))


def ensure_topics(settings: Settings, partitions: int = 4, timeout: float = 15.0) -> None:
    """Create the topics streamdrift uses when missing (predictions, labels, alerts and
    the dead-letter topics); existing topics are left as they are."""
    create_topics(
        settings,
        {
            settings.predictions_topic: partitions,
            settings.labels_topic: partitions,
            settings.alerts_topic: 1,
            settings.dlq_topic(settings.predictions_topic): 1,
            settings.dlq_topic(settings.labels_topic): 1,
        },
        timeout,
    )


def create_topics(settings: Settings, wanted: dict[str, int], timeout: float = 15.0) -> None:
    """Create each topic of `wanted` (name -> partitions) that does not exist yet; a
    topic another client created meanwhile is fine. Mistakes are one line: Kafka
    settings librdkafka refuses, a broker out of reach, a creation refused."""
    try:
        client = AdminClient(_common(settings))
    except KafkaException as e:
        # librdkafka checks settings when a client is made (an unknown name, a key that is
        # not PEM); this is often a process's first client, so a mistake in
        # STREAMDRIFT_KAFKA_* is one line, not a traceback.
        raise ConfigError(
            f"Kafka settings refused: {e}", "fix the STREAMDRIFT_KAFKA_* variables"
        ) from None
    try:
        existing = set(client.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        raise unreachable(settings, e, timeout) from None
    new = [
        NewTopic(t, num_partitions=n, replication_factor=1)
        for t, n in wanted.items()
        if t not in existing
    ]
    if not new:
        return
    for topic, fut in client.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise ConnectionProblem(
                    f"cannot create topic {topic}: {e}", "check the broker, or create it"
                ) from None
