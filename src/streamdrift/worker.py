"""The stateless worker: poll a batch, decode, sketch, apply atomically, commit, evaluate.

Everything the worker knows between batches is either in Redis or a cache of read-only
data (reference profiles), so it can be killed at any instant and any worker can take
over any partition. Exactly-once state comes from the offset fences of `Store.apply_batch`:
before computing a model's deltas the worker drops events at or below the model's applied
offset, and the apply itself fails (writing nothing) if that offset moved meanwhile.
Batch boundaries after a restart differ from the ones before it, so the fence filters
events one by one rather than comparing whole batches.

The loop is pipelined one batch deep: a batch's applies are sent to Redis and run there
while the worker consumes and decodes the next batch; they are read back, and only then
is the batch committed, before the next one's applies are computed (which need the
fences the previous ones moved).
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
from typing import Any

import numpy as np
from confluent_kafka import KafkaException, TopicPartition

from streamdrift import kafka_io
from streamdrift.config import Settings
from streamdrift.decode import (
    DeadLetter,
    DecodedBatch,
    DecodedLabels,
    ModelEvents,
    ModelLabels,
    decode_labels,
    decode_predictions,
)
from streamdrift.evaluator import Evaluator
from streamdrift.join import join_delta
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch, sketch_batch
from streamdrift.store import (
    Applied,
    ApplyRequest,
    ApplyResult,
    Fence,
    JoinDelta,
    ModelHead,
    PendingApply,
    Store,
    fence_field,
)
from streamdrift.telemetry import HealthServer, WorkerMetrics

log = logging.getLogger("streamdrift.worker")

#: Dead letters larger than this keep only this much of the event (and its size).
DLQ_EXCERPT_BYTES = 256 * 1024

#: A model whose apply keeps failing its fence is re-read this many times in one batch.
MAX_FENCE_RETRIES = 20


@dataclass(slots=True)
class _Attempt:
    """One model's share of a batch, computed against the fences it was read with."""

    model: str
    profile: ReferenceProfile
    fences: list[Fence]
    windows: dict[int, WindowSketch]
    invalid: Counter[str]
    join: JoinDelta | None
    counted: int
    new_dead: list[DeadLetter]
    pending: PendingApply | None = None
    sent_at: float = 0.0

    def request(self) -> ApplyRequest:
        return ApplyRequest(
            self.profile, self.fences, self.windows, self.invalid, self.join, time.time()
        )


@dataclass(slots=True)
class _InFlight:
    """A batch whose applies were sent to Redis and not read yet."""

    batch: DecodedBatch
    labels: DecodedLabels
    dead: list[DeadLetter]
    last_offsets: dict[tuple[str, int], int]
    started: float
    attempts: list[_Attempt] = field(default_factory=list)
    #: dead letters sent with the applies (model-level)
    sent: list[DeadLetter] = field(default_factory=list)


@dataclass
class WorkerStats:
    batches: int = 0
    messages: int = 0
    counted: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    skipped_replays: int = 0
    labels_joined: int = 0
    fence_conflicts: int = 0
    alerts: int = 0


