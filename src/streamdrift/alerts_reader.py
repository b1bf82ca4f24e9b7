"""Reading the alerts topic (`streamdrift alerts`, the demo): from the beginning, without
joining the workers' consumer group or committing anything."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streamdrift import kafka_io
from streamdrift.config import Settings
from streamdrift.errors import ConnectionProblem


def read_alerts(
    settings: Settings,
    follow: bool = False,
    model: str | None = None,
    stop: threading.Event | None = None,
    timeout: float = 10.0,
) -> Iterator[dict]:
    """Alerts as dicts, oldest first; with `follow`, waits for new ones until `stop`."""
    consumer = kafka_io.consumer(
        settings,
        **{
            "group.id": f"streamdrift-reader-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
        },
    )
    try:
        try:
            meta = consumer.list_topics(settings.alerts_topic, timeout=timeout)
        except Exception as e:
            raise ConnectionProblem(
                f"cannot reach Kafka at {settings.kafka_bootstrap}: {e}",
                "start the broker or set STREAMDRIFT_KAFKA_BOOTSTRAP",
            ) from None
        topic = meta.topics.get(settings.alerts_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return
        parts = [
            TopicPartition(settings.alerts_topic, p, OFFSET_BEGINNING) for p in topic.partitions
        ]
        consumer.assign(parts)
        at_end: set[int] = set()
        while True:
            if stop is not None and stop.is_set():
                return
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if not follow and len(at_end) == len(parts):
                        return
                continue
            alert = orjson.loads(msg.value())
            if model is None or alert.get("model_id") == model:
                yield alert
    finally:
        consumer.close()
