"""The columnar decode — the compiled scanner and pyarrow's JSON reader, each — gives
exactly what the event-by-event decode gives, or gives the batch back to it.

The reference is the exact path (`decode_predictions` without a columnar reader, itself
held to the pydantic contract in test_decode.py): for clean batches, for batches of two
models, and for a clean batch with one event of each kind of trouble mixed in, the
decoded columns, the dead letters and the window sketches built from them must be equal
to the last bit.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from streamdrift import synthetic
from streamdrift.columnar import EventShape, EventShapes, decode_columns
from streamdrift.config import MonitorConfig
from streamdrift.decode import DecodedBatch, ModelEvents, decode_predictions
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile
from streamdrift.sketch import WindowSketch, sketch_batch

from .test_decode import FakeMessage

BIG = 1 << 16
NOW = time.time()


@pytest.fixture(scope="module")
def loan(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProfile:
    ref = synthetic.write_loan_reference(tmp_path_factory.mktemp("loan") / "loan.csv", rows=3000)
    return build_profile(
        "loan",
        ref,
        prediction_column="score",
        label_column="default",
        config=MonitorConfig(window_seconds=600),
    )


def _fraud(n: int, seed: int = 1, model: str = "fraud") -> list[dict[str, Any]]:
    return [
        orjson.loads(v)
        for _, v in synthetic.prediction_events(model, n, NOW - 7200, 7200, seed=seed)
    ]


def _loan(n: int, seed: int = 2) -> list[dict[str, Any]]:
    pairs = synthetic.loan_events("loan", n, NOW - 1800, 1800, seed=seed)[0]
    return [orjson.loads(v) for _, v in pairs]


def _messages(values: list[bytes], first_offset: int = 0) -> list[FakeMessage]:
    return [
        FakeMessage(v, partition=i % 3, offset=first_offset + i // 3) for i, v in enumerate(values)
    ]


def _shapes(profiles: dict[str, ReferenceProfile], learn_from: list[FakeMessage]) -> EventShapes:
    """Shapes as a worker learns them: from a batch the exact path decoded."""
    shapes = EventShapes()
    exact = decode_predictions(learn_from, BIG)
    for model, events in exact.by_model.items():
        shapes.learn(model, events, profiles[model])
    shapes.recent = tuple(sorted(exact.by_model))
    return shapes


@pytest.fixture(params=["scan", "arrow"])
def reader(request: pytest.FixtureRequest) -> str:
    """Every test of the columns runs with each reader."""
    return str(request.param)


def _reader(shapes: EventShapes, reader: str):
    return partial(decode_columns, shapes=shapes, max_event_bytes=BIG, reader=reader)


def _assert_same_windows(got: dict[int, WindowSketch], want: dict[int, WindowSketch]) -> None:
    assert got.keys() == want.keys()
    for start, w in want.items():
        g = got[start]
        for name in (
            "count",
            "versions",
            "invalid",
            "extra",
            "extra_numbers",
            "extra_sums",
            "outliers",
            "outlier_examples",
            "duplicates",
            "score_bins",
            "slice_counts",
        ):
            assert getattr(g, name) == getattr(w, name), f"{start}.{name}"
        assert g.numeric.keys() == w.numeric.keys()
        for name, s in w.numeric.items():
            t = g.numeric[name]
            np.testing.assert_array_equal(t.bins, s.bins)
            assert (t.missing, t.n, t.out_of_range) == (s.missing, s.n, s.out_of_range), name
            assert (t.total, t.total_sq, t.minimum, t.maximum) == (
                s.total,
                s.total_sq,
                s.minimum,
                s.maximum,
            ), name
        assert g.categorical.keys() == w.categorical.keys()
        for name, c in w.categorical.items():
            d = g.categorical[name]
            assert (d.counts, d.missing, d.other) == (c.counts, c.missing, c.other), name
        if w.correlation is None:
            assert g.correlation is None
        else:
            assert g.correlation is not None
            for k in ("n", "sums", "products"):
                if hasattr(w.correlation, k):
                    np.testing.assert_array_equal(
                        getattr(g.correlation, k), getattr(w.correlation, k)
                    )
        _assert_same_windows(g.slices, w.slices)


_COLUMNS = ("partitions", "offsets", "timestamps", "versions", "prediction_ids", "raws")


def _assert_same(
    got: DecodedBatch, want: DecodedBatch, profiles: dict[str, ReferenceProfile]
) -> None:
    """Equal decodes: counts, offsets, dead letters, every column, and the sketches,
    class and score of each model's events."""
    assert (got.messages, got.bytes_in, got.last_offsets) == (
        want.messages,
        want.bytes_in,
        want.last_offsets,
    )
    key = [(d.offset, d.partition, d.reason, d.detail, d.model_id, d.value) for d in got.dead]
    assert key == [
        (d.offset, d.partition, d.reason, d.detail, d.model_id, d.value) for d in want.dead
    ]
    assert got.by_model.keys() == want.by_model.keys()
    for model, w in want.by_model.items():
        g = got.by_model[model]
        for name in _COLUMNS:
            assert getattr(g, name) == getattr(w, name), f"{model}.{name}"
        g_windows, g_bad, g_good, g_out = sketch_batch(g, profiles[model])
        w_windows, w_bad, w_good, w_out = sketch_batch(w, profiles[model])
        assert g_out == w_out
        assert [(b.index, b.reason, b.detail) for b in g_bad] == [
            (b.index, b.reason, b.detail) for b in w_bad
        ]
        assert g_good.prediction_ids == w_good.prediction_ids
        _assert_same_windows(g_windows, w_windows)


