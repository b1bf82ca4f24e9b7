"""Decode and validate a polled batch of Kafka messages — the only per-event Python work.

The rules are those of `events.PredictionEvent`, checked by hand because running pydantic
per event would cost more than everything else in the worker together; a test holds the
two to the same verdicts. Events that break a rule become `DeadLetter`s with a reason;
the rest are gathered per model in column form for numpy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter, methodcaller
from typing import Any, Generic, TypeVar, cast

import numpy as np
import numpy.typing as npt
import orjson

try:  # the compiled scanner (see `streamdrift.columnar`); optional
    from streamdrift import _scan
except ImportError:  # pragma: no cover - the tests run where it is built
    _scan = None  # type: ignore[assignment]

log = logging.getLogger("streamdrift.decode")

#: librdkafka's end-of-partition event, not an error
_PARTITION_EOF = -191

_MAX_ID = 256
#: An event time this far past the wall clock is a mistake (a wrong unit, a bad clock).
MAX_FUTURE_SECONDS = 86400.0
#: Epoch numbers are told apart by magnitude: |t| < 1e11 is seconds, < 1e14 milliseconds,
#: < 1e17 microseconds, anything larger nanoseconds. 1e8 s (1973-03-03) to 1e11 s (the
#: year 5138) is 1e11 to 1e14 in ms, 1e14 to 1e17 in µs, 1e17 to 1e20 in ns: the ranges
#: do not overlap, so every time from March 1973 to 5138 AD reads right in any unit.
UNIT_BOUNDS = (1e11, 1e14, 1e17)
#: The divisor per unit, in the order of `UNIT_BOUNDS` (seconds first).
UNIT_DIVISORS = (1.0, 1e3, 1e6, 1e9)
UNIT_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")
_BOUNDS = np.array(UNIT_BOUNDS)
_DIVISORS = np.array(UNIT_DIVISORS)
#: Numbers beyond this are rejected: their squares must stay finite in Redis's sums.
MAX_MAGNITUDE = 1e100
#: A regressor's label closer to zero than this (but not zero) is refused: its absolute
#: percentage error |ŷ − y| / |y| would overflow a double (`join`, and the meeting in
#: `pairing`, refuse it).
MIN_MAGNITUDE = 1e-100
_SEGMENT_TYPES = frozenset({str, int, bool})


@dataclass(slots=True)
class DeadLetter:
    """An event that cannot be counted, with why; it goes to `<topic>.dlq` as is."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str = ""
    model_id: str | None = None


@dataclass(slots=True)
class FeatureArrays:
    """A batch's feature values as the columnar decode (`streamdrift.columnar`) gives
    them: a float array per numeric feature (NaN where missing), a list per categorical
    one (None where missing)."""

    numbers: dict[str, np.ndarray]
    categories: dict[str, list[object]]

    def take(self, keep: list[int]) -> FeatureArrays:
        rows = np.asarray(keep, dtype=np.int64)
        return FeatureArrays(
            {k: v[rows] for k, v in self.numbers.items()},
            {k: [v[i] for i in keep] for k, v in self.categories.items()},
        )


@dataclass(slots=True)
class PredictionColumns:
    """Predictions sent as objects, as the columnar decode gives them: each one's
    `score` and `label` (None where absent)."""

    scores: list[Any]
    labels: list[Any]

    def take(self, keep: list[int]) -> PredictionColumns:
        return PredictionColumns([self.scores[i] for i in keep], [self.labels[i] for i in keep])


