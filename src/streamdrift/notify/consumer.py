"""The notifier's Kafka loop: read alerts, hand them to their sinks, commit what is done.

A consumer group of its own on the alerts topic (STREAMDRIFT_NOTIFY_GROUP, default
`streamdrift-notify`), stateless: run one or several; each alert is delivered by the
member that owns its partition. The main thread only reads, routes, records and
commits; deliveries run on each sink's threads (`lanes.py`), so a failing sink retries
on its own time and the others carry on.

At least once. An offset is committed only when its alert and every alert before it
in the partition is settled: delivered to every sink its routes name, or given up on
by a sink and recorded in `.undelivered` (acknowledged by the broker first). A
notifier killed at any moment delivers again, after a restart or in the member that
takes its partitions, what it had not committed, with the same `Idempotency-Key`.

Order. The alerts topic is keyed by model id, so one model's alerts are in one
partition, in the order raised; they are handed to each sink in that order and a sink
delivers a model's alerts one at a time (`lanes.py`). Re-deliveries after a crash can
repeat alerts a receiver already had, in their order again.
"""

from __future__ import annotations

import functools
import logging
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from streamdrift import kafka_io
from streamdrift.config import Settings
from streamdrift.faults import BrokerUnavailable
from streamdrift.notify.lanes import Lanes
from streamdrift.notify.metrics import NotifyMetrics
from streamdrift.notify.progress import Progress
from streamdrift.notify.received import InvalidAlert, ReceivedAlert, parse_alert
from streamdrift.notify.retry import Outcome, deliver
from streamdrift.notify.routes import RoutesFile
from streamdrift.notify.sink import Sink
from streamdrift.notify.sinks import build_sinks
from streamdrift.notify.undelivered import Undeliverable, UndeliveredTopic, ensure_topics
from streamdrift.telemetry import HealthServer

log = logging.getLogger("streamdrift.notify")

Partition = tuple[str, int]

#: alerts read and not settled before the partitions are paused (memory stays bounded)
MAX_IN_FLIGHT = 1000
#: at a rebalance, how long deliveries of revoked partitions may finish before they are
#: cancelled (and delivered again by the next owner)
REVOKE_GRACE_SECONDS = 5.0


@dataclass
class PendingAlert:
    """One alert read: the sinks it goes to and how each delivery ended so far."""

    partition: Partition
    offset: int
    progress: Progress
    received: ReceivedAlert | None
    raw: bytes | None
    key: bytes | None
    sinks: list[str]
    invalid: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: Outcome) -> bool:
        """Add one sink's outcome; True when it was the last one awaited."""
        with self._lock:
            self.outcomes.append(outcome)
            return len(self.outcomes) == len(self.sinks)

    @property
    def source(self) -> str:
        return f"{self.partition[0]}:{self.partition[1]}:{self.offset}"

    def undeliverable(self) -> list[Undeliverable]:
        if self.invalid is not None:
            return [Undeliverable(self.raw, self.key, self.source, None, self.invalid, 0)]
        return [
            Undeliverable(self.raw, self.key, self.source, o.sink, o.error or "", o.attempts)
            for o in self.outcomes
            if o.gave_up
        ]


@dataclass
class NotifyStats:
    alerts: int = 0
    delivered: int = 0
    gave_up: int = 0
    unrouted: int = 0
    invalid: int = 0