def test_a_clean_batch_is_read_in_columns_and_sketches_the_same(profile, reader):
    events = _fraud(4000)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:500]))
    msgs = _messages(values[500:], first_offset=500)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    assert got.by_model["fraud"].arrays is not None  # read in columns
    want = decode_predictions(msgs, BIG)
    assert want.by_model["fraud"].arrays is None
    _assert_same(got, want, {"fraud": profile})


def test_two_models_in_one_batch_share_a_schema_and_keep_their_own_features(profile, reader, loan):
    rng = np.random.default_rng(3)
    events = _fraud(1500) + _loan(1500)
    order = rng.permutation(len(events))
    values = [orjson.dumps(events[i]) for i in order]
    profiles = {"fraud": profile, "loan": loan}
    shapes = _shapes(profiles, _messages(values[:600]))
    assert set(shapes.by_model) == {"fraud", "loan"}
    msgs = _messages(values[600:], first_offset=600)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    assert all(e.arrays is not None for e in got.by_model.values())
    _assert_same(got, decode_predictions(msgs, BIG), profiles)


def _set(path: str, value: Any):
    def edit(e: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = e
        for p in parents:
            target = target[p]
        target[last] = value

    return edit


def _drop(path: str):
    def edit(e: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = e
        for p in parents:
            target = target[p]
        del target[last]

    return edit


#: one event of each kind of trouble (or of a valid oddity), as an edit of a clean event,
#: or as raw bytes
TROUBLE: dict[str, Any] = {
    "wrong-typed feature": _set("features.f03", "12.5"),
    "bool feature": _set("features.f04", True),
    "nested feature": _set("features.f05", {"a": 1}),
    "huge feature": _set("features.f06", 1e101),
    "missing feature": _drop("features.f07"),
    "null feature": _set("features.f08", None),
    "extra feature": _set("features.brand_new", 3.5),
    "numeric category": _set("features.country", 49),
    "missing model_id": _drop("model_id"),
    "empty prediction_id": _set("prediction_id", ""),
    "long prediction_id": _set("prediction_id", "x" * 300),
    "numeric prediction_id": _set("prediction_id", 12),
    "null features": _set("features", None),
    "missing prediction": _drop("prediction"),
    "string score": _set("prediction.score", "0.5"),
    "huge score": _set("prediction.score", 1e120),
    "float label": _set("prediction.label", 1.0),
    "string label": _set("prediction.label", "fraud"),
    "bare score": _set("prediction", 0.7),
    "numeric version": _set("model_version", 2),
    "text timestamp": _set("timestamp", "2026-11-30T10:00:00Z"),
    "ms timestamp": _set("timestamp", (NOW - 100) * 1000),
    "future timestamp": _set("timestamp", NOW + 3 * 86400),
    "negative timestamp": _set("timestamp", -5.0),
    "no timestamp": _drop("timestamp"),
    "segments": _set("segments", {"region": "eu"}),
    "segments of three types": _set("segments", {"tier": 3, "vip": True, "region": "eu"}),
    "empty segments": _set("segments", {}),
    "null segments": _set("segments", None),
    "null segment value": _set("segments", {"region": None}),
    "float segment value": _set("segments", {"band": 0.5}),
    "nested segment value": _set("segments", {"region": {"a": 1}}),
    "list segment value": _set("segments", {"region": ["eu"]}),
    "segments not an object": _set("segments", "eu"),
    "unknown top-level field": _set("trace", {"id": "abc", "n": [1, 2]}),
    "category like Info": _set("features.device", "Infotainment"),
    "unicode category": _set("features.device", "tablette-été"),
    "NaN literal": b'{"prediction_id":"n1","model_id":"fraud","features":{"f00":NaN},'
    b'"prediction":{"score":0.1,"label":0}}',
    "Infinity in an unknown field": b'{"prediction_id":"n2","model_id":"fraud","x":-Infinity,'
    b'"features":{"f00":1.0},"prediction":{"score":0.1,"label":0}}',
    "duplicate key": b'{"prediction_id":"n3","model_id":"fraud","model_id":"fraud",'
    b'"features":{"f00":1.0},"prediction":{"score":0.1,"label":0}}',
    "two documents": b'{"prediction_id":"n4","model_id":"fraud","features":{},'
    b'"prediction":0.1}\n{"a":1}',
    "pretty-printed": b'{\n  "prediction_id": "n5",\n  "model_id": "fraud",\n'
    b'  "features": {"f00": 1.0},\n  "prediction": {"score": 0.1, "label": 0}\n}',
    "not UTF-8": b'{"prediction_id":"n6","model_id":"fraud","features":{"country":"\xff"},'
    b'"prediction":{"score":0.1,"label":0}}',
    "not JSON": b"{broken",
    "an array": b"[1, 2, 3]",
    "empty": b"",
    "carriage return": b'{"prediction_id":"n7","model_id":"fraud",\r"features":{},'
    b'"prediction":{"score":0.1,"label":0}}',
    "unregistered model": _set("model_id", "nobody"),
    "oversized": _set("features.device", "x" * BIG),
}


#: valid oddities the columns hold: these batches must not need the exact path
READ_IN_COLUMNS = {
    "missing feature",
    "null feature",
    "huge score",  # a valid number to the decode; the sketch names it, on either path
    "ms timestamp",
    "no timestamp",
    "unknown top-level field",
    "segments",
    "segments of three types",
    "empty segments",
    "null segments",
    "category like Info",
    "unicode category",
    "pretty-printed",  # line breaks inside a value, between its tokens: still one row
    "carriage return",
}
#: ... and these too for the scanner, which keeps each value as sent, not typed per column
SCANNED_TOO = {"numeric category", "text timestamp", "string label"}


@pytest.mark.parametrize("trouble", list(TROUBLE))
def test_a_batch_with_trouble_decodes_as_the_exact_path_decodes_it(profile, reader, trouble):
    events = _fraud(1200, seed=5)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:300]))
    edit = TROUBLE[trouble]
    at = 300 + 457
    if isinstance(edit, bytes):
        values[at] = edit
    else:
        edit(events[at])
        values[at] = orjson.dumps(events[at])
    msgs = _messages(values[300:], first_offset=300)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    want = decode_predictions(msgs, BIG)
    profiles = {"fraud": profile, "nobody": profile}
    _assert_same(got, want, profiles)
    in_columns = got.by_model["fraud"].arrays is not None
    read = READ_IN_COLUMNS | (SCANNED_TOO if reader == "scan" else set())
    assert in_columns == (trouble in read)


