"""The delayed-label join, the Python side: what a prediction leaves in Redis for its
label, and what a label brings, in the record format of `store.records`. Where the
two meet, whichever arrives first, is `streamdrift.pairing`; the apply script writes
the outcome atomically, if the records are still as they were read.

A pending prediction keeps only `time|version|class|score` (about 30 bytes of value):
its window follows from its time, and the label needs nothing else. A model that joins
no labels still leaves its ids in a set per window, for a while, so that repeated
prediction ids are counted per window.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np
import orjson

from streamdrift.decode import (
    MAX_MAGNITUDE,
    MIN_MAGNITUDE,
    DeadLetter,
    ModelEvents,
    ModelLabels,
    column_array,
)
from streamdrift.performance import class_key
from streamdrift.profile import NumericProfile, ReferenceProfile, bin_index, category_key
from streamdrift.sketch import prediction_outputs
from streamdrift.slices import Slicer, clean, fold_segments
from streamdrift.store.records import JoinDelta, shards

try:  # compiled beside the pairing; optional, as it is
    from streamdrift._pairing import records as _records
except ImportError:  # pragma: no cover - the tests run where it is built
    _records = None  # type: ignore[assignment]

__all__ = [
    "id_horizon",
    "ids_by_window",
    "join_delta",
    "joins",
    "label_entries",
    "prediction_outputs",
    "prediction_records",
    "shards",
]


def joins(profile: ReferenceProfile) -> bool:
    """Labels are joined for models registered with a label column and a horizon."""
    return profile.label is not None and profile.config.join_horizon_seconds > 0


def id_horizon(profile: ReferenceProfile) -> int:
    """How long a prediction's id stays in the join's records: the join horizon (0 for
    a model that joins no labels: whatever an earlier registration left there goes)."""
    return profile.config.join_horizon_seconds if joins(profile) else 0


def ids_by_window(events: ModelEvents, profile: ReferenceProfile) -> dict[int, list[str]]:
    """The batch's prediction ids by window start (the repeated-id check of a model
    without labels). An id under a version counts with its version: the same id scored by
    two versions is shadow traffic, not a repeat."""
    width = profile.config.window_seconds
    versions = set(events.versions)
    if versions == {None}:
        ids = list(events.prediction_ids)
    elif len(versions) == 1:  # one version (a comprehension: 2.5x `map(str.__add__)`)
        (version,) = versions
        assert version is not None  # not {None}: that one is above
        tail = "\x1f" + clean(version)
        ids = [pid + tail for pid in events.prediction_ids]
    elif None not in versions:  # each distinct version spelled once
        suffix = {v: "\x1f" + clean(v) for v in versions if v is not None}
        ids = [
            pid + suffix[v] for pid, v in zip(events.prediction_ids, events.versions, strict=True)
        ]
    else:
        ids = [
            pid if v is None else f"{pid}\x1f{clean(v)}"
            for pid, v in zip(events.prediction_ids, events.versions, strict=True)
        ]
    starts = np.floor(column_array(events, "timestamps") / width) * width
    first = int(starts[0])
    if (starts == first).all():
        return {first: ids}
    # a batch spans a few windows: its ids sorted by window (in order within each) and
    # cut, rather than appended one by one
    found, inv = np.unique(starts.astype(np.int64), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    cuts = np.cumsum(np.bincount(inv, minlength=found.size))[:-1]
    parts = np.split(np.array(ids, dtype=object)[order], cuts)
    return {int(ws): part.tolist() for ws, part in zip(found.tolist(), parts, strict=True)}


#: at most this many segment keys per prediction (the first by name), values cut to this
#: length: segments become fields of the window's performance hash, which must stay small
MAX_SEGMENTS = 5
MAX_SEGMENT_VALUE = 64
_KEY_UNSAFE = str.maketrans({"|": "/", ",": ";", "=": "-"})
#: classes as the join's records spell them, predicted and actual alike: one record per
#: line, and a joined id's parts apart by tabs
_FLAT = str.maketrans({"\n": " ", "\t": " "})
_VALUE_UNSAFE = str.maketrans({"|": "/", ",": ";"})


def _first(item: tuple[str, object]) -> str:
    return str(item[0])


def _segments(segments: dict[str, object] | None) -> str:
    """A record's segments, sorted by key: the same whatever order an event (or the
    columnar decode) gave them in."""
    if not segments:
        return ""
    parts = [
        f"{str(k).translate(_KEY_UNSAFE)}="
        f"{category_key(v)[:MAX_SEGMENT_VALUE].translate(_VALUE_UNSAFE)}"
        for k, v in sorted(segments.items(), key=_first)[:MAX_SEGMENTS]
    ]
    return "|" + ",".join(parts)


def _texts(numbers: list[Any]) -> list[str]:
    """Each number's shortest round-trip spelling, all at once: orjson writes the list
    (ryu) about eight times faster than `repr` per float. Lua's tonumber reads both."""
    return orjson.dumps(numbers)[1:-1].decode().split(",") if numbers else []


def _score_texts(scores: list[float | None]) -> list[str]:
    """Scores as records spell them ("" for none)."""
    if None in scores:
        return ["" if s is None else repr(s) for s in scores]
    texts = _texts(scores)
    if len(texts) != len(scores) or "null" in texts:  # a NaN or an infinity
        return list(map(repr, scores))
    return texts