class Notifier:
    def __init__(
        self,
        settings: Settings,
        routes: RoutesFile,
        group: str | None = None,
        from_beginning: bool = False,
        drain_seconds: float = 10.0,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.group = group or settings.notify_group
        self.from_beginning = from_beginning
        self.drain_seconds = drain_seconds
        self.max_in_flight = max_in_flight
        self.sinks: dict[str, Sink] = build_sinks(routes)
        self.lanes = {name: Lanes(routes.sinks[name].concurrency, name) for name in self.sinks}
        overrides: dict[str, Any] = {
            "group.id": self.group,
            "client.id": f"streamdrift-notify-{socket.gethostname()}",
            "enable.partition.eof": True,
        }
        if "fetch.wait.max.ms" not in settings.kafka_extra:
            # a page should not wait out a broker's long poll (500 ms by default) where
            # the broker does not answer a waiting fetch when data comes; alerts are
            # few, so the extra fetches cost next to nothing
            overrides["fetch.wait.max.ms"] = 100
        self.consumer = kafka_io.consumer(settings, **overrides)
        self.producer = kafka_io.producer(settings)
        self.undelivered = UndeliveredTopic(self.producer, settings.undelivered_topic)
        self.metrics = NotifyMetrics()
        self.stats = NotifyStats()
        self.health: HealthServer | None = None
        #: settled in a lane thread, waiting for the main thread
        self._finished: queue.SimpleQueue[PendingAlert] = queue.SimpleQueue()
        #: settled, their `.undelivered` records not yet acknowledged
        self._settling: list[PendingAlert] = []
        self._progress: dict[Partition, Progress] = {}
        self._open: dict[Partition, dict[int, PendingAlert]] = {}
        self._at_end: set[Partition] = set()
        self._rewound: set[Partition] = set()
        self._paused = False
        self._stopping = False
        #: when the last alert was read; the idle clock starts at the first assignment,
        #: as joining the group may take longer than the idle time
        self._last_read: float | None = None
        self._undelivered_failing = False

    # ---- lifecycle ---------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Stop reading; let deliveries in hand finish (`drain_seconds`), commit, leave."""
        self._stopping = True

    def run(
        self,
        once: bool = False,
        idle_exit: float | None = None,
        max_seconds: float | None = None,
        install_signals: bool = True,
    ) -> NotifyStats:
        """Deliver until stopped; with `once`, until every assigned partition is read to
        its end and settled; with `idle_exit`, until nothing came for that many seconds
        and everything is settled; at most `max_seconds`."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        deadline = time.monotonic() + max_seconds if max_seconds else None
        if self.settings.notify_metrics_port >= 0:
            self.health = HealthServer(
                self.metrics, self.readiness, self.settings.notify_metrics_port
            )
        try:
            ensure_topics(self.settings)
            self.consumer.subscribe(
                [self.settings.alerts_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            log.info(
                "notifying from %s as group %s: %s",
                self.settings.alerts_topic,
                self.group,
                "; ".join(f"{n} ({s.kind}): {s.describe()}" for n, s in self.sinks.items()),
                extra={"metrics_port": self.health.port if self.health else None},
            )
            while not self._stopping and (deadline is None or time.monotonic() < deadline):
                self.turn()
                if once and self._drained():
                    break
                if idle_exit is not None and self._idle_for() >= idle_exit:
                    break
        finally:
            self._shutdown()
        return self.stats

    def readiness(self) -> tuple[bool, str]:
        assigned = len(self._progress)
        if assigned == 0:
            return False, "no partition of the alerts topic assigned (yet)"
        if self._undelivered_failing:
            return False, "the .undelivered topic does not acknowledge records (broker away?)"
        return True, f"{assigned} partition(s) assigned"

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.drain_seconds
        while self._open_count() and time.monotonic() < deadline:
            self._settle()
            time.sleep(0.02)
        cancelled = 0
        for pendings in self._open.values():
            for pending in pendings.values():
                pending.cancelled.set()
                cancelled += 1
        if cancelled:
            log.info(
                "%d alert(s) not settled on stopping: delivered again after a restart", cancelled
            )
        for lanes in self.lanes.values():
            lanes.shutdown()
        self._settle()
        self._commit(everything=True)
        try:
            self.consumer.close()
        except KafkaException as e:
            log.warning("leaving the group: %s", e)
        self.producer.flush(10)
        for sink in self.sinks.values():
            sink.close()
        if self.health is not None:
            self.health.close()

    # ---- the loop ----------------------------------------------------------------------
    def turn(self) -> None:
        """Read what is there (waiting briefly when idle), settle, commit, pace."""
        self.metrics.last_loop.set_to_current_time()
        busy = self._in_flight() > 0
        first = self.consumer.poll(0.05 if busy else self.settings.poll_timeout_seconds)
        if first is not None:
            # then whatever else is there, without waiting: one alert is not held back
            # for a batch to fill
            more = self.settings.batch_size - 1
            messages = [first, *(self.consumer.consume(more, 0) if more else [])]
            for message in messages:
                self._take(message)
        self._settle()
        self._commit()
        self._pace()

    def _take(self, message: Any) -> None:
        err = message.error()
        part: Partition = (message.topic(), message.partition())
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._at_end.add(part)
            else:
                log.warning("reading %s: %s", self.settings.alerts_topic, err)
            return
        progress = self._progress.get(part)
        if progress is None:  # not ours any more: its new owner reads it
            return
        self._at_end.discard(part)
        self._last_read = time.monotonic()
        self.stats.alerts += 1
        offset = message.offset()
        progress.add(offset)
        raw = message.value()
        pending = PendingAlert(part, offset, progress, None, raw, message.key(), [])
        try:
            received = parse_alert(raw, pending.source)
        except InvalidAlert as e:
            pending.invalid = str(e)
            self.stats.invalid += 1
            self.metrics.alerts.labels("invalid").inc()
            log.warning(
                "%s: %s; recorded in %s", pending.source, e, self.settings.undelivered_topic
            )
            self._open[part][offset] = pending
            self._finished.put(pending)
            return
        names = self.routes.sinks_for(received)
        if not names:
            self.stats.unrouted += 1
            self.metrics.alerts.labels("unrouted").inc()
            log.debug("%s: no route matches alert %s", pending.source, received.alert.alert_id)
            progress.finish(offset)
            return
        self.metrics.alerts.labels("routed").inc()
        pending.received, pending.sinks = received, names
        self._open[part][offset] = pending
        for name in names:
            task = functools.partial(self._deliver, pending, name, time.monotonic())
            self.lanes[name].submit(received.alert.model_id, task)

    def _deliver(self, pending: PendingAlert, name: str, read_at: float) -> None:
        """In a lane thread: one sink's delivery of one alert, with its retries."""
        assert pending.received is not None
        outcome = deliver(
            self.sinks[name],
            pending.received,
            self.routes.retry_of(name),
            pending.cancelled,
            on_attempt=self._count_attempt,
        )
        if outcome.delivered:
            self.metrics.deliveries.labels(name, "delivered").inc()
            self.metrics.delivery_seconds.labels(name).observe(time.monotonic() - read_at)
        elif outcome.gave_up:
            self.metrics.deliveries.labels(name, "gave_up").inc()
            log.warning(
                "%s gave up on alert %s (%s) after %d attempt(s): %s; recorded in %s",
                name,
                pending.received.alert.alert_id,
                pending.source,
                outcome.attempts,
                outcome.error,
                self.settings.undelivered_topic,
                extra={"sink": name, "model_id": pending.received.alert.model_id},
            )
        if pending.record(outcome):
            self._finished.put(pending)

    def _count_attempt(self, sink: str, ok: bool) -> None:
        self.metrics.attempts.labels(sink, "ok" if ok else "failed").inc()

    def _settle(self) -> None:
        """Record what lane threads finished: `.undelivered` first (acknowledged), then
        the offsets, which may then be committed."""
        while True:
            try:
                self._settling.append(self._finished.get_nowait())
            except queue.Empty:
                break
        if not self._settling:
            return
        # a partition revoked meanwhile is its new owner's: nothing of it is recorded here
        current = [p for p in self._settling if self._progress.get(p.partition) is p.progress]
        records = [
            item
            for p in current
            if not any(o.cancelled for o in p.outcomes)
            for item in p.undeliverable()
        ]
        if records:
            try:
                self.undelivered.send(records)
            except BrokerUnavailable as e:
                if not self._undelivered_failing:
                    log.warning("%s; committing nothing past them until it does", e)
                self._undelivered_failing = True
                return
            self._undelivered_failing = False
            self.metrics.undelivered.inc(len(records))
        for p in current:
            self._open[p.partition].pop(p.offset, None)
            if any(o.cancelled for o in p.outcomes):
                continue  # not settled: delivered again after a restart
            self.stats.delivered += sum(o.delivered for o in p.outcomes)
            self.stats.gave_up += sum(o.gave_up for o in p.outcomes)
            p.progress.finish(p.offset)
        self._settling.clear()

    def _commit(self, everything: bool = False, only: set[Partition] | None = None) -> None:
        """Commit the partitions whose position moved (asynchronously: a lost commit only
        means repeats); `everything` commits each known position and waits (stopping,
        rebalancing)."""
        offsets = []
        for part, progress in self._progress.items():
            if only is not None and part not in only:
                continue
            position = progress.position if everything else progress.to_commit()
            if position is not None:
                offsets.append(TopicPartition(part[0], part[1], position))
        if not offsets:
            return
        try:
            if everything:
                refused = [
                    tp
                    for tp in self.consumer.commit(offsets=offsets, asynchronous=False)
                    if tp.error is not None
                ]
                if refused:
                    log.warning(
                        "commit refused for %s (those alerts may be delivered again)",
                        ", ".join(f"{tp.topic}:{tp.partition}: {tp.error}" for tp in refused),
                    )
                    return
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as e:
            if e.args and e.args[0].code() == KafkaError._NO_OFFSET:
                return
            log.warning("commit failed (those alerts may be delivered again): %s", e)
            return
        for tp in offsets:
            self._progress[(tp.topic, tp.partition)].committed = tp.offset

    def _pace(self) -> None:
        """Pause reading while too many alerts are in hand (a slow sink); resume at half."""
        in_flight = self._in_flight()
        self.metrics.in_flight.set(in_flight)
        if not self._paused and in_flight >= self.max_in_flight:
            self._paused = True
            self.consumer.pause(self.consumer.assignment())
            log.info("%d alerts in hand: reading paused until half are settled", in_flight)
        elif self._paused and in_flight <= self.max_in_flight // 2:
            self._paused = False
            self.consumer.resume(self.consumer.assignment())

    def _idle_for(self) -> float:
        """Seconds since the last alert was read, once assigned and nothing is in hand."""
        if self._last_read is None or self._in_flight():
            return 0.0
        return time.monotonic() - self._last_read

    def _open_count(self) -> int:
        return sum(len(pendings) for pendings in self._open.values())

    def _in_flight(self) -> int:
        return self._open_count() + len(self._settling)

    def _drained(self) -> bool:
        """Every assigned partition read to its end, everything settled and committed."""
        if not self._progress or self._in_flight():
            return False
        if not all(part in self._at_end for part in self._progress):
            return False
        return all(p.to_commit() is None for p in self._progress.values())

    # ---- rebalances --------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            part = (tp.topic, tp.partition)
            self._progress[part] = Progress()
            self._open[part] = {}
            if self.from_beginning and part not in self._rewound:
                tp.offset = OFFSET_BEGINNING
                self._rewound.add(part)
        consumer.assign(partitions)
        if self._last_read is None:
            self._last_read = time.monotonic()
        if self._paused:
            consumer.pause(partitions)
        self.metrics.assigned.set(len(self._progress))
        log.info(
            "assigned %s",
            ", ".join(f"{tp.topic}:{tp.partition}" for tp in partitions) or "nothing",
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Give deliveries of the revoked partitions a moment to finish, commit what is
        settled, cancel the rest (the next owner delivers them again)."""
        parts = {(tp.topic, tp.partition) for tp in partitions}
        deadline = time.monotonic() + REVOKE_GRACE_SECONDS
        while time.monotonic() < deadline and any(self._open.get(p) for p in parts):
            self._settle()
            time.sleep(0.02)
        self._settle()
        self._commit(everything=True, only=parts)
        self._forget(parts)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revoke (session lost): commit nothing."""
        self._forget({(tp.topic, tp.partition) for tp in partitions})

    def _forget(self, parts: set[Partition]) -> None:
        for part in parts:
            for pending in self._open.pop(part, {}).values():
                pending.cancelled.set()
            self._progress.pop(part, None)
            self._at_end.discard(part)
        self.metrics.assigned.set(len(self._progress))