def test_values_that_only_parse_together_are_not_read_as_rows(profile, reader):
    """Three values, none valid alone — a document cut in two, and two documents in one
    value — make three rows when joined by line breaks: they must not be taken for
    three events."""
    events = _fraud(600, seed=17)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:300]))
    whole = orjson.dumps(events[400])
    cut = whole.index(b'"prediction"')
    values[400] = whole[:cut] + b'"prediction":'  # ends inside the document
    values[401] = b'{"score":0.5,"label":1}}'  # ... and this closes it
    values[402] = values[402] + values[403]  # two documents in one value
    msgs = _messages(values[300:], first_offset=300)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    want = decode_predictions(msgs, BIG)
    assert {d.reason for d in want.dead} == {"invalid_json"} and len(want.dead) == 3
    _assert_same(got, want, {"fraud": profile})


@pytest.mark.parametrize(
    "stamp",
    [lambda t: t, lambda t: t * 1000, lambda t: int(t * 1e9), None, "text"],
    ids=["seconds", "milliseconds", "nanoseconds", "absent", "rfc3339"],
)
def test_every_kind_of_event_time_reads_the_same_in_columns(profile, reader, stamp):
    events = _fraud(900, seed=7)
    for e in events:
        if stamp is None:
            del e["timestamp"]
        elif stamp == "text":
            e["timestamp"] = np.datetime64(int(e["timestamp"] * 1e6), "us").astype(str) + "+00:00"
        else:
            e["timestamp"] = stamp(e["timestamp"])
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:300]))
    msgs = _messages(values[300:], first_offset=300)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    assert got.by_model["fraud"].arrays is not None
    _assert_same(got, decode_predictions(msgs, BIG), {"fraud": profile})


