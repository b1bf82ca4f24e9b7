"""A model's share of a batch, computed with plain objects: no broker, no Redis. The
worker hands `BatchLogic` decoded events and the fences Redis holds; what comes back is
the apply request (deltas, join, fences) and the dead letters."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from streamdrift.batch import BatchLogic
from streamdrift.decode import decode_labels, decode_predictions
from streamdrift.store import ModelHead
from tests.unit.test_decode import FakeMessage

NOW = 1_790_000_000.0
PRED, LAB = "predictions", "labels"


def _field(topic: str, partition: int) -> str:
    return f"{topic}@inc:{partition}"


@pytest.fixture
def logic() -> BatchLogic:
    return BatchLogic(PRED, LAB, _field, clock=lambda: NOW)


def _event(i: int, ts: float, **features: object) -> bytes:
    feats = {"amount": 10.0 + i, "age": 30 + i % 40, "country": "DE", "vip": False, "channel": 1}
    feats.update(features)
    return json.dumps(
        {
            "prediction_id": f"p{i}",
            "model_id": "fraud",
            "timestamp": ts,
            "features": feats,
            "prediction": {"score": 0.9, "label": 1},
        }
    ).encode()


def _messages(events: list[tuple[int, int, bytes]], topic: str = PRED) -> list[FakeMessage]:
    return [FakeMessage(v, topic=topic, partition=p, offset=o) for p, o, v in events]


def _decoded(preds: list[FakeMessage], labels: list[FakeMessage] = ()):  # type: ignore[assignment]
    return decode_predictions(preds, 65536), decode_labels(list(labels), 65536)


def test_events_at_or_below_their_partitions_fence_are_dropped_one_by_one(small_profile, logic):
    """Partition 0 was applied up to offset 4, partition 1 up to 1: of ten events, the
    ones above their own partition's fence count, whatever the batch's boundaries."""
    ts = NOW - 30
    msgs = _messages([(i % 2, i // 2, _event(i, ts)) for i in range(10)])
    batch, labels = _decoded(msgs)
    head = ModelHead(1, {_field(PRED, 0): 4, _field(PRED, 1): 1})
    share = logic.share(batch, labels, "fraud", head, small_profile, [], batch.last_offsets)
    assert share.skipped == 5 + 2
    assert share.counted == 3
    assert sorted(share.events.prediction_ids) == ["p5", "p7", "p9"]
    window = share.request.windows[int(ts // 60 * 60)]
    assert window.count == 3 and window.numeric["amount"].n == 3
    assert {(f.field, f.expected, f.new) for f in share.request.fences} == {
        (_field(PRED, 0), 4, 4),  # the batch ends at 4 on partition 0: never back
        (_field(PRED, 1), 1, 4),
    }


def test_events_past_retention_and_wrong_types_are_dead_letters_counted_where_they_belong(
    small_profile, logic
):
    old = NOW - small_profile.config.retention_seconds - 120  # its window is gone
    ts = NOW - 30
    msgs = _messages(
        [
            (0, 0, _event(0, ts)),
            (0, 1, _event(1, old)),
            (0, 2, _event(2, ts, amount="lots")),
            (0, 3, _event(3, ts)),
        ]
    )
    batch, labels = _decoded(msgs)
    share = logic.share(
        batch, labels, "fraud", ModelHead(1, {}), small_profile, [], batch.last_offsets
    )
    assert share.counted == 2
    assert sorted((d.offset, d.reason) for d in share.dead) == [(1, "too_late"), (2, "wrong_type")]
    assert all(d.model_id == "fraud" and d.topic == PRED for d in share.dead)
    assert share.request.invalid == Counter({"too_late": 1, "wrong_type:amount": 1})
    window = share.request.windows[int(ts // 60 * 60)]
    assert window.invalid == Counter({"wrong_type:amount": 1})  # "since when"
    assert [(f.expected, f.new) for f in share.request.fences] == [(-1, 3)]


def test_labels_bring_their_side_of_the_join_under_their_own_fence(small_profile, logic):
    ts = NOW - 30
    preds = _messages([(0, 0, _event(0, ts)), (0, 1, _event(1, ts))])
    label = json.dumps(
        {"prediction_id": "p0", "model_id": "fraud", "label": 1, "timestamp": ts + 5}
    )
    labels_msgs = _messages([(2, 7, label.encode())], topic=LAB)
    batch, labels = _decoded(preds, labels_msgs)
    last = {**batch.last_offsets, **labels.last_offsets}
    share = logic.share(batch, labels, "fraud", ModelHead(1, {}), small_profile, [], last)
    join = share.request.join
    assert join is not None
    assert [p[0] for p in join.predictions] == ["p0", "p1"]
    assert [(e[0], e[1]) for e in join.labels] == [("p0", "1")]
    assert {(f.field, f.new) for f in share.request.fences} == {
        (_field(PRED, 0), 1),
        (_field(LAB, 2), 7),
    }


def test_a_model_without_a_label_column_sends_its_labels_to_the_dlq(small_profile, logic):
    profile = small_profile.model_copy(update={"label": None, "label_column": None})
    label = json.dumps({"prediction_id": "p0", "model_id": "fraud", "label": 1})
    batch, labels = _decoded([], _messages([(0, 3, label.encode())], topic=LAB))
    share = logic.share(batch, labels, "fraud", ModelHead(1, {}), profile, [], labels.last_offsets)
    assert [(d.reason, d.topic, d.offset) for d in share.dead] == [("not_joined", LAB, 3)]
    assert share.request.invalid == Counter({"not_joined": 1})


def test_events_of_an_unregistered_model_become_dead_letters_and_leave_the_batch(logic):
    msgs = _messages([(0, i, _event(i, NOW - 30)) for i in range(3)])
    batch, labels = _decoded(msgs)
    dead = logic.unregistered(batch, labels, "fraud")
    assert [(d.reason, d.offset) for d in dead] == [("unregistered_model", i) for i in range(3)]
    assert "fraud" not in batch.by_model


def test_event_time_marks_per_partition_robust_to_a_stray_future_event():
    """Each partition's mark is the 99th percentile of its events' times (numpy's), not
    the maximum, and never beyond the clock."""
    from streamdrift.batch import event_time_marks
    from streamdrift.decode import ModelEvents

    events = ModelEvents()
    times = {0: [float(t) for t in range(1000, 1200)], 1: [500.0, 600.0]}
    times[0].append(10**9)  # one event dated far ahead
    for p, ts in times.items():
        for t in ts:
            events.partitions.append(p)
            events.timestamps.append(t)
            events.offsets.append(len(events.offsets))
    marks = event_time_marks(events, lambda p: f"predictions@x:{p}", now=5000.0)
    assert marks["predictions@x:1"] == pytest.approx(np.quantile([500.0, 600.0], 0.99))
    assert 1190 < marks["predictions@x:0"] < 1200  # the stray event did not carry it
    assert event_time_marks(events, str, now=550.0)["1"] == 550.0  # not past the clock
    assert event_time_marks(ModelEvents(), str) == {}


def test_a_share_holds_only_for_the_heads_it_was_computed_against(small_profile, logic):
    """A share worked out ahead of Redis's read is sent as it is only if the heads read
    then have its revision, champion, fences where it expects them and its versions; a
    fence of a partition the batch did not touch does not matter."""
    ts = NOW - 30
    msgs = _messages([(0, i, _event(i, ts)) for i in range(4)])
    batch, labels = _decoded(msgs)
    rev = small_profile.revision
    offsets = {_field(PRED, 0): 1, _field(PRED, 3): 7}
    head = ModelHead(rev, offsets, "a")
    share = logic.share(batch, labels, "fraud", head, small_profile, [], batch.last_offsets)
    assert share.counted == 2
    assert share.holds(ModelHead(rev, dict(offsets), "a"))
    assert share.holds(ModelHead(rev, {**offsets, _field(PRED, 3): 9}, "a"))  # untouched
    assert not share.holds(ModelHead(rev, {**offsets, _field(PRED, 0): 2}, "a"))
    assert not share.holds(ModelHead(rev, {_field(PRED, 3): 7}, "a"))  # fence gone: -1
    assert not share.holds(ModelHead(rev + 1, dict(offsets), "a"))
    assert not share.holds(ModelHead(rev, dict(offsets), "b"))
    assert not share.holds(ModelHead(rev, {**offsets, "__version__:2.0": 0}, "a"))
