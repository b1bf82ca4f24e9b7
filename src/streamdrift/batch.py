"""One model's share of a batch, from decoded events to the request of its atomic apply.

Plain computation: no Kafka, no Redis. The worker hands it the decoded batch, the
model's fences as Redis has them (a `ModelHead`) and its profile; it returns the window
deltas, the join's side, the dead letters found on the way and the fences the apply
must move. So the per-batch logic can be built and tested with plain objects, and the
worker is left with the edges: polling, sending, committing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from streamdrift.decode import (
    DeadLetter,
    DecodedBatch,
    DecodedLabels,
    ModelEvents,
    ModelLabels,
    column_array,
)
from streamdrift.join import join_delta
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import BadEvent, WindowSketch, sketch_batch
from streamdrift.slices import VERSION_COUNT, VERSION_FIELD, Slicer, VersionPlan, read_versions
from streamdrift.store import ApplyRequest, Fence, ModelHead

#: (topic, partition) -> fence field of the topic's current incarnation
FenceField = Callable[[str, int], str]
TopicPartition = tuple[str, int]


@dataclass(slots=True)
class ModelShare:
    """One model's share of a batch, computed against the fences it was read with."""

    model: str
    request: ApplyRequest
    #: predictions counted into windows (first delivery)
    counted: int
    #: dead letters found in this share (sent before the apply: at least once)
    dead: list[DeadLetter]
    #: re-delivered events below the fences, dropped
    skipped: int = 0
    #: the events counted (above the fences): predictions and labels
    events: ModelEvents = field(default_factory=ModelEvents)
    labels: ModelLabels = field(default_factory=ModelLabels)
    #: the predictions counted: `events` without those that broke the contract
    good: ModelEvents = field(default_factory=ModelEvents)
    #: the version registry the share was sliced with (out of the model's offsets hash)
    versions: dict[str, int] = field(default_factory=dict)

    def holds(self, head: ModelHead) -> bool:
        """Whether `head` is what this share was computed against: the same revision and
        champion, every fence where the share expects it, the same versions. A share
        worked out before the batch ahead of it was applied (its fences as that apply
        leaves them) is sent as it is when this holds once Redis is read."""
        r = self.request
        return (
            head.revision == r.profile.revision
            and head.champion == r.champion
            and all(head.offsets.get(f.field, -1) == f.expected for f in r.fences)
            and read_versions(head.offsets) == self.versions
        )


def quality_key(reason: str, detail: str) -> str:
    """`wrong_type:amount` for a wrong-typed feature value, else the bare reason."""
    if detail.startswith("features."):
        return f"{reason}:{detail[len('features.') :].split(' ', 1)[0]}"
    return reason


