"""Publishing prediction and label events from a serving process.

`Monitor.log_prediction` checks the event against the contract (a mistake raises at the
call), encodes it with orjson and hands it to librdkafka, which sends it in a batch
after `linger.ms`: the call does not wait for the broker. Delivery failures arrive
later, on the thread that calls `log_*` (every `POLL_EVERY`th call looks), `poll` or
`flush`, through `on_error`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Producer

from streamdrift.client.validation import check_id, label_json, prediction_json
from streamdrift.kafka_io import LIBRDKAFKA

log = logging.getLogger("streamdrift.client")

#: `on_error(error, message_key)`: a message the broker did not take, by its key
ErrorCallback = Callable[[KafkaError, bytes | None], None]

#: librdkafka settings of a Monitor's producer, under what the caller passes
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "acks": "all",
    "compression.type": "none",
    # only failed deliveries call back: a success costs no Python call
    "delivery.report.only.error": True,
}


#: `log_*` calls per look for delivery reports: a look (`Producer.poll(0)`) costs as much
#: as a tenth of a call, and reports are rare (only failures), so most calls skip it
POLL_EVERY = 32


def _log_error(error: KafkaError, key: bytes | None) -> None:
    log.error("event %r not delivered: %s", key, error)


def producer_settings(bootstrap: str, producer_config: dict[str, Any]) -> dict[str, Any]:
    """librdkafka settings: the defaults, then the caller's (`linger_ms=20` or
    `**{"linger.ms": 20}`, both spellings)."""
    conf = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS}
    # librdkafka's own log into Python logging, each distinct line once (not stderr)
    conf.update({"logger": LIBRDKAFKA, "log_level": 4})
    conf.update({k.replace("_", "."): v for k, v in producer_config.items()})
    return conf


class Monitor:
    """Publishes one model's prediction and label events to Kafka.

    ```python
    with Monitor(bootstrap="kafka:9092", model_id="fraud", version="3.1.0") as monitor:
        monitor.log_prediction("a1b2", {"amount": 120.5}, {"score": 0.83, "label": 1})
        monitor.log_label("a1b2", 0)
    ```

    Both events are keyed by `prediction_id`, so an id's prediction and label land on
    the same partition number of their topics. When librdkafka's local queue is full,
    a call waits for room (backpressure) rather than drop the event.
    """

    def __init__(
        self,
        bootstrap: str,
        model_id: str,
        version: str | None = None,
        predictions_topic: str = "predictions",
        labels_topic: str = "labels",
        on_error: ErrorCallback | None = None,
        **producer_config: Any,
    ) -> None:
        self.model_id = check_id(model_id, "model_id")
        if version is not None and type(version) is not str:
            raise ValueError(f"version: must be a string or None, not {type(version).__name__}")
        self.version = version
        self.predictions_topic = predictions_topic
        self.labels_topic = labels_topic
        self.on_error: ErrorCallback = on_error or _log_error
        self.failed = 0
        conf = producer_settings(bootstrap, producer_config)
        conf["on_delivery"] = self._delivered
        self._producer = Producer(conf)
        self._produce = self._producer.produce
        self._poll = self._producer.poll
        self._until_poll = POLL_EVERY

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        self.failed += 1
        try:
            self.on_error(error, message.key())
        except Exception:  # a callback's mistake must not end the poll that ran it
            log.exception("on_error raised")

    def encode_prediction(
        self,
        prediction_id: str,
        features: dict[str, Any],
        prediction: Any,
        timestamp: Any = None,
        segments: dict[str, str | int | bool] | None = None,
    ) -> bytes:
        """The checked event's JSON bytes; raises `InvalidEvent` (a ValueError)."""
        return prediction_json(
            self.model_id, self.version, prediction_id, features, prediction, timestamp, segments
        )

    def encode_label(self, prediction_id: str, label: Any, timestamp: Any = None) -> bytes:
        return label_json(self.model_id, prediction_id, label, timestamp)

    def log_prediction(
        self,
        prediction_id: str,
        features: dict[str, Any],
        prediction: Any,
        timestamp: Any = None,
        segments: dict[str, str | int | bool] | None = None,
    ) -> None:
        """Publish one prediction. `prediction` is `{"score": p, "label": c}` (either may
        be left out), a number (regression) or a class; `timestamp` epoch seconds or a
        datetime (default: the time of sending); `segments` str/int/bool by key."""
        # inline rather than through encode_prediction and a send method: each Python
        # call costs ~3% of this one
        value = prediction_json(
            self.model_id, self.version, prediction_id, features, prediction, timestamp, segments
        )
        try:
            self._produce(self.predictions_topic, value, prediction_id)
        except BufferError:
            self._send_when_room(self.predictions_topic, prediction_id, value)
        self._until_poll -= 1
        if not self._until_poll:
            self._look()

    def log_label(self, prediction_id: str, label: Any, timestamp: Any = None) -> None:
        """Publish the ground truth of an earlier (or later) prediction."""
        value = label_json(self.model_id, prediction_id, label, timestamp)
        try:
            self._produce(self.labels_topic, value, prediction_id)
        except BufferError:
            self._send_when_room(self.labels_topic, prediction_id, value)
        self._until_poll -= 1
        if not self._until_poll:
            self._look()

    def _send_when_room(self, topic: str, key: str, value: bytes) -> None:
        while True:
            self._poll(0.05)  # the local queue is full: wait for deliveries
            try:
                self._produce(topic, value, key)
                return
            except BufferError:
                pass

    def _look(self) -> None:
        self._until_poll = POLL_EVERY
        self._poll(0)

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery reports (and so `on_error`); returns how many were served."""
        served: int = self._poll(timeout)
        return served

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to `timeout` seconds for every queued event to be delivered (or to
        fail); returns how many are still undelivered (0: all done)."""
        left: int = self._producer.flush(timeout)
        return left

    def __len__(self) -> int:
        """Events queued, not delivered yet."""
        return len(self._producer)

    def close(self, timeout: float = 10.0) -> int:
        """Flush; returns the events still undelivered (they are given up on)."""
        left = self.flush(timeout)
        if left:
            log.warning("%d events of model %s not delivered at close", left, self.model_id)
        return left

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMonitor:
    """`Monitor` for asyncio code: the same checks and settings; `log_*` never block the
    event loop (a full local queue is waited out with `await`), `await flush()`."""

    def __init__(self, bootstrap: str, model_id: str, **kwargs: Any) -> None:
        self._sync = Monitor(bootstrap, model_id, **kwargs)
        self.model_id = self._sync.model_id

    @property
    def failed(self) -> int:
        return self._sync.failed

    async def log_prediction(
        self,
        prediction_id: str,
        features: dict[str, Any],
        prediction: Any,
        timestamp: Any = None,
        segments: dict[str, str | int | bool] | None = None,
    ) -> None:
        m = self._sync
        value = m.encode_prediction(prediction_id, features, prediction, timestamp, segments)
        await self._send(m.predictions_topic, prediction_id, value)

    async def log_label(self, prediction_id: str, label: Any, timestamp: Any = None) -> None:
        m = self._sync
        await self._send(
            m.labels_topic, prediction_id, m.encode_label(prediction_id, label, timestamp)
        )

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        m = self._sync
        while True:
            try:
                m._produce(topic, value, key)
                break
            except BufferError:
                m.poll(0)
                await asyncio.sleep(0.01)
        m._until_poll -= 1
        if not m._until_poll:
            m._look()

    async def flush(self, timeout: float = 10.0) -> int:
        """Wait (in a thread, the loop runs on) for delivery; returns events undelivered."""
        return await asyncio.to_thread(self._sync.flush, timeout)

    async def close(self, timeout: float = 10.0) -> int:
        return await asyncio.to_thread(self._sync.close, timeout)

    async def __aenter__(self) -> AsyncMonitor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
