"""Decode a whole batch of prediction events into arrays at once.

`orjson.loads` per event builds a Python dict of every event only for the worker to pull
its values out again. Two readers skip that: the compiled scanner (`_scan.c`, built with
the package where a C compiler is found) reads each value straight into columns (0.7 µs
for a 490-byte event, where `orjson.loads` takes 1.8 µs, and 4.3 µs when a batch's dicts
are kept); where it was not built, pyarrow's JSON reader parses the newline-joined batch
into columns (on one core slower than orjson, but with no dict per event). Both need
the features' names and kinds, and those come from what the exact path
(`decode._decode_each` and `decode._decode_fast`) saw of each model's events: an
`EventShape` per model, learned from a batch that path decoded, and checked against the
model's profile.

The rules stay the exact path's, event by event. This path only answers for a batch in
which every event is valid and shaped as learned; anything else — a value of another type,
a missing required field, a feature the shape does not know, NaN, a number beyond
`MAX_MAGNITUDE`, an event time out of range, a segment value that is not a string, an
integer or a boolean, non-ASCII bytes that are not UTF-8 — and it returns None, and the
batch goes through the exact path, which names each bad event's problem. A test holds
the two paths to the same Redis state on the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from streamdrift.decode import (
    _MAX_ID,
    _PARTITION_EOF,
    MAX_MAGNITUDE,
    DecodedBatch,
    FeatureArrays,
    ModelEvents,
    PredictionColumns,
    _by_model,
    event_seconds_or_none,
)
from streamdrift.profile import ReferenceProfile

try:  # the compiled scanner: optional, for a machine with no C compiler at install
    from streamdrift._scan import messages as _messages
    from streamdrift._scan import scan as _scan
except ImportError:  # pragma: no cover - the tests run where it is built
    _scan = _messages = None

#: the reader `decode_columns` uses unless told: "scan" where it was built, else "arrow"
READER = "scan" if _scan is not None else "arrow"

_NUMBER = frozenset({float, int})
#: the JSON value types a categorical column may hold, and its arrow type
_CATEGORY_TYPES = {str: pa.string(), int: pa.int64(), bool: pa.bool_(), float: pa.float64()}
#: shapes kept at most (a worker serves a bounded number of models at once)
MAX_SHAPES = 1000
_first_byte = itemgetter(0)
_last_byte = itemgetter(-1)
_OPEN_BRACE = {ord("{")}
_CLOSE_BRACE = {ord("}")}
#: a model whose events have no shape is looked at again after this many batches
RELEARN_EVERY = 100
#: after this many batches in a row given back to the exact path, this path sits out
#: `SIT_OUT` batches (a shape that no longer fits costs a failed read per batch)
MAX_MISSES = 3
SIT_OUT = 50
_READ = pj.ReadOptions(use_threads=False, block_size=1 << 30)


@dataclass(frozen=True, slots=True)
class EventShape:
    """What one model's valid events look like, in arrow types: its features (the
    profile's, numeric ones as float64), its prediction and its event time."""

    revision: int
    features: tuple[tuple[str, pa.DataType], ...]
    #: the profile's numeric features (the others are categorical)
    numeric: frozenset[str]
    #: float64 or int64 for a bare number, string or bool_ for a bare class, or a
    #: struct of score (float64) and label, as the events send it
    prediction: pa.DataType
    #: float64 for epoch numbers (or no event time at all), string for RFC 3339 text
    timestamp: pa.DataType

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.features)

    @classmethod
    def learn(cls, events: ModelEvents, profile: ReferenceProfile) -> EventShape | None:
        """The shape of `events` (decoded by the exact path), or None when they do not
        have one this path can read: a feature or the prediction of mixed types, mixed
        event-time kinds, or most events with features outside the profile (such events
        are counted event by event; a few of them among many do not keep the others
        from being read in columns). Segments are read as each batch sends them."""
        if not len(events) or not events.features:
            return None
        known = set(profile.numeric_features()) | set(profile.categorical_features())
        plain = [i for i, f in enumerate(events.features) if f.keys() <= known]
        if 2 * len(plain) < len(events):
            return None
        if len(plain) < len(events):
            events = events.select(plain)
        features: list[tuple[str, pa.DataType]] = []
        for name in profile.numeric_features():
            seen = {type(f.get(name)) for f in events.features} - {type(None)}
            if not seen <= _NUMBER:
                return None
            features.append((name, pa.float64()))
        for name in profile.categorical_features():
            seen = {type(f.get(name)) for f in events.features} - {type(None)}
            if len(seen) > 1 or not seen <= _CATEGORY_TYPES.keys():
                return None
            features.append((name, _CATEGORY_TYPES[seen.pop()] if seen else pa.string()))
        prediction = _prediction_type(events.predictions)
        if prediction is None:
            return None
        numeric = profile.numeric_features()
        stamps = {type(_raw_timestamp(e)) for e in events.raws[:1]}
        timestamp = pa.string() if str in stamps else pa.float64()
        return cls(profile.revision, tuple(features), frozenset(numeric), prediction, timestamp)


