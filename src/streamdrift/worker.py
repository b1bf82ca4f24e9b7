"""The stateless worker: the Kafka and Redis edges around `batch.BatchLogic`.

Poll a batch, decode it, compute each model's share (batch.py), send the atomic applies,
commit, evaluate. Everything the worker knows between batches is either in Redis or a
cache of read-only data (profiles), so it can be killed at any instant and any worker
can take over any partition.

Where to read from is Redis's to say (positions.py): on every assignment, after every
fault, and whenever a fence is found lower than this worker saw it, each partition is
read from the lowest fence of the models fed by it. Kafka's commits are a lag hint.

Faults are waited out (faults.py): the partitions are paused, /readyz says why, one log
line marks each change, and when Redis and the broker answer again the worker reads on
from what Redis holds, whatever happened meanwhile (a restart from an older snapshot, a
failover, an empty Redis that was registered again).

The loop is pipelined one batch deep: a batch's applies run in Redis while the worker
consumes and decodes the next batch; they are read back, and only then is the batch
committed, before the next one's applies are computed (they need the fences the previous
ones moved).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis
from confluent_kafka import KafkaException, TopicPartition
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from streamdrift import kafka_io
from streamdrift.alerts import encode, system_alert
from streamdrift.batch import BatchLogic, ModelShare
from streamdrift.columnar import EventShapes, decode_columns
from streamdrift.config import Settings
from streamdrift.dead_letters import DeadLetterSink
from streamdrift.decode import (
    DeadLetter,
    DecodedBatch,
    DecodedLabels,
    by_topic,
    decode_labels,
    decode_predictions,
)
from streamdrift.evaluator import Evaluator
from streamdrift.faults import (
    Backoff,
    StateLost,
    classify,
)
from streamdrift.positions import FenceBook, Regression, StateRolledBack
from streamdrift.redaction import mask_url
from streamdrift.state_guard import StateGuard
from streamdrift.store import (
    Applied,
    ApplyRejected,
    ApplyRequest,
    ApplyResult,
    Fence,
    ModelChanged,
    ModelHead,
    PendingApply,
    Store,
    fault_of,
)
from streamdrift.store.client import Fault, connect, memory_full
from streamdrift.telemetry import HealthServer, WorkerMetrics
from streamdrift.topics import Incarnations, Recreated

log = logging.getLogger("streamdrift.worker")


class TopicRecreated(Exception):
    """A topic was found under a new incarnation mid-stream."""


def _resync_cause(error: Exception) -> tuple[str, str]:
    """The metric label and log detail of a re-read from Redis's fences."""
    if isinstance(error, TopicRecreated):
        return "topic_recreated", f"created again: {error}"
    if isinstance(error, StateRolledBack) and not error.regressions:
        return (
            "redis_rolled_back",
            "redis restarted (new run_id): it may hold less than was applied",
        )
    return "redis_rolled_back", f"redis lost applied writes: {error}"


#: A model whose apply keeps failing its fence is re-read this many times in one batch.
MAX_FENCE_RETRIES = 20
#: Polls never ask for fewer messages than this, however long the applies take.
MIN_BATCH = 100
#: messages asked for by the first poll while `max_apply_ms` bounds the apply script
#: (~3–4 µs of script each: ~4 ms), grown by a quarter per batch that stays under it
FIRST_BOUNDED_BATCH = 1000

#: While messages keep coming, evaluations take at most this share of the worker's time:
#: after one that took T seconds, the next waits until the worker has consumed for
#: T * (1 / share - 1). In a backlog an evaluation reads and judges every window the
#: applies touched (~0.4 s for 8 windows of 22 features with labels joining), and
#: every 2 s that took a third of the worker's time; a live stream, whose evaluations
#: read one or two windows, is not slowed down by it. Idle, or forced: no limit.
EVALUATION_SHARE = 0.1

#: Every this often (seconds): the state marker and Redis's identity are checked, quiet
#: models' fences move up, and the progress floors with them.
TICK_SECONDS = 5.0
#: Every this often: topic incarnations and Redis's eviction policy are read again.
SLOW_TICK_SECONDS = 30.0

#: /readyz asks Redis itself at most this often, with this timeout: a frozen Redis shows
#: within a second even while the main loop waits for a reply.
PROBE_EVERY_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 0.5


@dataclass(slots=True)
class _Sent:
    """One model's share of a batch, sent to Redis."""

    share: ModelShare
    pending: PendingApply
    #: seconds the send took (the wait for the reply is timed when it is read)
    sending: float


@dataclass(slots=True)
class _InFlight:
    """A batch whose applies were sent to Redis and not read yet."""

    batch: DecodedBatch
    labels: DecodedLabels
    dead: list[DeadLetter]
    last_offsets: dict[tuple[str, int], int]
    started: float
    sent: list[_Sent] = field(default_factory=list)
    #: dead letters found while computing the shares (model-level)
    new_dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class WorkerStats:
    batches: int = 0
    messages: int = 0
    counted: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    skipped_replays: int = 0
    labels_joined: int = 0
    fence_conflicts: int = 0
    #: shares worked out again because a join record changed after it was read
    join_rereads: int = 0
    alerts: int = 0
    resyncs: int = 0
    #: batches of predictions read in columns (the rest: event by event)
    columnar_batches: int = 0
    #: the longest apply script, by Redis's clock (µs)
    longest_apply_us: int = 0
    #: shares worked out ahead (`Worker.plan`) and sent as they were
    shares_ahead: int = 0
    #: shares worked out ahead that the heads read then did not hold
    shares_redone: int = 0
    #: evaluations put off to keep them within EVALUATION_SHARE of a busy worker's time
    evaluations_deferred: int = 0
    #: evaluations run, and their seconds
    evaluations: int = 0
    evaluation_seconds: float = 0.0


