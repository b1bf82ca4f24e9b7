"""Reading streamdrift's own output topics (`streamdrift alerts`, `streamdrift dlq`, the
demo): from the beginning, without joining the workers' consumer group or committing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition

from streamdrift import kafka_io
from streamdrift.config import Settings


def read_messages(
    settings: Settings,
    topics: list[str],
    follow: bool = False,
    stop: threading.Event | None = None,
    timeout: float = 10.0,
    from_beginning: bool = True,
    on_wait: Callable[[list[str]], None] | None = None,
) -> Iterator[Any]:
    """Every message of `topics`, oldest first per partition (`from_beginning` false:
    only those arriving from now on); with `follow`, waits for new ones until `stop`,
    and for the topics themselves when none exists yet (telling `on_wait` once). Without
    `follow`, topics that do not exist yet are skipped."""
    consumer = kafka_io.consumer(
        settings,
        **{
            "group.id": f"streamdrift-reader-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
        },
    )
    try:
        try:
            meta = consumer.list_topics(timeout=timeout)
        except Exception as e:
            raise kafka_io.unreachable(settings, e, timeout) from None
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END

        def partitions(meta: Any) -> list[TopicPartition]:
            return [
                TopicPartition(name, p, start)
                for name in topics
                if (t := meta.topics.get(name)) is not None and t.error is None
                for p in t.partitions
            ]

        parts = partitions(meta)
        if not parts and follow:
            if on_wait is not None:
                on_wait(topics)
            while not parts:
                if stop is not None and stop.wait(1.0):
                    return
                if stop is None:
                    time.sleep(1.0)
                parts = partitions(consumer.list_topics(timeout=timeout))
        if not parts:
            return
        consumer.assign(parts)
        at_end: set[tuple[str, int]] = set()
        while True:
            if stop is not None and stop.is_set():
                return
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                    if not follow and len(at_end) == len(parts):
                        return
                continue
            yield msg
    finally:
        consumer.close()


def read_alerts(
    settings: Settings,
    follow: bool = False,
    model: str | None = None,
    stop: threading.Event | None = None,
    from_beginning: bool = True,
    on_wait: Callable[[list[str]], None] | None = None,
) -> Iterator[dict]:
    """Alerts as dicts; only `model`'s when given."""
    messages = read_messages(
        settings,
        [settings.alerts_topic],
        follow,
        stop,
        from_beginning=from_beginning,
        on_wait=on_wait,
    )
    for msg in messages:
        try:
            alert = orjson.loads(msg.value())
        except orjson.JSONDecodeError:
            continue  # not ours: something else wrote to the alerts topic
        if model is None or alert.get("model_id") == model:
            yield alert


@dataclass
class DeadLetterGroup:
    """Dead letters with one (topic, reason): how many, and the first one as an example."""

    topic: str
    reason: str
    count: int = 0
    models: dict[str, int] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)


def summarize_dead_letters(settings: Settings) -> list[DeadLetterGroup]:
    """The dead-letter topics of predictions and labels, grouped by reason."""
    groups: dict[tuple[str, str], DeadLetterGroup] = {}
    topics = [
        settings.dlq_topic(settings.predictions_topic),
        settings.dlq_topic(settings.labels_topic),
    ]
    for msg in read_messages(settings, topics):
        headers = {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
        reason = headers.get("streamdrift.reason", "unknown")
        key = (msg.topic(), reason)
        group = groups.get(key)
        if group is None:
            value = msg.value() or b""
            group = groups[key] = DeadLetterGroup(
                topic=msg.topic(),
                reason=reason,
                example={
                    "source": headers.get("streamdrift.source", ""),
                    "detail": headers.get("streamdrift.detail", ""),
                    "value": value[:300].decode(errors="replace")
                    + ("…" if len(value) > 300 else ""),
                },
            )
        group.count += 1
        model = headers.get("streamdrift.model_id", "")
        group.models[model or "(none)"] = group.models.get(model or "(none)", 0) + 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.topic, g.reason))