def _raw_timestamp(raw: bytes) -> object:
    """The event time as sent (one event is enough to tell text from numbers: a batch
    mixing the two is not read by this path)."""
    return orjson.loads(raw).get("timestamp")


def _prediction_type(predictions: list[Any]) -> pa.DataType | None:
    kinds = set(map(type, predictions))
    if kinds == {dict}:
        labels = {type(p.get("label")) for p in predictions} - {type(None)}
        scores = {type(p.get("score")) for p in predictions} - {type(None)}
        if len(labels) > 1 or not labels <= {int, str, bool} or not scores <= _NUMBER:
            return None
        children = [pa.field("score", pa.float64())]
        if labels:
            children.append(pa.field("label", _CATEGORY_TYPES[labels.pop()]))
        return pa.struct(children)
    if kinds <= _NUMBER:
        return pa.float64() if float in kinds else pa.int64()
    if len(kinds) == 1 and kinds <= {str, bool}:
        return _CATEGORY_TYPES[kinds.pop()]
    return None


@dataclass(slots=True)
class EventShapes:
    """The shapes learned per model, and the schema a batch of some of them is read with."""

    by_model: dict[str, EventShape] = field(default_factory=dict)
    #: the models of the last batch, in the order seen: the next batch's likely ones
    recent: tuple[str, ...] = ()
    _schemas: dict[tuple[str, ...], pa.Schema | None] = field(default_factory=dict)
    _names: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]] | None] = field(
        default_factory=dict
    )
    #: model -> (revision, batches seen since) of a model whose events had no shape
    _refused: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: batches in a row this path gave back to the exact path, and batches to skip
    misses: int = 0
    skip: int = 0

    def learn(self, model: str, events: ModelEvents, profile: ReferenceProfile) -> None:
        """Learn (or learn again, after the model was registered anew) a model's shape
        from events the exact path decoded. A model without one is looked at again
        every `RELEARN_EVERY` batches, not at each."""
        known = self.by_model.get(model)
        if (known is not None and known.revision == profile.revision) or not len(events):
            return
        refused = self._refused.get(model)
        if refused is not None and refused[0] == profile.revision and refused[1] < RELEARN_EVERY:
            self._refused[model] = (refused[0], refused[1] + 1)
            return
        shape = EventShape.learn(events, profile)
        if shape is None:
            self.forget(model)
            if len(self._refused) >= MAX_SHAPES:
                self._refused.clear()
            self._refused[model] = (profile.revision, 0)
            return
        self._refused.pop(model, None)
        if len(self.by_model) >= MAX_SHAPES and model not in self.by_model:
            self.by_model.pop(next(iter(self.by_model)))
        self.by_model[model] = shape
        self._schemas.clear()
        self._names.clear()

    def forget(self, model: str) -> None:
        if self.by_model.pop(model, None) is not None:
            self._schemas.clear()
            self._names.clear()

    def schema(self, models: tuple[str, ...]) -> pa.Schema | None:
        """One schema for events of all of `models`: their features side by side (a
        name two models type differently: none), the prediction and time they share."""
        if models in self._schemas:
            return self._schemas[models]
        shapes = [self.by_model.get(m) for m in models]
        schema = None
        if shapes and all(s is not None for s in shapes):
            schema = _union(shapes)  # type: ignore[arg-type]
        if len(self._schemas) > 64:
            self._schemas.clear()
        self._schemas[models] = schema
        return schema

    def names(self, models: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The numeric and the categorical features of all of `models`, for the scanner
        (a name numeric for one model and categorical for another: None)."""
        if models in self._names:
            return self._names[models]
        shapes = [self.by_model.get(m) for m in models]
        names = None
        if shapes and all(s is not None for s in shapes):
            numeric: dict[str, None] = {}
            categorical: dict[str, None] = {}
            for s in shapes:
                for name, _ in s.features:  # type: ignore[union-attr]
                    (numeric if name in s.numeric else categorical)[name] = None  # type: ignore[union-attr]
            if not numeric.keys() & categorical.keys():
                names = (tuple(numeric), tuple(categorical))
        if len(self._names) > 64:
            self._names.clear()
        self._names[models] = names
        return names


def _union(shapes: list[EventShape]) -> pa.Schema | None:
    features: dict[str, pa.DataType] = {}
    for s in shapes:
        for name, t in s.features:
            if features.setdefault(name, t) != t:
                return None
    if len({s.prediction for s in shapes}) > 1 or len({s.timestamp for s in shapes}) > 1:
        return None
    return pa.schema(
        [
            ("model_id", pa.string()),
            ("prediction_id", pa.string()),
            ("model_version", pa.string()),
            ("timestamp", shapes[0].timestamp),
            ("features", pa.struct([pa.field(n, t) for n, t in features.items()])),
            ("prediction", shapes[0].prediction),
        ]
    )


@dataclass(slots=True)
class Polled:
    """A polled batch's messages with a value each, and what the columns need of them."""

    msgs: list[Any]
    values: list[bytes]
    partitions: list[int]
    offsets: list[int]
    #: partition -> its highest offset in the batch
    last: dict[int, int]

    def last_offsets(self) -> dict[tuple[str, int], int]:
        topic = self.msgs[0].topic()  # one topic per call: the worker decodes each apart
        return {(topic, p): o for p, o in self.last.items()}


def _polled(messages: list[Any]) -> Polled | None:
    """Values, partitions and offsets of `messages`, or None when there is none, one has
    no value, or one carries a consumer error (the exact path logs it). The scanner's
    module reads them from C; the end of a partition (not an error) is left out here."""
    if _messages is not None:
        got = _messages(messages)
        if got is not None:
            return Polled(messages, *got) if messages else None
    errors = [m.error() for m in messages]
    if any(e is not None and e.code() != _PARTITION_EOF for e in errors):
        return None
    msgs = [m for m, e in zip(messages, errors, strict=True) if e is None]
    values = [m.value() for m in msgs]
    if not msgs or None in values:
        return None
    partitions = [m.partition() for m in msgs]
    offsets = [m.offset() for m in msgs]
    last: dict[int, int] = {}
    for p, o in zip(partitions, offsets, strict=True):
        if o > last.get(p, -1):
            last[p] = o
    return Polled(msgs, values, partitions, offsets, last)


def decode_columns(
    messages: list[Any],
    shapes: EventShapes,
    max_event_bytes: int,
    reader: str = READER,
) -> DecodedBatch | None:
    """The batch in column form when every event is valid and of a learned shape, else
    None (the caller decodes it event by event). `reader` is "scan" (the compiled
    scanner) or "arrow" (pyarrow)."""
    if shapes.skip:
        shapes.skip -= 1
        return None
    polled = _polled(messages)
    if polled is None:
        batch = None
    elif reader == "scan":
        batch = _scanned(polled, shapes, max_event_bytes)
    else:
        batch = _read(polled, shapes, max_event_bytes)
    if batch is not None:
        shapes.misses = 0
    elif shapes.schema(shapes.recent) is not None:
        shapes.misses += 1
        if shapes.misses >= MAX_MISSES:
            shapes.misses, shapes.skip = 0, SIT_OUT
    return batch


def _read(polled: Polled, shapes: EventShapes, max_event_bytes: int) -> DecodedBatch | None:
    msgs, raws = polled.msgs, polled.values
    schema = shapes.schema(shapes.recent)
    if schema is None or not raws:
        return None
    sizes = list(map(len, raws))
    if max(sizes) > max_event_bytes or min(sizes) < 2:
        return None
    # Values joined by line breaks, and the reader takes a stream of documents: which
    # row came from which value? Each value starts with "{" and ends with "}", and in
    # JSON a "}" followed by "{" can only end one document and start the next (inside
    # any object or array it is a syntax error; a line break inside a string too). So
    # every value holds whole documents, at least one; with as many rows as values,
    # each value gave exactly one, in order.
    if set(map(_first_byte, raws)) != _OPEN_BRACE or set(map(_last_byte, raws)) != _CLOSE_BRACE:
        return None
    buf = b"\n".join(raws)
    if not buf.isascii():
        try:
            buf.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        table = pj.read_json(
            pa.py_buffer(buf),
            read_options=_READ,
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    n = len(raws)
    if table.num_rows != n:
        return None
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    if not all(map(_finite, columns.values())):
        return None  # the JSON reader takes NaN and Infinity, orjson (rightly) does not
    segments = _segments(columns.get("segments"), buf, n)
    if segments is None:
        return None
    model_ids, pids = columns["model_id"], columns["prediction_id"]
    for ids in (model_ids, pids):
        if ids.null_count or _bad_ids(ids):
            return None
    features = columns["features"]
    prediction = columns["prediction"]
    if features.null_count or prediction.null_count:
        return None
    if features.type != schema.field("features").type:
        return None  # a feature the shapes do not know: counted event by event
    if not _bounded(features):
        return None
    seconds = _seconds(columns["timestamp"], msgs)
    if seconds is None:
        return None
    model_list: list[str] = model_ids.to_pylist()
    models = tuple(dict.fromkeys(model_list))
    if not set(models) <= set(shapes.recent):
        return None
    partitions, offsets = polled.partitions, polled.offsets
    batch = DecodedBatch(messages=n, bytes_in=sum(sizes))
    batch.last_offsets = polled.last_offsets()
    pid_list: list[str] = pids.to_pylist()
    versions: list[str | None] = columns["model_version"].to_pylist()
    stamps = seconds
    if len(models) == 1:
        groups = {models[0]: None}
    else:
        codes = np.asarray(pc.index_in(model_ids, pa.array(models)))
        groups = {m: np.flatnonzero(codes == k) for k, m in enumerate(models)}
    for model, rows in groups.items():
        shape = shapes.by_model[model]
        own = features if rows is None else features.take(pa.array(rows))
        if not _only_own_features(own, shape):
            return None
        pred = prediction if rows is None else prediction.take(pa.array(rows))

        def pick(col: list[Any], rows: np.ndarray | None = rows) -> list[Any]:
            return col if rows is None else [col[i] for i in rows.tolist()]

        batch.by_model[model] = ModelEvents(
            partitions=pick(partitions),
            offsets=pick(offsets),
            timestamps=pick(stamps),
            features=[],
            versions=pick(versions),
            predictions=[] if pa.types.is_struct(pred.type) else pred.to_pylist(),
            prediction_ids=pick(pid_list),
            raws=pick(raws),
            segments=pick(segments),
            arrays=_feature_arrays(own, shape),
            outputs=_prediction_columns(pred),
        )
    return batch


#: the scanner's flags (`_scan.c`): predictions sent bare, and sent as objects
_BARE, _OBJECTS = 1, 2


def _scanned(polled: Polled, shapes: EventShapes, max_event_bytes: int) -> DecodedBatch | None:
    """The compiled scanner's columns, split per model as `_read` splits them. The
    scanner refuses any batch it cannot read as orjson would; what it reads is checked
    here by the exact path's own rules (event times, a model's own features)."""
    msgs, raws = polled.msgs, polled.values
    names = shapes.names(shapes.recent)
    if names is None or _scan is None:
        return None
    numeric, categorical = names
    got = _scan(raws, numeric, categorical, max_event_bytes)
    if got is None:
        return None
    model_list, pid_list, versions, stamps, numbers, cats, bare, scores, labels, segments, flags = (
        got
    )
    if flags == _BARE | _OBJECTS:
        return None  # bare and object predictions mixed: the exact path sorts them out
    stamp_list = event_seconds_or_none(stamps, msgs)
    if stamp_list is None:
        return None
    models = tuple(dict.fromkeys(model_list))
    if not set(models) <= set(shapes.recent):
        return None
    n = len(raws)
    x = np.frombuffer(numbers, dtype=np.float64).reshape(n, len(numeric))
    objects = bool(flags & _OBJECTS)
    whole = ModelEvents(
        partitions=polled.partitions,
        offsets=polled.offsets,
        timestamps=stamp_list,
        features=[],
        versions=versions,
        predictions=[] if objects else bare,
        prediction_ids=pid_list,
        raws=raws,
        segments=segments,
        arrays=FeatureArrays(
            {name: x[:, j] for j, name in enumerate(numeric)},
            dict(zip(categorical, cats, strict=True)),
        ),
        outputs=PredictionColumns(scores, labels) if objects else None,
    )
    batch = DecodedBatch(messages=n, bytes_in=sum(map(len, raws)))
    batch.last_offsets = polled.last_offsets()
    _by_model(batch, model_list, whole)  # as the exact path splits a batch by model
    for model, events in batch.by_model.items():
        # another model's feature in this model's events: an extra one, counted event by
        # event; the columns keep the model's own features only
        own, arrays = shapes.by_model[model].names, events.arrays
        assert arrays is not None
        for name in arrays.numbers.keys() - own:
            if not np.isnan(arrays.numbers.pop(name)).all():
                return None
        for name in arrays.categories.keys() - own:
            values = arrays.categories.pop(name)
            if values.count(None) != len(values):
                return None
    return batch


#: segment values the exact path counts (decode._SEGMENT_TYPES), as the reader types them
_SEGMENT_ARROW = (pa.string(), pa.int64(), pa.bool_())


def _segments(column: pa.Array | None, buf: bytes, n: int) -> list[Any] | None:
    """Each event's segments as the exact path reads them (a dict, or None), or None when
    this path cannot tell: a segment value of another type (the exact path names it a
    dead letter), or a JSON null anywhere in a batch with segments. The reader gives a
    key absent from an event as null, and a null value (a dead letter to the exact
    path) looks the same. The order of an event's keys is the batch's: nothing depends
    on it (`join` spells segments sorted by key)."""
    if column is None or column.null_count == n:
        return [None] * n
    if not pa.types.is_struct(column.type) or b"null" in buf:
        return None
    if any(column.type.field(i).type not in _SEGMENT_ARROW for i in range(column.type.num_fields)):
        return None
    # column by column, each distinct combination of values made a dict once (segments
    # repeat: regions, devices, tiers); the events share it, as nothing changes them
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    values: Any = (
        zip(*(child.to_pylist() for child in column.flatten()), strict=True)
        if names
        else repeat((), n)
    )
    present = column.is_valid().to_pylist()
    made: dict[tuple[Any, ...], dict[str, Any]] = {}
    out: list[Any] = []
    for valid, row in zip(present, values, strict=True):
        if not valid:
            out.append(None)
            continue
        seg = made.get(row)
        if seg is None:
            seg = made[row] = {k: v for k, v in zip(names, row, strict=True) if v is not None}
        out.append(seg)
    return out


def _bad_ids(ids: pa.Array) -> bool:
    lengths = pc.utf8_length(ids)
    return bool(pc.min(lengths).as_py() < 1 or pc.max(lengths).as_py() > _MAX_ID)


def _finite(arr: pa.Array) -> bool:
    """No NaN or infinity among the floats anywhere in `arr` (its struct fields and list
    items too: an unknown field of the event is read, and checked, as well)."""
    t = arr.type
    if pa.types.is_floating(t):
        return arr.null_count == len(arr) or bool(pc.all(pc.is_finite(arr)).as_py())
    if pa.types.is_struct(t):
        return all(_finite(arr.field(k)) for k in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _finite(arr.flatten())
    return True


def _bounded(features: pa.StructArray) -> bool:
    """No feature value beyond `MAX_MAGNITUDE` (the exact path names such events)."""
    for k in range(features.type.num_fields):
        child = features.field(k)
        if not pa.types.is_floating(child.type) or child.null_count == len(child):
            continue
        top = pc.max(pc.abs(child)).as_py()
        if not top <= MAX_MAGNITUDE:
            return False
    return True


def _seconds(stamps: pa.Array, msgs: list[Any]) -> list[float] | None:
    """Event times in epoch seconds by the exact path's rule (`decode._event_seconds`:
    the Kafka message time where there is none), or None when one is out of range or
    no time at all (the exact path names it)."""
    if not (pa.types.is_string(stamps.type) or pa.types.is_floating(stamps.type)):
        return None
    return event_seconds_or_none(stamps.to_pylist(), msgs)


def _only_own_features(features: pa.StructArray, shape: EventShape) -> bool:
    """A model's events carry no other model's features (those are extra features of
    theirs, counted event by event)."""
    own = shape.names
    for k in range(features.type.num_fields):
        name = features.type.field(k).name
        if name not in own and features.field(k).null_count != len(features):
            return False
    return True


def _feature_arrays(features: pa.StructArray, shape: EventShape) -> FeatureArrays:
    numbers: dict[str, np.ndarray] = {}
    categories: dict[str, list[object]] = {}
    for name, _ in shape.features:
        col = features.field(name)
        if name in shape.numeric:
            numbers[name] = col.to_numpy(zero_copy_only=False)
        else:
            categories[name] = col.to_pylist()
    return FeatureArrays(numbers, categories)


def _prediction_columns(prediction: pa.Array) -> PredictionColumns | None:
    if not pa.types.is_struct(prediction.type):
        return None
    names = {prediction.type.field(k).name for k in range(prediction.type.num_fields)}
    n = len(prediction)
    scores = prediction.field("score").to_pylist() if "score" in names else [None] * n
    labels = prediction.field("label").to_pylist() if "label" in names else [None] * n
    return PredictionColumns(scores, labels)