def prediction_records(
    events: ModelEvents,
    classes: list[str | None],
    scores: list[float | None],
    slicer: Slicer | None = None,
) -> list[list[str]]:
    """`[prediction_id, "time|version|class|score[|segment=value,...]", shard]` per
    event; with a `slicer`, the version and the declared segment keys' values as the
    event's slices name them (the join counts the pair in those slices too)."""
    segments = events.segments if len(events.segments) == len(events) else [None] * len(events)
    versions = events.versions
    if slicer is not None:
        segments = fold_segments(segments, slicer.segment_values)
        versions = slicer.record_versions(versions)
    # Column by column (a formatted string per event costs more than the rest of the
    # join's side); each distinct version, class and segments object spelled once.
    seconds = np.floor(column_array(events, "timestamps")).astype(np.int64).tolist()
    spelled_versions = {v: clean(v) if v else "" for v in set(versions)}
    spelled_classes = {c: (c or "").translate(_FLAT) for c in set(classes)}
    score_texts = _score_texts(scores)
    tails: list[str] | None = None
    if any(segments):
        spelled: dict[int, str] = {}
        tails = []
        for seg in segments:
            tail = spelled.get(id(seg))
            if tail is None:
                tail = spelled[id(seg)] = _segments(seg)
            tails.append(tail)
    ids = events.prediction_ids
    if _records is not None:  # the records built in one pass
        got = _records(
            ids,
            seconds,
            list(map(spelled_versions.__getitem__, versions)),
            list(map(spelled_classes.__getitem__, classes)),
            score_texts,
            tails if tails is not None else [""] * len(ids),
            shards(ids),
        )
        if got is not None:
            return got
    columns = (
        _texts(seconds),
        map(spelled_versions.__getitem__, versions),
        map(spelled_classes.__getitem__, classes),
        score_texts,
    )
    heads = list(map("|".join, zip(*columns, strict=True)))
    if tails is not None:
        heads = list(map(str.__add__, heads, tails))
    return list(map(list, zip(ids, heads, shards(ids), strict=True)))


def _regression_label_problem(label: object) -> tuple[str, str] | None:
    """(reason, detail) when a regressor's label cannot be counted, else None."""
    if type(label) not in (float, int):
        return "wrong_type", (
            f"label {label!r} ({type(label).__name__}) is not a number, as a regressor's "
            "label must be"
        )
    size = abs(label)  # type: ignore[arg-type]
    if size > MAX_MAGNITUDE or 0 < size < MIN_MAGNITUDE:
        return "out_of_bounds", (
            f"label {label!r} is beyond ±{MAX_MAGNITUDE:g} or closer to 0 than "
            f"{MIN_MAGNITUDE:g} (its percentage error would overflow)"
        )
    return None


def label_entries(
    labels: ModelLabels, profile: ReferenceProfile, topic: str
) -> tuple[list[list[Any]], list[DeadLetter]]:
    """`[prediction_id, label, time, label bin, shard]` per label; a regressor's label
    that is not a number is a dead letter."""
    out: list[list[Any]] = []
    dead: list[DeadLetter] = []
    numeric = isinstance(profile.label, NumericProfile)
    if not numeric:
        return _class_entries(labels), dead
    edges = profile.label.edge_array()  # type: ignore[union-attr]
    values: list[float] = []
    for i, (pid, b, label, ts) in enumerate(
        zip(
            labels.prediction_ids,
            shards(labels.prediction_ids),
            labels.labels,
            labels.timestamps,
            strict=True,
        )
    ):
        problem = _regression_label_problem(label)
        if problem is not None:
            reason, detail = problem
            dead.append(
                DeadLetter(
                    topic,
                    labels.partitions[i],
                    labels.offsets[i],
                    pid.encode(),
                    labels.raws[i],
                    reason,
                    detail,
                    profile.model_id,
                )
            )
            continue
        values.append(float(label))
        out.append([pid, repr(float(label)), int(ts), 0, b])
    if out:
        for entry, b in zip(out, bin_index(edges, np.asarray(values)).tolist(), strict=True):
            entry[3] = b
    return out, dead


def _class_entries(labels: ModelLabels) -> list[list[Any]]:
    """A classifier's label entries, column by column: each distinct label spelled once
    (by type too: True and 1 are different classes, "true" and "1")."""
    keys = list(zip(map(type, labels.labels), labels.labels, strict=True))
    spelled = {k: class_key(k[1]).translate(_FLAT) for k in set(keys)}
    seconds = np.floor(column_array(labels, "timestamps")).astype(np.int64)
    ids = labels.prediction_ids
    return list(
        map(
            list,
            zip(
                ids,
                map(spelled.__getitem__, keys),
                seconds.tolist(),
                repeat(-1),
                shards(ids),
                strict=False,  # repeat() has no end
            ),
        )
    )


def join_delta(
    profile: ReferenceProfile,
    events: ModelEvents,
    outputs: tuple[list[str | None], list[float | None]],
    labels: ModelLabels | None,
    label_topic: str,
    slicer: Slicer | None = None,
) -> tuple[JoinDelta | None, list[DeadLetter]]:
    if not joins(profile):
        delta = None
        if profile.config.dedupe_horizon_seconds > 0 and len(events):
            delta = JoinDelta(joins=False, ids_by_window=ids_by_window(events, profile))
        if labels is None or not len(labels):
            return delta, []
        why = "the model was registered without --label-column (or with no join horizon)"
        return delta, [
            DeadLetter(
                label_topic,
                labels.partitions[i],
                labels.offsets[i],
                labels.prediction_ids[i].encode(),
                labels.raws[i],
                "not_joined",
                why,
                profile.model_id,
            )
            for i in range(len(labels))
        ]
    delta = JoinDelta(predictions=prediction_records(events, *outputs, slicer))
    dead: list[DeadLetter] = []
    if labels is not None and len(labels):
        delta.labels, dead = label_entries(labels, profile, label_topic)
    return delta, dead
