"""Kafka clients as streamdrift configures them: one place for consumer, producer and
admin settings, so the worker, the CLI and the demo talk to the broker the same way."""

from __future__ import annotations

import socket
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamdrift.config import Settings
from streamdrift.errors import ConfigError, ConnectionProblem
from streamdrift.redaction import mask_url


def consumer(settings: Settings, **overrides: Any) -> _Consumer:
    """A consumer-group member that never commits on its own: offsets are committed only
    after the batch's Redis apply succeeded (DESIGN decision 2)."""
    conf = {
        **settings.kafka_common(),
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
        **overrides,
    }
    return _Consumer(conf)


def producer(settings: Settings, **overrides: Any) -> Producer:
    conf = {
        **settings.kafka_common(),
        "linger.ms": 5,
        "acks": "all",
        "compression.type": "none",
        **overrides,
    }
    return Producer(conf)


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_common())


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
        client = AdminClient(settings.kafka_common())
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
        raise ConnectionProblem(
            f"cannot reach Kafka at {mask_url(settings.kafka_bootstrap)}: {e}",
            "start the broker or set STREAMDRIFT_KAFKA_BOOTSTRAP",
        ) from None
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
