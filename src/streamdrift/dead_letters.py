"""Dead letters to `<topic>.dlq`: the event as it came, with why, where from and whose.

At least once: the worker waits for the broker's acknowledgement before the Redis apply
they belong to (a model's) or the commit (the others), so a crash may repeat a dead
letter, never lose one. Undeliverable dead letters stop the batch (`BrokerUnavailable`,
a fault the worker waits out): its offsets must not move on without them."""

from __future__ import annotations

from confluent_kafka import Producer

from streamdrift.config import Settings
from streamdrift.decode import DeadLetter
from streamdrift.faults import BrokerUnavailable

#: Dead letters larger than this keep only this much of the event (and its size).
DLQ_EXCERPT_BYTES = 256 * 1024


class DeadLetterSink:
    def __init__(self, producer: Producer, settings: Settings) -> None:
        self.producer = producer
        self.settings = settings

    def send(self, dead: list[DeadLetter]) -> None:
        """Produce `dead` and wait for the broker. An event too large for the producer
        goes with its first DLQ_EXCERPT_BYTES and its size."""
        if not dead:
            return
        failed: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        for d in dead:
            headers: list[tuple[str, str | bytes | None]] = [
                ("streamdrift.reason", d.reason.encode()),
                ("streamdrift.detail", d.detail.encode()),
                ("streamdrift.source", f"{d.topic}:{d.partition}:{d.offset}".encode()),
            ]
            if d.model_id:
                headers.append(("streamdrift.model_id", d.model_id.encode()))
            value = d.value
            if value is not None and len(value) > DLQ_EXCERPT_BYTES:
                headers.append(("streamdrift.truncated_from", str(len(value)).encode()))
                value = value[:DLQ_EXCERPT_BYTES]
            while True:
                try:
                    self.producer.produce(
                        self.settings.dlq_topic(d.topic),
                        key=d.key,
                        value=value,
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
        remaining = self.producer.flush(15)
        if remaining or failed:
            raise BrokerUnavailable(
                f"{remaining + len(failed)} dead letter(s) not acknowledged ({failed[:1]})"
            )