def test_most_events_with_extra_features_make_no_shape_but_segments_do(profile):
    events = _fraud(60, seed=9)
    for e in events[:31]:
        e["features"]["brand_new"] = 1.0
    exact = decode_predictions(_messages([orjson.dumps(e) for e in events]), BIG)
    assert EventShape.learn(exact.by_model["fraud"], profile) is None
    for e in events:
        e["features"].pop("brand_new", None)
        e["segments"] = {"region": "eu"}
    exact = decode_predictions(_messages([orjson.dumps(e) for e in events]), BIG)
    assert EventShape.learn(exact.by_model["fraud"], profile) is not None


def test_segments_of_any_keys_in_any_order_read_in_columns_as_the_exact_path_reads_them(
    profile, reader
):
    """Every event with segments: keys present in some events only, in different orders,
    values of the three types a segment may have. The columns give each event its own
    keys (none of another's), and the join's records spell them alike."""
    from streamdrift.join import _segments as spelled

    events = _fraud(3000, seed=21)
    rng = np.random.default_rng(21)
    for i, e in enumerate(events):
        seg = {"region": ["eu", "us"][i % 2], "tier": int(rng.integers(0, 4)), "vip": i % 3 == 0}
        keep = [k for k in seg if rng.uniform() < 0.7]
        rng.shuffle(keep)
        e["segments"] = {k: seg[k] for k in keep}
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:500]))
    msgs = _messages(values[500:], first_offset=500)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    want = decode_predictions(msgs, BIG)
    assert got.by_model["fraud"].arrays is not None
    _assert_same(got, want, {"fraud": profile})
    g, w = got.by_model["fraud"].segments, want.by_model["fraud"].segments
    assert [spelled(s) for s in g] == [spelled(s) for s in w]


