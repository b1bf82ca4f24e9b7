"""`<alerts topic>.undelivered`: alerts a sink gave up on, for a person to look at.

Each record is JSON: `alert` (as published, or the message's text when it was not an
alert at all), `sink` (null for a message that is not an alert), `error` (the last,
masked), `attempts`, `source` (`topic:partition:offset`) and `failed_at`; the key is the
alert's model id. Records are produced and acknowledged before the alerts topic is
committed past them, so a crash may repeat a record, never lose one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from confluent_kafka import Producer

from streamdrift import kafka_io
from streamdrift.config import Settings
from streamdrift.faults import BrokerUnavailable


@dataclass(frozen=True)
class Undeliverable:
    raw: bytes | None
    key: bytes | None
    source: str
    sink: str | None
    error: str
    attempts: int

    def record(self, now: datetime | None = None) -> bytes:
        try:
            alert: object = orjson.loads(self.raw) if self.raw else None
        except orjson.JSONDecodeError:
            alert = (self.raw or b"").decode(errors="replace")
        return orjson.dumps(
            {
                "alert": alert,
                "sink": self.sink,
                "error": self.error,
                "attempts": self.attempts,
                "source": self.source,
                "failed_at": (now or datetime.now(UTC)).isoformat(),
            }
        )


class UndeliveredTopic:
    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def send(self, items: list[Undeliverable], timeout: float = 15.0) -> None:
        """Produce `items` and wait for the broker's acknowledgement of every one, or
        raise `BrokerUnavailable` (the caller commits nothing past them then)."""
        failed: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        for item in items:
            headers: list[tuple[str, str | bytes | None]] = [
                ("streamdrift.source", item.source.encode())
            ]
            if item.sink is not None:
                headers.append(("streamdrift.sink", item.sink.encode()))
            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        key=item.key,
                        value=item.record(),
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
        remaining = self.producer.flush(timeout)
        if remaining or failed:
            raise BrokerUnavailable(
                f"{remaining + len(failed)} undelivered record(s) not acknowledged "
                f"by the broker ({failed[:1]})"
            )


def ensure_topics(settings: Settings, timeout: float = 15.0) -> None:
    """Create the alerts topic (as the workers would: one partition) and the
    `.undelivered` topic when missing, so a notifier started first has both."""
    kafka_io.create_topics(
        settings, {settings.alerts_topic: 1, settings.undelivered_topic: 1}, timeout
    )