@dataclass(slots=True)
class BatchLogic:
    """The per-model computation of a batch, for one worker's topics."""

    predictions_topic: str
    labels_topic: str
    fence_field: FenceField
    #: the clock events are judged late against (the worker's; tests may fix it)
    clock: Callable[[], float] = field(default=time.time)

    def share(
        self,
        batch: DecodedBatch,
        labels: DecodedLabels,
        model: str,
        head: ModelHead,
        profile: ReferenceProfile,
        dead: list[DeadLetter],
        last_offsets: dict[TopicPartition, int],
    ) -> ModelShare:
        """`model`'s deltas against its fences as `head` has them. `dead` are the
        batch's dead letters found while decoding (the model's ones count in its DLQ
        counters); `last_offsets` the batch's highest offset per (topic, partition)."""
        all_events = batch.by_model.get(model, ModelEvents())
        all_labels = labels.by_model.get(model, ModelLabels())
        model_dead = [d for d in dead if d.model_id == model]
        sources = (
            {(self.predictions_topic, p) for p in set(all_events.partitions)}
            | {(self.labels_topic, p) for p in set(all_labels.partitions)}
            | {(d.topic, d.partition) for d in model_dead}
        )
        fields = {tp: self.fence_field(*tp) for tp in sources}
        applied = {tp: head.offsets.get(fields[tp], -1) for tp in sources}
        events, skipped = _unapplied(all_events, self.predictions_topic, applied)
        label_events, skipped_labels = _unapplied(all_labels, self.labels_topic, applied)
        now = self.clock()
        events, new_dead = self._split_late(events, profile, model, now)
        versions = read_versions(head.offsets)
        slicer = Slicer(
            profile.config.slices.max_versions,
            {k: profile.segment_values(k) for k in profile.segments},
            versions,
        )
        windows, bad, good, outputs = sketch_batch(
            events, profile, lambda ev: slicer(ev.versions, ev.segments)
        )
        new_dead += [self.dead_letter(events, b.index, b.reason, b.detail, model) for b in bad]
        _count_bad_in_windows(windows, events, bad, profile)
        join, join_dead = join_delta(
            profile, good, outputs, label_events, self.labels_topic, slicer
        )
        new_dead += join_dead
        invalid = Counter(
            d.reason for d in model_dead if d.offset > applied[(d.topic, d.partition)]
        )
        invalid.update(quality_key(d.reason, d.detail) for d in new_dead)
        # A fence never moves back: a replayed batch can end below what is applied.
        fences = [
            Fence(fields[tp], applied[tp], max(applied[tp], last_offsets[tp]))
            for tp in sorted(sources)
        ]
        fences += version_fences(slicer.plan, head.offsets)
        request = ApplyRequest(profile, fences, windows, invalid, join, now, head.champion)
        # the event-time marks go with the counts (wall clock: what the evaluator's
        # completeness test compares them with)
        request.marks_at = time.time()
        request.marks = event_time_marks(
            events, partial(self.fence_field, self.predictions_topic), request.marks_at
        )
        return ModelShare(
            model,
            request,
            len(good),
            new_dead,
            skipped + skipped_labels,
            events,
            label_events,
            good,
            versions,
        )

    def unregistered(
        self, batch: DecodedBatch, labels: DecodedLabels, model: str
    ) -> list[DeadLetter]:
        """The events of a model with no profile, as dead letters (taken out of the batch)."""
        why = f"model '{model}' has no reference profile: run streamdrift register"
        out = []
        for cols in (batch.by_model.pop(model, None), labels.by_model.pop(model, None)):
            if cols is None:
                continue
            for i in range(len(cols)):
                out.append(self.dead_letter(cols, i, "unregistered_model", why, model))
        return out

    def _split_late(
        self, events: ModelEvents, profile: ReferenceProfile, model: str, now: float
    ) -> tuple[ModelEvents, list[DeadLetter]]:
        """Events too old for their window to still exist (past its retention)."""
        cfg = profile.config
        ts = column_array(events, "timestamps")
        window_end = np.floor(ts / cfg.window_seconds) * cfg.window_seconds + cfg.window_seconds
        late = window_end + cfg.retention_seconds <= now
        if not late.any():
            return events, []
        detail = f"window expired (retention {cfg.retention_seconds}s)"
        dead = [
            self.dead_letter(events, i, "too_late", detail, model)
            for i in np.flatnonzero(late).tolist()
        ]
        return events.select(np.flatnonzero(~late).tolist()), dead

    def dead_letter(self, events: Any, i: int, reason: str, detail: str, model: str) -> DeadLetter:
        topic = self.labels_topic if isinstance(events, ModelLabels) else self.predictions_topic
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


def version_fences(plan: VersionPlan, offsets: dict[str, int]) -> list[Fence]:
    """The version registry's new entries, fenced like offsets: the apply refuses them
    if another worker registered versions meanwhile (the batch is then sliced again)."""
    if not plan.new:
        return []
    count = offsets.get(VERSION_COUNT, -1)
    fences = [Fence(VERSION_COUNT, count, plan.count + len(plan.new))]
    fences += [Fence(VERSION_FIELD + v, -1, order) for v, order in plan.new]
    return fences


def _unapplied(events: Any, topic: str, applied: dict[TopicPartition, int]) -> tuple[Any, int]:
    """The events above the model's offset fence, and how many were not: re-deliveries
    of events already counted (after a crash, a rebalance or a re-read from Redis's
    fences) are dropped here, event by event, whatever the batch boundaries."""
    if not len(events):
        return events, 0
    parts = column_array(events, "partitions")
    fence = np.empty(parts.size, dtype=np.int64)
    for (t, p), off in applied.items():
        if t == topic:
            fence[parts == p] = off
    keep = column_array(events, "offsets") > fence
    if keep.all():
        return events, 0
    return events.select(np.flatnonzero(keep).tolist()), int(keep.size - keep.sum())


def _count_bad_in_windows(
    windows: dict[int, WindowSketch],
    events: ModelEvents,
    bad: list[BadEvent],
    profile: ReferenceProfile,
) -> None:
    """Wrong-typed feature values counted in their event's window too ("since when")."""
    width = profile.config.window_seconds
    for b in bad:
        start = int(events.timestamps[b.index] // width * width)
        window = windows.get(start)
        if window is None:
            window = windows[start] = WindowSketch(start=start)
        window.invalid[quality_key(b.reason, b.detail)] += 1


def event_time_marks(
    events: ModelEvents, field: Callable[[int], str], now: float | None = None
) -> dict[str, float]:
    """How far in event time the counted events of each partition (by its fence field)
    went: the 99th percentile of their times, so a stray event dated ahead does not
    carry the partition past windows still filling, and never beyond the worker's
    clock."""
    if not len(events):
        return {}
    now = time.time() if now is None else now
    parts = column_array(events, "partitions")
    ts = column_array(events, "timestamps")
    marks = {}
    for p in np.unique(parts):
        mark = float(np.quantile(ts[parts == p], 0.99))
        marks[field(int(p))] = min(mark, now)
    return marks