@dataclass(slots=True)
class ModelEvents:
    """One model's valid prediction events from a batch, as parallel columns.

    Decoded event by event, `features` and `predictions` hold each event's values as
    sent; decoded in columns, `arrays` holds the features instead, and `outputs` the
    predictions when they were objects."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)
    versions: list[str | None] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    segments: list[dict[str, Any] | None] = field(default_factory=list)
    arrays: FeatureArrays | None = None
    outputs: PredictionColumns | None = None
    #: `partitions`, `offsets` and `timestamps` as arrays, made when first asked for
    #: (`column_array`); `select` takes them along
    partitions_array: np.ndarray | None = field(default=None, compare=False, repr=False)
    offsets_array: np.ndarray | None = field(default=None, compare=False, repr=False)
    timestamps_array: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.offsets)

    def select(self, keep: list[int]) -> ModelEvents:
        """The events at positions `keep` (in order)."""
        out: ModelEvents = _select(self, keep)
        return out


_ARRAY_TYPES = {"partitions": np.int64, "offsets": np.int64, "timestamps": np.float64}


def column_array(cols: ModelEvents | ModelLabels, name: str) -> np.ndarray:
    """A batch's `partitions`, `offsets` or `timestamps` as an array, made once: the
    fence filter, the late check, the sketch, the watermarks and the join each read
    them so, and a list of 5,000 Python numbers costs ~0.5 ms to convert every time.
    Do not write into it."""
    cached: np.ndarray | None = getattr(cols, name + "_array")
    values = getattr(cols, name)
    if cached is None or len(cached) != len(values):  # columns still being filled
        cached = np.asarray(values, dtype=_ARRAY_TYPES[name])
        setattr(cols, name + "_array", cached)
    return cached


def _select(columns: Any, keep: list[int]) -> Any:
    out = type(columns)()
    for name in type(columns).__slots__:
        src = getattr(columns, name)
        if src is None or hasattr(src, "take"):
            setattr(out, name, src.take(keep) if src is not None else None)
        else:  # optional columns stay empty
            setattr(out, name, [src[i] for i in keep] if src else [])
    return out


Columns = TypeVar("Columns")


@dataclass(slots=True)
class Decoded(Generic[Columns]):
    """One topic's share of a polled batch: valid events per model, and the rest."""

    by_model: dict[str, Columns] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    #: (topic, partition) -> highest offset seen in the batch, whatever became of it
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    bytes_in: int = 0
    messages: int = 0


def unit_index(t: float) -> int:
    """The position in `UNIT_NAMES` of the unit an epoch number `t` is read in."""
    m = abs(t)
    return 0 if m < 1e11 else 1 if m < 1e14 else 2 if m < 1e17 else 3


def epoch_seconds(t: float) -> float:
    """Epoch seconds from an epoch number in seconds, ms, µs or ns (see `UNIT_BOUNDS`)."""
    return t / UNIT_DIVISORS[unit_index(t)]