def tune_gc() -> None:
    """Each batch's decoded events die by reference counting; the cyclic collector only
    rescans them, and every object of the start-up, over and over (a sixth of the
    worker's time at the default thresholds). Freeze the start-up heap and collect young
    objects every 50,000 allocations instead of every 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Worker:
    """One member of the `streamdrift` consumer group."""

    def __init__(self, settings: Settings, store: Store | None = None, **consumer_overrides: Any):
        # A worker scales by processes: BLAS threads behind the batch's few small matrix
        # products (outliers, reconstruction error) only spin on another core.
        threadpool_limits(limits=1, user_api="blas")
        self.settings = settings
        self.store = store or Store(settings.redis_url)
        self.consumer = kafka_io.consumer(settings, **consumer_overrides)
        self.producer = kafka_io.producer(settings)
        self.admin = kafka_io.admin(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = WorkerMetrics(settings.metrics_max_features)
        self.evaluator = Evaluator(
            self.store, self.producer, settings.alerts_topic, self.owner, self.metrics
        )
        self.topics = Incarnations(
            self.store, self.admin, [settings.predictions_topic, settings.labels_topic]
        )
        self.logic = BatchLogic(
            settings.predictions_topic, settings.labels_topic, self.topics.field
        )
        #: each model's event shape, learned from batches decoded event by event: what
        #: lets the next batches be read in columns
        self.shapes = EventShapes()
        self.book = FenceBook()
        self.guard = StateGuard(self.store, self.book, settings.allow_eviction)
        self.dead_letters = DeadLetterSink(self.producer, settings)
        self.stats = WorkerStats()
        self.health: HealthServer | None = None
        self.fault: Fault | None = None
        self._started = False
        self._subscribed = False
        self._pending_eval: set[str] = set()
        #: (model, fence field) of owned partitions whose watermark is known to exist
        self._held: set[tuple[str, str]] = set()
        self._in_flight: _InFlight | None = None
        #: each model's revision, fences and champion as the last batch read them
        self._heads: dict[str, ModelHead] = {}
        self._last_eval: dict[str, float] = {}
        #: busy, no evaluation before this (time.monotonic; see EVALUATION_SHARE)
        self._eval_free_at = float("-inf")
        self._last_sweep = 0.0
        self._last_tick = float("-inf")
        self._last_slow_tick = float("-inf")
        self._callback_error: BaseException | None = None
        self._loss_noted = False
        #: (topic, partition) -> the highest offset read since the last seek
        self._seen_upto: dict[tuple[str, int], int] = {}
        self._stopping = False
        self._lag_checked = float("-inf")
        #: messages asked for per poll (see `_size_batches`), and the longest apply script
        #: of the batch being finished (µs)
        self.batch_limit = settings.batch_size
        if settings.max_apply_ms:
            # start small and grow: a first batch of batch_size would find out too late
            self.batch_limit = min(settings.batch_size, FIRST_BOUNDED_BATCH)
        self._longest_us = 0
        self._rereads_seen = 0
        self.metrics.batch_limit.set(self.batch_limit)
        self._probe_client: Any = None  # made on first use: a cluster's client connects
        self._probe_at = float("-inf")
        self._probe_ok = False
        tune_gc()

    # ---- lifecycle ---------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Finish the batch in hand, commit, leave the group (SIGTERM, SIGINT)."""
        self._stopping = True

    def run(
        self,
        max_seconds: float | None = None,
        install_signals: bool = True,
        until_messages: int | None = None,
    ) -> WorkerStats:
        """Consume until stopped (or for `max_seconds`, or until `until_messages` were
        read: for tests and benchmarks), then evaluate what is left and leave the group."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        deadline = time.monotonic() + max_seconds if max_seconds else None
        if self.settings.metrics_port >= 0:
            self.health = HealthServer(self.metrics, self.readiness, self.settings.metrics_port)

        def going() -> bool:
            return not self._stopping and (deadline is None or time.monotonic() < deadline)

        try:
            self._wait(self._start, going)
            log.info(
                "worker %s consuming %s and %s",
                self.owner,
                self.settings.predictions_topic,
                self.settings.labels_topic,
                extra={"metrics_port": self.health.port if self.health else None},
            )
            while going():
                if until_messages is not None and self.stats.messages >= until_messages:
                    break
                self._wait(self.turn, going)
        finally:
            self._shutdown()
        return self.stats

    def _shutdown(self) -> None:
        if self.fault is None:
            try:
                self.drain(final=True)  # the batch in flight is applied and committed
            except Exception as e:
                log.warning("last batch not committed (the next owner re-reads it): %s", e)
        else:
            self._abandon()
        if self._subscribed:
            self.consumer.close()  # leaves the group: partitions move at once
        if self.fault is None:
            try:
                # then what this worker touched, within the shutdown grace period
                self.evaluate_due(idle=False, force=True)
            except Exception as e:
                log.warning("final evaluation skipped: %s", e)
        self.producer.flush(10)
        if self.health is not None:
            self.health.close()

    def _start(self) -> None:
        """Redis answers, keeps its keys, has the state marker; the broker answers and the
        topics exist; then join the group."""
        self.store.redis.ping()
        self.guard.start()
        kafka_io.ensure_topics(self.settings)
        self.topics.refresh()
        self.consumer.subscribe(
            [self.settings.predictions_topic, self.settings.labels_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        self._subscribed = self._started = True

    # ---- faults --------------------------------------------------------------------------
    def _wait(self, step: Any, going: Any) -> None:
        """Run `step`; a fault pauses consumption until a probe passes, then the worker
        reads on from what Redis holds. Errors that are no fault (bugs) propagate."""
        try:
            step()
            return
        except (StateRolledBack, TopicRecreated) as e:
            try:
                self._resync(*_resync_cause(e))
                return
            except Exception as failed:
                error: Exception = failed
        except Exception as e:
            error = e
        fault = classify(error)
        if fault is None:
            raise error
        self._enter(fault, error)
        backoff = Backoff()
        while going():
            self._serve_group(backoff.next())
            try:
                self._probe()
                if not self._started:
                    step()
                self._leave(fault)
                return
            except Exception as e:
                next_fault = classify(e)
                if next_fault is None:
                    raise
                again = next_fault
                if again.reason != fault.reason:
                    log.warning(
                        "still waiting: %s", self._describe(again), extra={"fault": again.code}
                    )
                    self._set_fault(again)
                    self._note(e)
                    fault = again

    def _describe(self, fault: Fault) -> str:
        where = f" at {mask_url(self.settings.redis_url)}" if fault.code.startswith("redis") else ""
        return f"{fault.reason}{where} ({fault.fix})"

    def _enter(self, fault: Fault, error: BaseException) -> None:
        log.warning("pausing: %s", self._describe(fault), extra={"fault": fault.code})
        self._abandon()
        self._set_fault(fault)
        if self._subscribed:
            try:
                self.consumer.pause(self.consumer.assignment())
            except KafkaException as e:
                log.debug("pause: %s", e)
        self._note(error)

    def _note(self, error: BaseException) -> None:
        """A lost state is raised once (metric and system alert) per loss."""
        if isinstance(error, StateLost) and not self._loss_noted:
            self._loss_noted = True
            self.metrics.state_lost.set(1)
            self._system_alert(
                "state_lost",
                "redis",
                f"Redis lost streamdrift's state ({error.reason}); workers stopped consuming "
                "until the models are registered again",
                {"models": error.models, "epoch": self.guard.epoch},
            )

    def _leave(self, fault: Fault) -> None:
        """Read on from Redis's fences (this may fail: the fault is not over then)."""
        started = self.metrics.paused_since
        waited = time.monotonic() - started if started else 0.0
        if self._started:
            self._resync("fault_over", f"{fault.code} over after {waited:.1f}s")
            try:
                self.consumer.resume(self.consumer.assignment())
            except KafkaException as e:
                log.debug("resume: %s", e)
        self._set_fault(None)
        self._loss_noted = False
        self.metrics.state_lost.set(0)
        log.warning(
            "resumed after %.1fs (%s over)", waited, fault.code, extra={"fault": fault.code}
        )

    def _set_fault(self, fault: Fault | None) -> None:
        if self.fault is not None:
            self.metrics.paused.labels(self.fault.code).set(0)
        self.fault = fault
        if fault is not None:
            self.metrics.paused.labels(fault.code).set(1)
            if self.metrics.paused_since is None:
                self.metrics.paused_since = time.monotonic()
        else:
            self.metrics.paused_since = None

    def _serve_group(self, seconds: float) -> None:
        """Wait while staying a member of the group: rebalance callbacks and the poll
        interval are served, nothing is fetched (the partitions are paused)."""
        if not self._subscribed:
            time.sleep(seconds)
            return
        try:
            for m in self.consumer.consume(1, seconds):
                del m  # paused: any message that slipped through is read again later
        except KafkaException as e:
            log.debug("consume while paused: %s", e)
        self.metrics.last_loop.set(time.time())

    def _probe(self) -> None:
        """Raise what still stands in the way: Redis down, full, evicting; its state
        lost and not registered again; the broker away."""
        self.store.redis.ping()
        if memory_full(self.store.redis):
            raise redis.ResponseError("OOM used memory is at maxmemory")
        if self._started:
            self.guard.check_policy()
            self.guard.check_marker(adopt=True)
            self.admin.list_topics(timeout=5)

    def readiness(self) -> tuple[bool, str]:
        """Ready when no fault is being waited out, partitions are assigned and Redis
        answers (asked at most once a second, half a second at most)."""
        if self.fault is not None:
            return False, str(self.fault)
        if not self._started:
            return False, "starting"
        now = time.monotonic()
        if now - self._probe_at > PROBE_EVERY_SECONDS:
            try:
                if self._probe_client is None:
                    self._probe_client = connect(
                        self.settings.redis_url, timeout=PROBE_TIMEOUT_SECONDS
                    )
                self._probe_client.ping()
                self._probe_ok = True
            except Exception:
                self._probe_ok = False
            self._probe_at = now
        if not self._probe_ok:
            return False, "redis unreachable (no answer within 0.5s)"
        if self.metrics.assigned._value.get() <= 0:
            return False, "no partitions assigned (yet)"
        return True, "ok"

    # ---- where to read from ------------------------------------------------------------
    def _positions(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """Where Redis says each partition was applied up to (+1), under each topic's
        current incarnation (a topic created again since has no fences yet)."""
        self._topic_alerts(self.topics.refresh())
        self._seen_upto.clear()
        self._held.clear()
        fields = {
            (tp.topic, tp.partition): self.topics.field(tp.topic, tp.partition) for tp in partitions
        }
        models = self.store.profiles.models()
        fences = self.store.fences.all(models)
        return self.book.position(fields, fences, self.store.fences.progress())

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        try:
            offsets = self._positions(partitions)
            for tp in partitions:
                tp.offset = offsets[(tp.topic, tp.partition)]
            consumer.assign(partitions)
            if self.fault is not None:
                consumer.pause(partitions)
            log.info(
                "assigned %d partitions, reading from Redis's fences",
                len(partitions),
                extra={"offsets": {f"{tp.topic}:{tp.partition}": tp.offset for tp in partitions}},
            )
            self._compare_with_commits(consumer, offsets)
        except Exception as e:  # Redis away: hold the partitions until it is back
            consumer.assign(partitions)
            consumer.pause(partitions)
            self._callback_error = e
        self.metrics.assigned.set(len(partitions))

    @staticmethod
    def _compare_with_commits(consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
        """Say where Redis and Kafka's commits disagree: events applied beyond the commit
        (a worker died between its apply and its commit: not read again) and committed
        events Redis no longer holds (read again)."""
        try:
            committed = consumer.committed([TopicPartition(t, p) for t, p in offsets], timeout=5)
        except KafkaException as e:
            log.debug("committed offsets not read: %s", e)
            return
        ahead = behind = 0
        for tp in committed:
            redis_at, kafka_at = offsets[(tp.topic, tp.partition)], tp.offset
            if redis_at >= 0 and kafka_at >= 0:
                ahead += max(redis_at - kafka_at, 0)
                behind += max(kafka_at - redis_at, 0)
        if ahead or behind:
            log.info(
                "Redis's fences and Kafka's commits differ: %d events applied beyond the "
                "commits (not read again), %d committed events Redis does not hold (read again)",
                ahead,
                behind,
                extra={"ahead_of_commits": ahead, "behind_commits": behind},
            )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.book.release((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned.set(0)

    def _resync(self, cause: str, detail: str) -> None:
        """Read every owned partition again from what Redis holds; `cause` is a code
        (metric label), `detail` says what happened."""
        self._abandon()
        self._callback_error = None  # an assignment Redis could not position: done now
        # The positions read below are this Redis's: the tick must not take its run_id
        # for a restart still to catch up with (one resync per restart, not two).
        self.guard.restarted()
        assigned = self.consumer.assignment() if self._subscribed else []
        offsets = self._positions(assigned) if assigned else {}
        for (topic, partition), offset in offsets.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))
        self.stats.resyncs += 1
        self.metrics.resyncs.labels(cause).inc()
        log.warning(
            "reading again from Redis's fences: %s",
            detail,
            extra={"offsets": {f"{t}:{p}": o for (t, p), o in offsets.items()}},
        )

    def _hold_unread(self, models: list[str]) -> None:
        """Give each owned predictions partition of `models` without a watermark yet a
        mark of -inf (`Watermarks.hold`): it holds the model's windows back until read.
        Written before the batch's applies raise the marks of the partitions it reads,
        so that no evaluator ever sees those without the hold beside them. Once per model
        and partition while owned: a round trip on a model's first batch only."""
        topic = self.settings.predictions_topic
        owned = [f for (t, _), f in self.book.owned.items() if t == topic]
        hold: dict[str, list[str]] = {}
        for model in models:
            fields = [f for f in owned if (model, f) not in self._held]
            if fields:
                hold[model] = fields
                self._held.update((model, f) for f in fields)
        if hold:
            self.store.watermarks.hold(hold, time.time())

    def _abandon(self) -> None:
        """Drop the batch in flight without committing it: its applies ran entirely or
        not at all, and the fences sort out which when it is read again."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        for s in flight.sent:
            try:
                s.pending.conn.disconnect()
                s.pending.pool.release(s.pending.conn)
            except Exception as e:
                log.debug("dropping a pending apply: %s", e)

    # ---- periodic duties ---------------------------------------------------------------
    def _tick(self) -> None:
        """Between batches: the state marker, Redis's identity, quiet models' fences."""
        now = time.monotonic()
        if now - self._last_tick < TICK_SECONDS:
            return
        self._last_tick = now
        self.guard.check_marker()
        if self.guard.restarted():
            raise StateRolledBack([])  # a restarted Redis may hold less than was applied
        models = sorted(self.guard.registered)
        moves = self.book.idle_moves(models)
        if moves:
            refused, gone = self.store.fences.advance(moves)
            if gone:
                raise StateLost(f"models {', '.join(gone)} have no profile any more", gone)
            regressions = self.book.settle(moves, refused)
            if regressions:
                raise StateRolledBack(regressions)
        floors = {f: o for f, o in self.book.applied.items() if o >= 0}
        if not self.store.fences.advance_progress(floors, self.guard.epoch or ""):
            raise StateLost("its state marker changed")
        if now - self._last_slow_tick >= SLOW_TICK_SECONDS:
            self._last_slow_tick = now
            self.guard.check_policy()
            changes = self.topics.refresh()
            if changes:
                self._topic_alerts(changes)
                raise TopicRecreated(", ".join(c.topic for c in changes))
            self._check_resets()

    def _check_resets(self) -> None:
        """For brokers without topic ids: a fence beyond the end of its partition's log
        means the log was reset under it (the topic was recreated)."""
        for tp in self.consumer.assignment() if self._subscribed else []:
            if self.topics.has_broker_ids(tp.topic):
                continue
            f = self.topics.field(tp.topic, tp.partition)
            upto = max((o for (m, ff), o in self.book.seen.items() if ff == f), default=-1)
            _, high = self.consumer.get_watermark_offsets(tp, timeout=5)
            if upto >= high > -1:
                change = self.topics.reset(tp.topic, f"fence {upto} beyond the log's end {high}")
                if change is not None:
                    self._topic_alerts([change])
                raise TopicRecreated(f"{tp.topic}: its log was reset")

    def _topic_alerts(self, changes: list[Recreated]) -> None:
        for c in changes:
            self.metrics.topic_recreated.inc()
            self._system_alert(
                "topic_recreated",
                c.topic,
                f"topic {c.topic} was created again ({c.why}); its events from offset 0 "
                "are counted as new, under fences of their own",
                {"old_incarnation": c.old, "new_incarnation": c.new},
            )

    def _system_alert(self, kind: str, subject: str, message: str, context: dict[str, Any]) -> None:
        alert = system_alert(kind, subject, message, {**context, "worker": self.owner})
        log.error(message, extra={"alert_id": alert.alert_id, "kind": kind})
        try:
            self.producer.produce(
                self.settings.alerts_topic,
                key=b"streamdrift",
                value=encode(alert),
                headers=[("alert_id", alert.alert_id.encode())],
            )
            self.producer.poll(0)
        except (BufferError, KafkaException) as e:
            log.warning("ops alert not sent: %s", e)

    # ---- one turn ----------------------------------------------------------------------
    def turn(self) -> None:
        """Poll, decode and plan this batch's shares, read the previous batch's applies
        and commit it, evaluate, send this batch's applies (the planned shares that the
        heads read then still hold, the others worked out again)."""
        self.metrics.last_loop.set(time.time())
        self._update_lag()
        messages = self.consumer.consume(self.batch_limit, self.settings.poll_timeout_seconds)
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise error
        # The previous batch's applies run in Redis while this one is decoded and its
        # shares worked out against the fences those applies leave.
        decoded = self.decode(messages) if messages else None
        planned = self.plan(decoded) if decoded is not None else {}
        drained = self.drain()
        self._tick()
        self.evaluate_due(idle=not (messages or drained))
        if decoded is not None:
            self.launch(decoded, planned)

    def process(self, messages: list[Any]) -> None:
        """Apply a polled batch to Redis, then commit its offsets and wait for the
        broker (not pipelined)."""
        self.launch(self.decode(messages))
        self.drain(final=True)

    def apply(self, messages: list[Any]) -> dict[tuple[str, int], int]:
        """Everything but the commit, not pipelined. Returns the last offset per
        (topic, partition)."""
        if not self.topics.current:
            self.topics.refresh()
            self.guard.epoch = self.store.profiles.ensure_epoch()
        flight = self._begin(self.decode(messages), time.perf_counter())
        return self._finish(flight) if flight is not None else {}

    def decode(self, messages: list[Any]) -> tuple[DecodedBatch, DecodedLabels]:
        """Predictions and labels of a polled batch, decoded (reads no state)."""
        label_msgs, messages = by_topic(messages, self.settings.labels_topic)
        columnar = (
            partial(
                decode_columns,
                shapes=self.shapes,
                max_event_bytes=self.settings.max_event_bytes,
            )
            if self.settings.columnar_decode
            else None
        )
        batch = decode_predictions(messages, self.settings.max_event_bytes, columnar)
        if batch.by_model:  # a poll of labels only says nothing of the next predictions
            self.shapes.recent = tuple(sorted(batch.by_model))
        if any(e.arrays is not None for e in batch.by_model.values()):
            self.stats.columnar_batches += 1
        return batch, decode_labels(label_msgs, self.settings.max_event_bytes)

    def plan(self, decoded: tuple[DecodedBatch, DecodedLabels]) -> dict[str, ModelShare]:
        """Each model's share of a decoded batch, worked out without Redis against the
        heads the last read gave, with the fences of the batch in flight moved as its
        applies will leave them: the sketch runs while Redis applies the batch before.
        `_begin` sends a share as it is only if the heads it reads then agree
        (`ModelShare.holds`); a model not read yet, or whose profile is not at hand, is
        left to `_begin`."""
        batch, labels = decoded
        moved: dict[str, list[Fence]] = {}
        if self._in_flight is not None:
            for sent in self._in_flight.sent:
                moved[sent.share.model] = sent.share.request.fences
        dead = batch.dead + labels.dead
        last_offsets = {**batch.last_offsets, **labels.last_offsets}
        out = {}
        for model in batch.by_model.keys() | labels.by_model.keys():
            head = self._heads.get(model)
            profile = self.guard.profiles.get(model)
            if head is None or profile is None or profile.revision != head.revision:
                continue
            offsets = dict(head.offsets)
            offsets.update((f.field, f.new) for f in moved.get(model, ()))
            ahead = ModelHead(head.revision, offsets, head.champion)
            out[model] = self.logic.share(batch, labels, model, ahead, profile, dead, last_offsets)
        return out

    def launch(
        self,
        decoded: tuple[DecodedBatch, DecodedLabels],
        planned: dict[str, ModelShare] | None = None,
    ) -> None:
        """Send a decoded batch's applies to Redis without waiting for them; `drain`
        reads them and commits. One batch is in flight at a time."""
        self.drain()
        self._in_flight = self._begin(decoded, time.perf_counter(), planned or {})

    def drain(self, final: bool = False) -> bool:
        """Read the applies of the batch in flight, then commit its offsets. Returns
        whether there was one. The commit is only a lag hint (Redis's fences say where
        to read from), so it does not wait for the broker, except the `final` one."""
        flight = self._in_flight
        if flight is None:
            return False
        last_offsets = self._finish(flight)
        self._in_flight = None
        if last_offsets:
            self.book.drained({self.topics.field(t, p): o for (t, p), o in last_offsets.items()})
            try:
                offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last_offsets.items()]
                if final:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                else:
                    self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as e:
                # e.g. the partitions moved in a rebalance; Redis is right either way
                log.info("offset commit failed (a lag hint only): %s", e)
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(time.perf_counter() - flight.started)
        return True

    def _begin(
        self,
        decoded: tuple[DecodedBatch, DecodedLabels],
        started: float,
        planned: dict[str, ModelShare] | None = None,
    ) -> _InFlight | None:
        """Compute every model's share and send its apply; dead letters that belong to no
        model are sent now (they must be out before the commit)."""
        batch, labels = decoded
        if not batch.messages and not labels.messages:
            return None
        dead = batch.dead + labels.dead
        models = sorted(
            set(batch.by_model)
            | set(labels.by_model)
            | {d.model_id for d in dead if d.model_id is not None}
        )
        epoch, heads = self.store.fences.heads(models)
        self.guard.check_heads(epoch, heads)
        self._heads.update(heads)
        last_offsets = {**batch.last_offsets, **labels.last_offsets}
        self._check_order(last_offsets)
        flight = _InFlight(batch, labels, dead, last_offsets, started)
        unregistered: set[str] = set()
        shares: list[ModelShare] = []
        for model in models:
            head = heads[model]
            profile = self.guard.profile(model, head.revision)
            if profile is None:
                unregistered.add(model)
                dead += self.logic.unregistered(batch, labels, model)
                continue
            share = (planned or {}).get(model)
            if share is not None and share.holds(head):
                self.stats.shares_ahead += 1
            else:
                if share is not None:
                    self.stats.shares_redone += 1
                share = self.logic.share(batch, labels, model, head, profile, dead, last_offsets)
            if self.settings.columnar_decode and share.good.arrays is None:
                self.shapes.learn(model, share.good, profile)
            self.dead_letters.send(share.dead)
            shares.append(share)
        # every model's join records are read before the first apply is sent: a read
        # sent after it would wait for it in Redis
        prepared = []
        for share in shares:
            reading = time.perf_counter()
            ready = self.store.applies.prepare(share.request)
            prepared.append((share, ready, time.perf_counter() - reading))
        self._hold_unread([share.model for share in shares])
        for share, ready, took in prepared:
            sending = time.perf_counter()
            pending = self.store.applies.send(ready)
            flight.sent.append(_Sent(share, pending, time.perf_counter() - sending + took))
        self.store.counters.count_unrouted(
            Counter(d.reason for d in dead if d.model_id is None or d.model_id in unregistered)
        )
        self.dead_letters.send(dead)
        return flight

    def _check_order(self, last_offsets: dict[tuple[str, int], int]) -> None:
        """Offsets of a partition only rise between two reads of it; a batch that ends
        at or below what was read before (with no seek in between) is a log that started
        again: is the topic a new one?"""
        back = [tp for tp, o in last_offsets.items() if o <= self._seen_upto.get(tp, -1)]
        self._seen_upto.update(last_offsets)
        if back:
            changes = self.topics.refresh()
            if changes:
                self._topic_alerts(changes)
                raise TopicRecreated(", ".join(c.topic for c in changes))

    def _finish(self, flight: _InFlight) -> dict[tuple[str, int], int]:
        """Read the applies sent by `_begin`; a model whose fence moved meanwhile is
        recomputed and applied again. Returns the last offset per (topic, partition)."""
        batch, labels = flight.batch, flight.labels
        new_dead: list[DeadLetter] = []
        self._longest_us = 0
        for s in flight.sent:
            waiting = time.perf_counter()
            try:
                result = self.store.applies.read(s.pending)
            except ApplyRejected as e:
                new_dead += self._refused(s.share, str(e))
                continue
            # Redis's time only: the send and the wait for the reply, not the next batch
            # consumed (perhaps after a quiet poll) and decoded while the script ran
            self.metrics.apply_seconds.observe(s.sending + time.perf_counter() - waiting)
            if self._applied(s.share, result):
                new_dead += s.share.dead
                continue
            new_dead += self._apply_model(batch, labels, s.share.model, flight)
        dead = flight.dead + new_dead
        rereads = self.store.applies.record_rounds - self._rereads_seen
        if rereads:
            self._rereads_seen += rereads
            self.stats.join_rereads += rereads
            self.metrics.join_rereads.inc(rereads)
        if self.store.applies.records.changed:
            self.metrics.join_records_held.set(self.store.applies.records.held_ids())
        self.stats.batches += 1
        self.stats.messages += batch.messages + labels.messages
        self.stats.dead.update(d.reason for d in dead)
        m = self.metrics
        m.events.labels(self.settings.predictions_topic).inc(batch.messages)
        m.bytes.labels(self.settings.predictions_topic).inc(batch.bytes_in)
        if labels.messages:
            m.events.labels(self.settings.labels_topic).inc(labels.messages)
            m.bytes.labels(self.settings.labels_topic).inc(labels.bytes_in)
        for reason, n in Counter(d.reason for d in dead).items():
            m.dead_letters.labels(reason).inc(n)
        self._size_batches(batch.messages + labels.messages)
        return flight.last_offsets

    def _size_batches(self, messages: int) -> None:
        """Ask for fewer messages per poll once a model's apply script runs longer than
        0.8 `max_apply_ms` (Redis runs a script without serving anyone else: every other
        worker and model waits), in proportion to what it took, aiming at 0.6; grow back
        by a quarter per full batch under half of it. The band between keeps the polls
        from swinging across the bound on a machine whose scripts' times vary by half
        from one batch to the next. A script's time grows with the messages of its batch
        (~3–4 µs each: a record checked and written, a prediction's deltas) and with the
        windows it touches (~2 ms each for 22 features and a few slices): a batch spread
        over many windows stays long however small."""
        target = self.settings.max_apply_ms * 1000.0
        if not target or not messages:
            return
        limit = self.batch_limit
        if self._longest_us > 0.8 * target:
            limit = max(MIN_BATCH, int(messages * 0.6 * target / self._longest_us))
        elif messages >= self.batch_limit and self._longest_us < 0.5 * target:
            limit = int(self.batch_limit * 1.25) + 1
        limit = min(limit, self.settings.batch_size)
        if limit != self.batch_limit:
            self.batch_limit = limit
            self.metrics.batch_limit.set(limit)

    def _apply_model(
        self, batch: DecodedBatch, labels: DecodedLabels, model: str, flight: _InFlight
    ) -> list[DeadLetter]:
        """Apply one model's share, waiting for Redis, recomputing while another worker
        moves the fence; returns its new dead letters."""
        for _ in range(MAX_FENCE_RETRIES):
            epoch, heads = self.store.fences.heads([model])
            self.guard.check_heads(epoch, heads)
            head = heads[model]
            profile = self.guard.profile(model, head.revision)
            if profile is None:
                gone = self.logic.unregistered(batch, labels, model)
                self.dead_letters.send(gone)
                return gone
            share = self.logic.share(
                batch, labels, model, head, profile, flight.dead, flight.last_offsets
            )
            self.dead_letters.send(share.dead)
            sent_at = time.perf_counter()
            try:
                result = self.store.applies.apply(share.request)
            except ApplyRejected as e:
                return self._refused(share, str(e))
            self.metrics.apply_seconds.observe(time.perf_counter() - sent_at)
            if self._applied(share, result):
                return share.dead
        raise RuntimeError(f"offset fence of model {model} kept moving; another worker owns it")

    def _applied(self, share: ModelShare, result: ApplyResult) -> bool:
        """Count an apply that held its fences; log one that did not (to be recomputed)."""
        if share.skipped:
            self.stats.skipped_replays += share.skipped
            self.metrics.replayed.inc(share.skipped)
        if isinstance(result, ModelChanged):
            if result.revision is None:
                raise StateLost(f"model {share.model} has no profile any more", [share.model])
            log.info(
                "model %s: registered again (revision %d), recomputing",
                share.model,
                result.revision,
                extra={"model_id": share.model},
            )
            return False
        if isinstance(result, Applied):
            self._longest_us = max(self._longest_us, result.script_us)
            self.stats.longest_apply_us = max(self.stats.longest_apply_us, result.script_us)
            self.metrics.script_seconds.observe(result.script_us / 1e6)
            self.book.moved(share.model, share.request.fences)
            self.stats.counted += share.counted
            self.stats.labels_joined += result.stats.joined
            self.metrics.counted.inc(share.counted)
            self.metrics.labels_joined.inc(result.stats.joined)
            self._pending_eval.add(share.model)
            if share.skipped:
                log.info(
                    "model %s: %d re-delivered events already counted, skipped",
                    share.model,
                    share.skipped,
                    extra={"model_id": share.model, "skipped": share.skipped},
                )
            return True
        for f in share.request.fences:
            if f.field == result.field and result.current < f.expected:
                regression = Regression(share.model, f.field, f.expected, result.current)
                raise StateRolledBack([regression])
        self.stats.fence_conflicts += 1
        self.metrics.fence_conflicts.inc()
        log.info(
            "model %s: fence moved by another worker, recomputing",
            share.model,
            extra={"model_id": share.model},
        )
        return False

    def _refused(self, share: ModelShare, why: str) -> list[DeadLetter]:
        """The apply script refused this share (nothing was written): a value the checks
        let through. Its events go to the DLQ under `apply_refused`, to be replayed once
        fixed, and its fences move past them so the partition goes on."""
        log.error("%s; the model's events of this batch go to the dead-letter topic", why)
        dead = [
            self.logic.dead_letter(cols, i, "apply_refused", why, share.model)
            for cols in (share.events, share.labels)
            for i in range(len(cols))
        ]
        self.dead_letters.send(dead)
        r = share.request
        fences_only = ApplyRequest(r.profile, r.fences, {}, Counter({"apply_refused": len(dead)}))
        fences_only.now = r.now
        result = self.store.applies.apply(fences_only)
        if isinstance(result, Applied):
            self.book.moved(share.model, r.fences)
        return dead

    # ---- evaluation --------------------------------------------------------------------
    def evaluate_due(self, idle: bool, force: bool = False) -> None:
        """Evaluate models touched by this worker when their interval has passed, the
        longest waiting first, within `EVALUATION_SHARE` of a busy worker's time; and
        sweep all models now and then (every 5 s when idle, 30 s when busy) for windows
        other workers left dirty, episodes to resolve and models gone silent."""
        now = time.monotonic()
        # a busy worker sweeps too, less often: a silent model's freshness alert must
        # not wait for the other models' traffic to stop
        if force or now - self._last_sweep > (5.0 if idle else 30.0):
            self._last_sweep = now
            self._pending_eval.update(self.store.profiles.models())
        never = float("-inf")
        for model in sorted(self._pending_eval, key=lambda m: (self._last_eval.get(m, never), m)):
            if not (force or idle) and time.monotonic() < self._eval_free_at:
                self.stats.evaluations_deferred += 1
                break  # consume first; the models left wait their turn
            cached = self.guard.profiles.get(model)
            interval = cached.config.evaluation_interval_seconds if cached else 0.0
            if not force and now - self._last_eval.get(model, never) < interval:
                continue
            revision = self.store.fences.heads([model])[1][model].revision
            profile = self.guard.profile(model, revision)
            if profile is None:
                self._pending_eval.discard(model)
                continue
            self._last_eval[model] = now
            self._pending_eval.discard(model)
            started = time.perf_counter()
            try:
                alerts = self.evaluator.evaluate(profile)
            except Exception as e:
                if fault_of(e) is not None:
                    raise  # Redis is away: waited out like any other fault
                # one model's broken state must not stop the others (or the consuming)
                log.exception("evaluation of %s failed", model, extra={"model_id": model})
                continue
            took = time.perf_counter() - started
            self.metrics.evaluation_seconds.observe(took)
            self.stats.evaluations += 1
            self.stats.evaluation_seconds += took
            self._eval_free_at = time.monotonic() + took * (1.0 / EVALUATION_SHARE - 1.0)
            self.stats.alerts += len(alerts)
            for a in alerts:
                self.metrics.alerts.labels(a.type).inc()
                log.warning(
                    "alert %s %s %s %s=%.3f",
                    a.model_id,
                    a.type,
                    a.feature,
                    a.statistic,
                    a.value,
                    extra={
                        "model_id": a.model_id,
                        "alert_id": a.alert_id,
                        "model_version": a.model_version,
                    },
                )

    def _update_lag(self) -> None:
        """Consumer lag per partition, from the high watermarks of the last fetch, every 10 s."""
        now = time.monotonic()
        if now - self._lag_checked < 10.0 or not self._subscribed:
            return
        self._lag_checked = now
        try:
            parts = self.consumer.assignment()
            self.metrics.assigned.set(len(parts))
            self.metrics.lag.clear()  # partitions moved to other workers are not ours to report
            for tp in self.consumer.position(parts) if parts else []:
                # the watermarks of the last fetch: no broker round trip in the loop
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                lag = high - (tp.offset if tp.offset >= 0 else low)
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))
        except Exception as e:  # lag is a gauge, not a reason to stop consuming
            log.debug("consumer lag not read: %s", e)