def test_shapes_are_not_learned_from_events_the_columns_cannot_hold(profile):
    def shape_of(edit) -> EventShape | None:
        events = _fraud(50, seed=9)
        edit(events[10])
        exact = decode_predictions(_messages([orjson.dumps(e) for e in events]), BIG)
        return EventShape.learn(exact.by_model["fraud"], profile)

    assert shape_of(lambda e: None) is not None
    # an event with an extra feature is left to the exact path, the others still make a
    # shape; segments are read as each batch sends them
    assert shape_of(_set("features.brand_new", 1.0)) is not None
    assert shape_of(_set("segments", {"region": "eu"})) is not None
    assert shape_of(_set("features.country", 3)) is None  # a category of two types
    assert shape_of(_set("prediction", 0.3)) is None  # objects and bare numbers


def test_a_model_registered_again_with_other_features_is_read_from_its_values(
    profile, loan, tmp_path: Path, reader
):
    """Events read in columns for one profile, sketched for another (the model was
    registered again between decode and apply): the features come from the raw values."""
    events = _fraud(800, seed=11)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:300]))
    msgs = _messages(values[300:], first_offset=300)
    got = decode_predictions(msgs, BIG, _reader(shapes, reader)).by_model["fraud"]
    assert got.arrays is not None
    narrower = build_profile(
        "fraud",
        synthetic.write_reference(tmp_path / "r.csv", rows=2000),
        prediction_column="score",
        label_column="is_fraud",
        features=[*synthetic.NUMERIC[:-1], "country"],
        config=MonitorConfig(window_seconds=3600),
    )
    want = decode_predictions(msgs, BIG).by_model["fraud"]
    g_windows = sketch_batch(got, narrower)[0]
    w_windows = sketch_batch(want, narrower)[0]
    _assert_same_windows(g_windows, w_windows)
    assert any(w.extra for w in w_windows.values())  # f19 and device became extra


def test_a_shape_that_stops_fitting_sits_out_then_tries_again(profile, reader):
    events = _fraud(600, seed=13)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:300]))
    read = _reader(shapes, reader)
    odd = [orjson.dumps({**e, "features": {**e["features"], "f00": "x"}}) for e in events]
    for _ in range(3):  # three misses in a row
        assert decode_predictions(_messages(odd[300:]), BIG, read).by_model["fraud"].arrays is None
    assert shapes.skip > 0
    clean = _messages(values[300:])
    for _ in range(shapes.skip):
        assert decode_predictions(clean, BIG, read).by_model["fraud"].arrays is None
    assert decode_predictions(clean, BIG, read).by_model["fraud"].arrays is not None


def test_selecting_events_keeps_the_arrays_in_step(profile, reader):
    events = _fraud(400, seed=15)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:100]))
    read = _reader(shapes, reader)
    got: ModelEvents = decode_predictions(_messages(values[100:]), BIG, read).by_model["fraud"]
    want = decode_predictions(_messages(values[100:]), BIG).by_model["fraud"]
    keep = list(range(0, 300, 7))
    _assert_same_windows(
        sketch_batch(got.select(keep), profile)[0], sketch_batch(want.select(keep), profile)[0]
    )


class _ConsumerError:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return f"consumer error {self._code}"


@pytest.mark.parametrize("code", [-191, -195], ids=["end of partition", "transport error"])
def test_a_batch_with_a_consumer_error_decodes_as_the_exact_path_decodes_it(
    profile, reader, code, caplog
):
    """The end of a partition is no error: the rest is read in columns. A real consumer
    error sends the batch to the exact path, which logs it; either way the decode is the
    exact path's. An offset lower than one before it in its partition does not lower the
    highest."""
    events = _fraud(700, seed=19)
    values = [orjson.dumps(e) for e in events]
    shapes = _shapes({"fraud": profile}, _messages(values[:300]))
    msgs = _messages(values[300:], first_offset=300)
    msgs.insert(200, FakeMessage(None, partition=2, offset=10_000, error=_ConsumerError(code)))
    msgs[300]._offset = 1  # type: ignore[attr-defined]
    got = decode_predictions(msgs, BIG, _reader(shapes, reader))
    want = decode_predictions(msgs, BIG)
    _assert_same(got, want, {"fraud": profile})
    assert (got.by_model["fraud"].arrays is not None) == (code == -191)
    assert ("consumer error -195" in caplog.text) == (code == -195)