def _quality_key(reason: str, detail: str) -> str:
    """`wrong_type:amount` for a wrong-typed feature value, else the bare reason."""
    if detail.startswith("features."):
        return f"{reason}:{detail[len('features.') :].split(' ', 1)[0]}"
    return reason


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
        self.settings = settings
        self.store = store or Store(settings.redis_url)
        self.store.ping()
        kafka_io.ensure_topics(settings)
        self.consumer = kafka_io.consumer(settings, **consumer_overrides)
        self.producer = kafka_io.producer(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.evaluator = Evaluator(self.store, self.producer, settings.alerts_topic, self.owner)
        self.profiles: dict[str, ReferenceProfile] = {}
        self.stats = WorkerStats()
        self._pending_eval: set[str] = set()
        self._in_flight: _InFlight | None = None
        self._last_eval: dict[str, float] = {}
        self._last_sweep = 0.0
        self._stopping = False
        self.metrics = WorkerMetrics()
        self.health: HealthServer | None = None
        self._lag_checked = float("-inf")
        self._redis_checked = float("-inf")
        self._redis_ok = False
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
        self.consumer.subscribe([self.settings.predictions_topic, self.settings.labels_topic])
        deadline = time.monotonic() + max_seconds if max_seconds else None
        health = None
        if self.settings.metrics_port >= 0:
            health = HealthServer(self.metrics, self.readiness, self.settings.metrics_port)
        self.health = health
        log.info(
            "worker %s consuming %s and %s",
            self.owner,
            self.settings.predictions_topic,
            self.settings.labels_topic,
            extra={"metrics_port": health.port if health else None},
        )
        try:
            while not self._stopping and (deadline is None or time.monotonic() < deadline):
                self.metrics.last_loop.set(time.time())
                self._update_lag()
                if until_messages is not None and self.stats.messages >= until_messages:
                    break
                messages = self.consumer.consume(
                    self.settings.batch_size, self.settings.poll_timeout_seconds
                )
                # The previous batch's applies run in Redis while this one is decoded.
                decoded = self.decode(messages) if messages else None
                drained = self.drain()
                self.evaluate_due(idle=not (messages or drained))
                if decoded is not None:
                    self.launch(decoded)
        finally:
            try:
                self.drain()  # the batch in flight is applied and committed, not replayed
            except Exception as e:
                log.warning("last batch not committed (the next owner replays it): %s", e)
            self.consumer.close()  # leaves the group: partitions move at once
            try:
                # then what this worker touched, within the shutdown grace period
                self.evaluate_due(idle=False, force=True)
            except Exception as e:
                log.warning("final evaluation skipped: %s", e)
            self.producer.flush(10)
            if health is not None:
                health.close()
        return self.stats

    def readiness(self) -> tuple[bool, str]:
        """Ready when partitions are assigned and Redis answers (checked at most every 5 s)."""
        now = time.monotonic()
        if now - self._redis_checked > 5.0:
            try:
                self.store.redis.ping()
                self._redis_ok = True
            except Exception:
                self._redis_ok = False
            self._redis_checked = now
        if not self._redis_ok:
            return False, "redis unreachable"
        if self.metrics.assigned._value.get() <= 0:
            return False, "no partitions assigned (yet)"
        return True, "ok"

    def _update_lag(self) -> None:
        """Consumer lag per partition, from the high watermarks of the last fetch, every 10 s."""
        now = time.monotonic()
        if now - self._lag_checked < 10.0:
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

    # ---- one batch ---------------------------------------------------------------------
    def process(self, messages: list[Any]) -> None:
        """Apply a polled batch to Redis, then commit its offsets (not pipelined)."""
        self.launch(self.decode(messages))
        self.drain()

    def apply(self, messages: list[Any]) -> dict[tuple[str, int], int]:
        """Everything but the commit, not pipelined. Returns the last offset per
        (topic, partition)."""
        flight = self._begin(self.decode(messages), time.perf_counter())
        return self._finish(flight) if flight is not None else {}

    def decode(self, messages: list[Any]) -> tuple[DecodedBatch, DecodedLabels]:
        """Predictions and labels of a polled batch, decoded (reads no state)."""
        label_topic = self.settings.labels_topic
        if any(m.topic() == label_topic for m in messages):
            label_msgs = [m for m in messages if m.topic() == label_topic]
            messages = [m for m in messages if m.topic() != label_topic]
        else:
            label_msgs = []
        return (
            decode_predictions(messages, self.settings.max_event_bytes),
            decode_labels(label_msgs, self.settings.max_event_bytes),
        )

    def launch(self, decoded: tuple[DecodedBatch, DecodedLabels]) -> None:
        """Send a decoded batch's applies to Redis without waiting for them; `drain`
        reads them and commits. One batch is in flight at a time."""
        self.drain()
        self._in_flight = self._begin(decoded, time.perf_counter())

    def drain(self) -> bool:
        """Read the applies of the batch in flight, then commit its offsets. Returns
        whether there was one."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return False
        last_offsets = self._finish(flight)
        if last_offsets:
            try:
                self.consumer.commit(
                    offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last_offsets.items()],
                    asynchronous=False,
                )
            except KafkaException as e:
                # e.g. the partitions moved in a rebalance; Redis is right either way (the
                # fences), and the new owner re-reads from the last commit
                log.warning("offset commit failed: %s", e)
            log.debug(
                "batch committed",
                extra={"offsets": {f"{t}:{p}": o for (t, p), o in last_offsets.items()}},
            )
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(time.perf_counter() - flight.started)
        return True

    def _begin(
        self, decoded: tuple[DecodedBatch, DecodedLabels], started: float
    ) -> _InFlight | None:
        """Compute every model's deltas and send their applies; dead letters that belong
        to no model are sent now (they must be out before the commit)."""
        batch, labels = decoded
        if not batch.messages and not labels.messages:
            return None
        dead = batch.dead + labels.dead
        models = set(batch.by_model) | set(labels.by_model) | {d.model_id for d in dead}
        models.discard(None)  # type: ignore[arg-type]
        _, heads = self.store.fences.heads(sorted(models))  # type: ignore[arg-type]
        last_offsets = {**batch.last_offsets, **labels.last_offsets}
        flight = _InFlight(batch, labels, dead, last_offsets, started)
        for model in sorted(models):  # type: ignore[type-var]
            head = heads[model]
            if head.revision is None:
                dead += self._unregistered(batch, labels, model)
                continue
            attempt = self._attempt(batch, labels, model, head, dead, flight.last_offsets)
            if isinstance(attempt, list):
                flight.sent += attempt
                continue
            attempt.sent_at = time.perf_counter()
            attempt.pending = self.store.applies.send(attempt.request())
            flight.attempts.append(attempt)
        unrouted = Counter(
            d.reason
            for d in dead
            if d.model_id is None or heads.get(d.model_id, ModelHead(None, {})).revision is None
        )
        self.store.counters.count_unrouted(unrouted)
        self._send_dead_letters(dead)
        return flight

    def _finish(self, flight: _InFlight) -> dict[tuple[str, int], int]:
        """Read the applies sent by `_begin`; a model whose fence moved meanwhile is
        recomputed and applied again. Returns the last offset per (topic, partition)."""
        batch, labels = flight.batch, flight.labels
        for a in flight.attempts:
            result = self.store.applies.read(a.pending)  # type: ignore[arg-type]
            self.metrics.apply_seconds.observe(time.perf_counter() - a.sent_at)
            if self._applied(a, result):
                flight.sent += a.new_dead
                continue
            head = self.store.fences.heads([a.model])[1][a.model]
            flight.sent += self._apply_model(
                batch, labels, a.model, head, flight.dead, flight.last_offsets
            )
        dead = flight.dead + flight.sent
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
        return flight.last_offsets

    def _profile(self, model: str, revision: int) -> ReferenceProfile | None:
        cached = self.profiles.get(model)
        if cached is None or cached.revision != revision:
            cached = self.store.profiles.load(model)
            if cached is None:
                return None
            self.profiles[model] = cached
        return cached

    def _unregistered(self, batch: DecodedBatch, labels: DecodedLabels, model: str):
        why = f"model '{model}' has no reference profile: run streamdrift register"
        out = []
        for cols in (batch.by_model.pop(model, None), labels.by_model.pop(model, None)):
            if cols is None:
                continue
            for i in range(len(cols)):
                out.append(self._dead(cols, i, "unregistered_model", why, model))
        return out

    def _apply_model(
        self,
        batch: DecodedBatch,
        labels: DecodedLabels,
        model: str,
        head: ModelHead,
        dead: list[DeadLetter],
        last_offsets: dict[tuple[str, int], int],
    ) -> list[DeadLetter]:
        """Apply one model's share of the batch, waiting for Redis, recomputing while
        another worker moves the fence; returns its new dead letters."""
        for _ in range(MAX_FENCE_RETRIES):
            attempt = self._attempt(batch, labels, model, head, dead, last_offsets)
            if isinstance(attempt, list):
                return attempt
            attempt.sent_at = time.perf_counter()
            result = self.store.applies.apply(attempt.request())
            self.metrics.apply_seconds.observe(time.perf_counter() - attempt.sent_at)
            if self._applied(attempt, result):
                return attempt.new_dead
            head = self.store.fences.heads([model])[1][model]
        raise RuntimeError(f"offset fence of model {model} kept moving; another worker owns it")

    def _attempt(
        self,
        batch: DecodedBatch,
        labels: DecodedLabels,
        model: str,
        head: ModelHead,
        dead: list[DeadLetter],
        last_offsets: dict[tuple[str, int], int],
    ) -> _Attempt | list[DeadLetter]:
        """One model's deltas against its fences as `head` has them, its new dead letters
        sent (before the apply: a crash may repeat them, never lose them). A model
        deleted meanwhile gives its events back as dead letters, like an unregistered one."""
        all_events = batch.by_model.get(model, ModelEvents())
        all_labels = labels.by_model.get(model, ModelLabels())
        model_dead = [d for d in dead if d.model_id == model]
        sources = (
            {(self.settings.predictions_topic, p) for p in all_events.partitions}
            | {(self.settings.labels_topic, p) for p in all_labels.partitions}
            | {(d.topic, d.partition) for d in model_dead}
        )
        profile = self._profile(model, head.revision or 0)
        if profile is None:
            gone = self._unregistered(batch, labels, model)
            self._send_dead_letters(gone)
            return gone
        applied = {tp: head.offsets.get(fence_field(tp[0], '-', tp[1]), -1) for tp in sources}
        events = self._unapplied(all_events, self.settings.predictions_topic, applied, model)
        label_events = self._unapplied(all_labels, self.settings.labels_topic, applied, model)
        events, new_dead = self._split_late(events, profile)
        windows, bad, good, outputs = sketch_batch(events, profile)
        new_dead += [self._dead(events, b.index, b.reason, b.detail, model) for b in bad]
        self._count_bad_in_windows(windows, events, bad, profile)
        join, join_dead = join_delta(
            profile, good, outputs, label_events, self.settings.labels_topic
        )
        new_dead += join_dead
        invalid = Counter(
            d.reason for d in model_dead if d.offset > applied[(d.topic, d.partition)]
        )
        invalid.update(_quality_key(d.reason, d.detail) for d in new_dead)
        # A fence never moves back: a replayed batch can end below what is applied.
        fences = [
            Fence(fence_field(tp[0], '-', tp[1]), applied[tp], max(applied[tp], last_offsets[tp]))
            for tp in sorted(sources)
        ]
        self._send_dead_letters(new_dead)
        return _Attempt(model, profile, fences, windows, invalid, join, len(good), new_dead)

    def _applied(self, attempt: _Attempt, result: ApplyResult) -> bool:
        """Count an apply that held its fences; log one that did not (to be recomputed)."""
        if isinstance(result, Applied):
            self.stats.counted += attempt.counted
            self.stats.labels_joined += result.stats.joined
            self.metrics.counted.inc(attempt.counted)
            self.metrics.labels_joined.inc(result.stats.joined)
            self._pending_eval.add(attempt.model)
            return True
        self.stats.fence_conflicts += 1
        self.metrics.fence_conflicts.inc()
        log.info(
            "model %s: fence moved by another worker, recomputing",
            attempt.model,
            extra={"model_id": attempt.model},
        )
        return False

    @staticmethod
    def _count_bad_in_windows(
        windows: dict[int, WindowSketch], events: ModelEvents, bad: list, profile: ReferenceProfile
    ) -> None:
        """Wrong-typed feature values counted in their event's window too ("since when")."""
        width = profile.config.window_seconds
        for b in bad:
            start = int(events.timestamps[b.index] // width * width)
            window = windows.get(start)
            if window is None:
                window = windows[start] = WindowSketch(start=start)
            window.invalid[_quality_key(b.reason, b.detail)] += 1

    def _unapplied(
        self, events: Any, topic: str, applied: dict[tuple[str, int], int], model: str
    ) -> Any:
        """The events above the model's offset fence: re-deliveries of events already
        counted (after a crash or a rebalance) are dropped here."""
        if not len(events):
            return events
        parts = np.asarray(events.partitions)
        fence = np.empty(parts.size, dtype=np.int64)
        for (t, p), off in applied.items():
            if t == topic:
                fence[parts == p] = off
        keep = np.asarray(events.offsets) > fence
        if keep.all():
            return events
        skipped = int(keep.size - keep.sum())
        self.stats.skipped_replays += skipped
        self.metrics.replayed.inc(skipped)
        log.info(
            "model %s: %d re-delivered events already counted, skipped",
            model,
            skipped,
            extra={"model_id": model, "topic": topic, "skipped": skipped},
        )
        return events.select(np.flatnonzero(keep).tolist())

    def _split_late(
        self, events: ModelEvents, profile: ReferenceProfile
    ) -> tuple[ModelEvents, list[DeadLetter]]:
        """Events too old for their window to still exist (past its retention)."""
        cfg = profile.config
        ts = np.asarray(events.timestamps, dtype=np.float64)
        window_end = np.floor(ts / cfg.window_seconds) * cfg.window_seconds + cfg.window_seconds
        late = window_end + cfg.retention_seconds <= time.time()
        if not late.any():
            return events, []
        detail = f"window expired (retention {cfg.retention_seconds}s)"
        dead = [
            self._dead(events, i, "too_late", detail, profile.model_id)
            for i in np.flatnonzero(late).tolist()
        ]
        return events.select(np.flatnonzero(~late).tolist()), dead

    def _dead(self, events: Any, i: int, reason: str, detail: str, model: str) -> DeadLetter:
        topic = (
            self.settings.labels_topic
            if isinstance(events, ModelLabels)
            else self.settings.predictions_topic
        )
        return DeadLetter(
            topic,
            events.partitions[i],
            events.offsets[i],
            events.prediction_ids[i].encode(),
            events.raws[i],
            reason,
            detail,
            model,
        )

    def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        """At least once: dead letters are acknowledged by the broker before the Redis
        apply they belong to (model-level ones) or the commit (the others). An event too
        large for the producer goes with its first DLQ_EXCERPT_BYTES and its size.
        Undeliverable dead letters stop the batch: its offsets must not be committed."""
        if not dead:
            return
        failed: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        for d in dead:
            headers = [
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
        remaining = self.producer.flush(30)
        if remaining or failed:
            raise RuntimeError(
                f"{remaining + len(failed)} dead letter(s) not delivered ({failed[:1]}); "
                "not committing this batch"
            )

    # ---- evaluation --------------------------------------------------------------------
    def evaluate_due(self, idle: bool, force: bool = False) -> None:
        """Evaluate models touched by this worker when their interval has passed; when
        idle, also sweep all models now and then for windows other workers left dirty."""
        now = time.monotonic()
        if idle and (force or now - self._last_sweep > 5.0):
            self._last_sweep = now
            self._pending_eval.update(self.store.profiles.models())
        for model in sorted(self._pending_eval):
            cached = self.profiles.get(model)
            interval = cached.config.evaluation_interval_seconds if cached else 0.0
            if not force and now - self._last_eval.get(model, float("-inf")) < interval:
                continue
            revision = self.store.fences.heads([model])[1][model].revision
            profile = self._profile(model, revision) if revision is not None else None
            if profile is None:
                self._pending_eval.discard(model)
                continue
            self._last_eval[model] = now
            self._pending_eval.discard(model)
            started = time.perf_counter()
            try:
                alerts = self.evaluator.evaluate(profile)
            except Exception:
                # one model's broken state must not stop the others (or the consuming)
                log.exception("evaluation of %s failed", model, extra={"model_id": model})
                continue
            self.metrics.evaluation_seconds.observe(time.perf_counter() - started)
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