def epoch_seconds_array(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`epoch_seconds` for an array: the same division per element, so the same floats."""
    divisors: npt.NDArray[np.float64] = _DIVISORS[np.searchsorted(_BOUNDS, np.abs(t), "right")]
    return t / divisors


def check_time(ts: float, raw: object = None) -> float:
    """An event time must be after 1970 and not more than a day ahead of this clock.

    `raw` is the number as sent, when it was one: the error then names the unit it was
    read in."""
    if 0.0 <= ts <= time.time() + MAX_FUTURE_SECONDS:
        return ts
    when = "before 1970" if ts < 0 else "more than a day ahead of this clock"
    read = ""
    if type(raw) is float or type(raw) is int:
        read = f" (read as epoch {UNIT_NAMES[unit_index(float(cast(float, raw)))]})"
    raise ValueError(f"timestamp {raw if read else ts!r}{read} is {when}")


def parse_timestamp(value: object, fallback: float) -> float:
    """Epoch seconds from RFC 3339 text or an epoch number in seconds, milliseconds,
    microseconds or nanoseconds (told apart by magnitude, see `UNIT_BOUNDS`); `fallback`
    (the Kafka message time) when absent. Raises ValueError for anything else. Naive
    times are taken as UTC."""
    if value is None:
        return fallback
    t = type(value)
    if t is float or t is int:
        return epoch_seconds(float(value))  # type: ignore[arg-type]
    if t is str:
        text = cast(str, value)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as e:
            try:  # RFC 3339 also allows a lower-case "t" and "z"; Python 3.11 does not
                dt = datetime.fromisoformat(text.upper())
            except ValueError:
                raise e from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise ValueError(f"timestamp has type {t.__name__}")


def event_time(value: object, fallback: float) -> float:
    """`parse_timestamp`, then `check_time`: an event's time in epoch seconds, or
    ValueError naming what is wrong with it."""
    return check_time(parse_timestamp(value, fallback), value)


def _check_prediction(pred: object) -> str | None:
    t = type(pred)
    if t is float or t is int or t is str or t is bool:
        return None
    if t is dict:
        output = cast(dict[str, Any], pred)
        score = output.get("score")
        if score is not None and type(score) not in (float, int):
            return "prediction.score is not a number"
        label = output.get("label")
        integral = type(label) is float and label.is_integer()
        if label is not None and not integral and type(label) not in (int, str, bool):
            return "prediction.label is not an int, string or bool"
        return None
    if pred is None:
        return "missing"
    return f"prediction has type {t.__name__}"


_PREDICTION_TYPES = frozenset({float, int, str, bool, dict})
_SCORE_TYPES = frozenset({float, int, type(None)})
_LABEL_TYPES = frozenset({int, str, bool, type(None)})
_VERSION_TYPES = frozenset({str, type(None)})


def _ids_ok(ids: Sequence[Any]) -> bool:
    return (
        set(map(type, ids)) == _STR_ONLY
        and min(map(len, ids)) >= 1
        and max(map(len, ids)) <= _MAX_ID
    )


_STR_ONLY = {str}
_NUMBER_TYPES = frozenset({float, int})
_NONE_ONLY = {type(None)}


def _message_seconds(msg: Any) -> float:
    """The Kafka message time (always milliseconds) in epoch seconds."""
    return cast(float, msg.timestamp()[1] / 1000.0)


#: a decoder of a whole batch in columns (`streamdrift.columnar.decode_columns`, bound to
#: the worker's learned shapes): the polled messages in, None for "not this batch"
Columnar = Callable[[list[Any]], "DecodedBatch | None"]


def decode_predictions(
    messages: list[Any], max_event_bytes: int, columnar: Columnar | None = None
) -> DecodedBatch:
    """Decode a polled list of confluent-kafka messages from the predictions topic.

    The common batch — every event valid — is read in columns by `columnar` when given
    (straight into arrays), else decoded column by column with C-level
    map/set checks (a Python loop per event costs more than orjson itself). Any doubt,
    and the batch goes through the event-by-event path that names each problem."""
    if columnar is not None and messages:
        batch = columnar(messages)  # None for a batch with a consumer error: logged below
        if batch is not None:
            return batch
    msgs = [m for m in messages if m.error() is None]
    if len(msgs) < len(messages):
        for m in messages:
            err = m.error()
            if err is not None and err.code() != _PARTITION_EOF:
                log.warning("consumer error: %s", err)
    if not msgs:
        return DecodedBatch()
    try:
        fast = _decode_fast(msgs, max_event_bytes)
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
        fast = None
    return fast if fast is not None else _decode_each(msgs, max_event_bytes)


_value = methodcaller("value")
_REQUIRED = itemgetter("model_id", "prediction_id", "features", "prediction")
_get_score = methodcaller("get", "score")
_get_label = methodcaller("get", "label")


def _event_seconds(raw_stamps: list[Any], msgs: list[Any]) -> npt.NDArray[np.float64] | None:
    """A batch's event times in epoch seconds (the Kafka message time where an event has
    none), or None when one is out of range (the event-by-event path names it). Raises
    ValueError or TypeError for a time that is no time at all."""
    stamp_kinds = set(map(type, raw_stamps))
    seconds: npt.NDArray[np.float64]
    if _NUMBER_TYPES.issuperset(stamp_kinds):  # epoch numbers: each unit divided out at once
        seconds = epoch_seconds_array(np.array(raw_stamps, dtype=np.float64))
    elif stamp_kinds == _NONE_ONLY:  # no event times: the Kafka message times
        seconds = np.array(list(map(_message_seconds, msgs)), dtype=np.float64)
    else:  # RFC 3339 text (or a mixture): parsed one by one; no numpy parser reads it
        seconds = np.fromiter(
            map(parse_timestamp, raw_stamps, map(_message_seconds, msgs)),
            dtype=np.float64,
            count=len(raw_stamps),
        )
    if seconds.min() < 0 or seconds.max() > time.time() + MAX_FUTURE_SECONDS:
        return None
    return seconds


def event_seconds_or_none(raw_stamps: list[Any], msgs: list[Any]) -> list[float] | None:
    """`_event_seconds` as a list, or None for a batch with a time out of range or no time
    at all: a reader in columns gives such a batch to the path that names each event."""
    try:
        seconds = _event_seconds(raw_stamps, msgs)
    except (ValueError, TypeError):
        return None
    return None if seconds is None else cast(list[float], seconds.tolist())


def _objects(msgs: list[Any], max_event_bytes: int) -> tuple[list[bytes], list[Any]] | None:
    """The batch's values and their JSON objects, when every value is one within the
    size limit (a value that is no JSON raises orjson's error); else None."""
    raws = list(map(_value, msgs))
    if max(map(len, raws)) > max_event_bytes:
        return None
    events = list(map(orjson.loads, raws))
    if set(map(type, events)) != {dict}:
        return None
    return raws, events


def _decode_fast(msgs: list[Any], max_event_bytes: int) -> DecodedBatch | None:
    read = _objects(msgs, max_event_bytes)
    if read is None:
        return None
    raws, events = read
    model_ids, pids, features, predictions = zip(*map(_REQUIRED, events), strict=True)
    if not (_ids_ok(model_ids) and _ids_ok(pids)):
        return None
    if set(map(type, features)) != {dict}:
        return None
    kinds = set(map(type, predictions))
    if not _PREDICTION_TYPES.issuperset(kinds):
        return None
    if dict in kinds:
        outputs = [p for p in predictions if type(p) is dict]
        if not _SCORE_TYPES.issuperset(map(type, map(_get_score, outputs))):
            return None
        if not _LABEL_TYPES.issuperset(map(type, map(_get_label, outputs))):
            return None
    versions = [e.get("model_version") for e in events]
    if not _VERSION_TYPES.issuperset(map(type, versions)):
        return None
    segments = [e.get("segments") for e in events]
    seg_kinds = set(map(type, segments))
    if seg_kinds != {type(None)}:
        if not {dict, type(None)}.issuperset(seg_kinds):
            return None
        for seg in segments:
            if seg is not None and not _SEGMENT_TYPES.issuperset(map(type, seg.values())):
                return None
    seconds = _event_seconds([e.get("timestamp") for e in events], msgs)
    if seconds is None:
        return None
    stamps: list[Any] = seconds.tolist()  # floats, typed like the other columns
    partitions = [m.partition() for m in msgs]
    offsets = [m.offset() for m in msgs]
    topic = msgs[0].topic()  # one topic per call: the worker decodes each topic apart
    batch = DecodedBatch(messages=len(msgs), bytes_in=sum(map(len, raws)))
    # Offsets rise within a partition, so the last one written per key is the highest.
    batch.last_offsets = {(topic, p): o for p, o in zip(partitions, offsets, strict=True)}
    columns = (
        partitions,
        offsets,
        stamps,
        list(features),
        versions,
        list(predictions),
        list(pids),
        raws,
        segments,
    )
    _by_model(batch, model_ids, ModelEvents(*columns))
    return batch


def _by_model(batch: Decoded[Any], model_ids: Sequence[str], whole: Any) -> None:
    """Each model's events of `whole` (a `ModelEvents` or `ModelLabels` of the batch, in
    the order of `model_ids`) into `batch.by_model`; no copy for a one-model batch."""
    distinct = set(model_ids)
    if len(distinct) == 1:
        batch.by_model[model_ids[0]] = whole
        return
    groups: dict[str, list[int]] = {m: [] for m in distinct}
    for i, m in enumerate(model_ids):
        groups[m].append(i)
    for m, idx in groups.items():
        batch.by_model[m] = whole.select(idx)


def _decode_each(messages: list[Any], max_event_bytes: int) -> DecodedBatch:
    """The event-by-event path: slower, and names each bad event's problem."""
    batch = DecodedBatch()
    by_model = batch.by_model
    last = batch.last_offsets
    dead = batch.dead.append
    loads = orjson.loads
    for msg in messages:
        if msg.error() is not None:
            continue
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        tp = (topic, partition)
        if last.get(tp, -1) < offset:
            last[tp] = offset
        batch.messages += 1
        raw = msg.value()
        size = len(raw) if raw is not None else 0
        batch.bytes_in += size
        if size > max_event_bytes:
            dead(
                DeadLetter(
                    topic,
                    partition,
                    offset,
                    msg.key(),
                    raw,
                    "oversized",
                    f"{size} bytes > {max_event_bytes}",
                )
            )
            continue
        try:
            event = loads(raw) if raw is not None else None
        except orjson.JSONDecodeError as e:
            dead(DeadLetter(topic, partition, offset, msg.key(), raw, "invalid_json", str(e)))
            continue
        if type(event) is not dict:
            dead(
                DeadLetter(
                    topic, partition, offset, msg.key(), raw, "not_an_object", type(event).__name__
                )
            )
            continue
        model_id = event.get("model_id")
        pid = event.get("prediction_id")
        features = event.get("features")
        prediction = event.get("prediction")
        reason = detail = ""
        if type(model_id) is not str or not model_id or len(model_id) > _MAX_ID:
            reason = "missing_field" if model_id is None else "wrong_type"
            detail, model_id = "model_id", None
        elif type(pid) is not str or not pid or len(pid) > _MAX_ID:
            reason, detail = ("missing_field" if pid is None else "wrong_type"), "prediction_id"
        elif type(features) is not dict:
            reason, detail = ("missing_field" if features is None else "wrong_type"), "features"
        elif (problem := _check_prediction(prediction)) is not None:
            reason = "missing_field" if problem == "missing" else "wrong_type"
            detail = "prediction" if problem == "missing" else problem
        else:
            version = event.get("model_version")
            segments = event.get("segments")
            if version is not None and type(version) is not str:
                reason, detail = "wrong_type", "model_version"
            elif segments is not None and (
                type(segments) is not dict
                or not _SEGMENT_TYPES.issuperset(map(type, segments.values()))
            ):
                reason, detail = "wrong_type", "segments"
            else:
                try:
                    ts = event_time(event.get("timestamp"), msg.timestamp()[1] / 1000.0)
                except (ValueError, TypeError) as e:
                    reason, detail = "bad_timestamp", str(e)
        if reason or model_id is None:
            dead(DeadLetter(topic, partition, offset, msg.key(), raw, reason, detail, model_id))
            continue
        cols = by_model.get(model_id)
        if cols is None:
            cols = by_model[model_id] = ModelEvents()
        cols.partitions.append(partition)
        cols.offsets.append(offset)
        cols.timestamps.append(ts)
        cols.features.append(cast(dict[str, Any], features))
        cols.versions.append(version)
        cols.predictions.append(prediction)
        cols.prediction_ids.append(cast(str, pid))
        cols.raws.append(raw)
        cols.segments.append(segments)
    return batch


@dataclass(slots=True)
class ModelLabels:
    """One model's valid label events from a batch, as parallel columns."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    #: as `ModelEvents`'s (`column_array`)
    partitions_array: np.ndarray | None = field(default=None, compare=False, repr=False)
    offsets_array: np.ndarray | None = field(default=None, compare=False, repr=False)
    timestamps_array: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.offsets)

    def select(self, keep: list[int]) -> ModelLabels:
        out: ModelLabels = _select(self, keep)
        return out


DecodedBatch = Decoded[ModelEvents]
DecodedLabels = Decoded[ModelLabels]


_LABEL_VALUE_TYPES = frozenset({float, int, str, bool})


def _label_problem(raw: bytes | None, max_event_bytes: int) -> tuple[Any, str, str]:
    """(event, reason, detail): reason is "" for a valid label event."""
    size = len(raw) if raw is not None else 0
    if size > max_event_bytes:
        return None, "oversized", f"{size} bytes > {max_event_bytes}"
    try:
        event = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError as e:
        return None, "invalid_json", str(e)
    if type(event) is not dict:
        return None, "not_an_object", type(event).__name__
    model_id, pid, label = event.get("model_id"), event.get("prediction_id"), event.get("label")
    for name, value in (("model_id", model_id), ("prediction_id", pid)):
        if type(value) is not str or not value or len(value) > _MAX_ID:
            return event, "missing_field" if value is None else "wrong_type", name
    if type(label) not in _LABEL_VALUE_TYPES:
        return event, "missing_field" if label is None else "wrong_type", "label"
    return event, "", ""


def by_topic(messages: list[Any], topic: str) -> tuple[list[Any], list[Any]]:
    """(the messages of `topic`, the others), each in the polled order."""
    if _scan is not None:
        return _scan.by_topic(messages, topic)
    ours = [m.topic() == topic for m in messages]
    return (
        [m for m, o in zip(messages, ours, strict=True) if o],
        [m for m, o in zip(messages, ours, strict=True) if not o],
    )


def decode_labels(messages: list[Any], max_event_bytes: int) -> DecodedLabels:
    """Decode label events (`events.LabelEvent`): the common batch, every label valid,
    column by column with C-level map/set checks as `decode_predictions` does; any doubt,
    and the batch goes event by event, which names each problem."""
    msgs = [m for m in messages if m.error() is None]
    if not msgs:
        return DecodedLabels()
    fast = _decode_labels_scanned(msgs, max_event_bytes) if _scan is not None else None
    if fast is not None:
        return fast
    try:
        fast = _decode_labels_fast(msgs, max_event_bytes)
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
        fast = None
    return fast if fast is not None else _decode_labels_each(msgs, max_event_bytes)


def _decode_labels_scanned(msgs: list[Any], max_event_bytes: int) -> DecodedLabels | None:
    """The batch read by the compiled scanner (each value as orjson reads it, or None
    for the whole batch), then the same checks as `_decode_labels_fast`."""
    polled = _scan.messages(msgs)
    if polled is None:
        return None
    raws, partitions, offsets, last = polled
    got = _scan.scan_labels(raws, max_event_bytes)
    if got is None:
        return None
    model_ids, pids, labels, stamps = got
    seconds = event_seconds_or_none(stamps, msgs)
    if seconds is None:
        return None
    topic = msgs[0].topic()
    batch = DecodedLabels(messages=len(msgs), bytes_in=sum(map(len, raws)))
    batch.last_offsets = {(topic, p): o for p, o in last.items()}
    whole = ModelLabels(partitions, offsets, seconds, labels, pids, raws)
    _by_model(batch, model_ids, whole)
    return batch


_LABEL_REQUIRED = itemgetter("model_id", "prediction_id", "label")


def _decode_labels_fast(msgs: list[Any], max_event_bytes: int) -> DecodedLabels | None:
    read = _objects(msgs, max_event_bytes)
    if read is None:
        return None
    raws, events = read
    model_ids, pids, labels = zip(*map(_LABEL_REQUIRED, events), strict=True)
    if not (_ids_ok(model_ids) and _ids_ok(pids)):
        return None
    if not _LABEL_VALUE_TYPES.issuperset(map(type, labels)):
        return None
    seconds = _event_seconds([e.get("timestamp") for e in events], msgs)
    if seconds is None:
        return None
    partitions = [m.partition() for m in msgs]
    offsets = [m.offset() for m in msgs]
    topic = msgs[0].topic()
    batch = DecodedLabels(messages=len(msgs), bytes_in=sum(map(len, raws)))
    batch.last_offsets = {(topic, p): o for p, o in zip(partitions, offsets, strict=True)}
    whole = ModelLabels(partitions, offsets, seconds.tolist(), list(labels), list(pids), raws)
    _by_model(batch, model_ids, whole)
    return batch


def _decode_labels_each(messages: list[Any], max_event_bytes: int) -> DecodedLabels:
    """The event-by-event path of `decode_labels`."""
    batch = DecodedLabels()
    for msg in messages:
        if msg.error() is not None:
            continue
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        tp = (topic, partition)
        batch.last_offsets[tp] = max(offset, batch.last_offsets.get(tp, -1))
        batch.messages += 1
        raw = msg.value()
        batch.bytes_in += len(raw) if raw is not None else 0
        event, reason, detail = _label_problem(raw, max_event_bytes)
        model_id = event.get("model_id") if event is not None else None
        if type(model_id) is not str:
            model_id = None
        if not reason:
            try:
                ts = event_time(event.get("timestamp"), msg.timestamp()[1] / 1000.0)
            except (ValueError, TypeError) as e:
                reason, detail = "bad_timestamp", str(e)
        if reason:
            batch.dead.append(
                DeadLetter(topic, partition, offset, msg.key(), raw, reason, detail, model_id)
            )
            continue
        cols = batch.by_model.get(model_id)  # type: ignore[arg-type]
        if cols is None:
            cols = batch.by_model[model_id] = ModelLabels()  # type: ignore[index]
        cols.partitions.append(partition)
        cols.offsets.append(offset)
        cols.timestamps.append(ts)
        cols.labels.append(event["label"])
        cols.prediction_ids.append(event["prediction_id"])
        cols.raws.append(raw)
    return batch
