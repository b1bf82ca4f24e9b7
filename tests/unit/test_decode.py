"""decode_predictions, held to the verdicts of the pydantic contract model.

The reference for "is this event valid" is `PredictionEvent.model_validate` on the payload
parsed by the standard library's `json` (not orjson, which decode.py uses); timestamps are
checked against datetimes built in the test and against pydantic's own parse; epoch
numbers in seconds, milliseconds, microseconds or nanoseconds must read as the same
seconds on the column path and the event-by-event path.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from streamdrift.decode import (
    UNIT_BOUNDS,
    ModelEvents,
    ModelLabels,
    _decode_each,
    _decode_fast,
    _decode_labels_each,
    _decode_labels_fast,
    _decode_labels_scanned,
    column_array,
    decode_labels,
    decode_predictions,
    epoch_seconds,
    epoch_seconds_array,
    parse_timestamp,
)
from streamdrift.events import PredictionEvent
from streamdrift.sketch import validate_features

MESSAGE_MS = 1_790_000_000_123  # the Kafka message time of every fake message
BIG = 1 << 20


class FakeError:
    def code(self) -> int:
        return -191  # like KafkaError._PARTITION_EOF

    def __str__(self) -> str:
        return "end of partition"


class FakeMessage:
    """The confluent_kafka.Message methods decode.py calls."""

    def __init__(
        self,
        value: bytes | None,
        *,
        topic: str = "predictions",
        partition: int = 0,
        offset: int = 0,
        key: bytes | None = b"k",
        timestamp_ms: int = MESSAGE_MS,
        error: object | None = None,
    ) -> None:
        self._value, self._topic, self._partition = value, topic, partition
        self._offset, self._key, self._ts, self._error = offset, key, timestamp_ms, error

    def error(self):
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)  # TIMESTAMP_CREATE_TIME


BASE = {
    "prediction_id": "a1b2",
    "model_id": "fraud",
    "model_version": "3.1.0",
    "timestamp": "2026-11-22T10:00:00Z",
    "features": {"amount": 120.5, "country": "DE", "age": None},
    "prediction": {"score": 0.83, "label": 1},
    "segments": {"region": "EU"},
}


def with_(**changes: object) -> bytes:
    return json.dumps({**BASE, **changes}).encode()


def without(*keys: str) -> bytes:
    return json.dumps({k: v for k, v in BASE.items() if k not in keys}).encode()


def pydantic_accepts(raw: bytes) -> bool:
    try:
        obj = json.loads(raw)
    except ValueError:
        return False
    try:
        PredictionEvent.model_validate(obj)
    except ValidationError:
        return False
    return True


# (name, payload, reason expected from decode; None: valid)
CASES: list[tuple[str, bytes, str | None]] = [
    ("design example", with_(), None),
    ("minimal", without("model_version", "timestamp", "segments"), None),
    ("extra fields", with_(trace_id="x", nested={"a": [1, 2]}), None),
    ("empty features", with_(features={}), None),
    ("unicode ids", with_(prediction_id="äöü-✓", model_id="モデル"), None),
    ("ids of 256 chars", with_(prediction_id="p" * 256, model_id="m" * 256), None),
    ("prediction float", with_(prediction=0.25), None),
    ("prediction int", with_(prediction=3), None),
    ("prediction string", with_(prediction="cat"), None),
    ("prediction bool", with_(prediction=True), None),
    ("prediction empty dict", with_(prediction={}), None),
    ("prediction label only", with_(prediction={"label": "spam"}), None),
    ("prediction label bool", with_(prediction={"label": False, "score": 0}), None),
    ("prediction label 1.0", with_(prediction={"label": 1.0}), None),
    ("prediction extra keys", with_(prediction={"score": 0.1, "probs": [0.1, 0.9]}), None),
    ("model_version null", with_(model_version=None), None),
    ("segments null", with_(segments=None), None),
    ("segments mixed", with_(segments={"region": "EU", "tier": 2, "vip": True}), None),
    ("timestamp Z", with_(timestamp="2026-11-22T10:00:00Z"), None),
    ("timestamp offset", with_(timestamp="2026-11-22T12:00:00+02:00"), None),
    ("timestamp fraction", with_(timestamp="2026-11-22T10:00:00.250Z"), None),
    ("timestamp lower t z", with_(timestamp="2026-11-22t10:00:00z"), None),
    ("timestamp naive", with_(timestamp="2026-11-22T10:00:00"), None),
    ("timestamp epoch int", with_(timestamp=1_795_000_000), None),
    ("timestamp epoch float", with_(timestamp=1_795_000_000.5), None),
    ("timestamp epoch ms", with_(timestamp=1_795_000_000_123), None),
    ("timestamp epoch µs", with_(timestamp=1_795_000_000_123_456), None),
    ("timestamp epoch ns", with_(timestamp=1_795_000_000_123_456_789), None),
    ("timestamp epoch ms float", with_(timestamp=1.795e12), None),
    ("timestamp null", with_(timestamp=None), None),
    ("truncated JSON", b'{"prediction_id": "a1b2", "model_id": ', "invalid_json"),
    ("empty value", b"", "invalid_json"),
    ("not UTF-8", b'{"prediction_id": "\xff\xfe"}', "invalid_json"),
    ("NaN feature", with_().replace(b"120.5", b"NaN"), "invalid_json"),
    ("trailing garbage", with_() + b" x", "invalid_json"),
    ("JSON array", json.dumps([BASE]).encode(), "not_an_object"),
    ("JSON string", b'"fraud"', "not_an_object"),
    ("JSON number", b"42", "not_an_object"),
    ("JSON null", b"null", "not_an_object"),
    ("prediction_id missing", without("prediction_id"), "missing_field"),
    ("prediction_id null", with_(prediction_id=None), "missing_field"),
    ("prediction_id empty", with_(prediction_id=""), "wrong_type"),
    ("prediction_id number", with_(prediction_id=17), "wrong_type"),
    ("prediction_id too long", with_(prediction_id="p" * 257), "wrong_type"),
    ("model_id missing", without("model_id"), "missing_field"),
    ("model_id empty", with_(model_id=""), "wrong_type"),
    ("model_id number", with_(model_id=3), "wrong_type"),
    ("model_id list", with_(model_id=["fraud"]), "wrong_type"),
    ("model_id too long", with_(model_id="m" * 257), "wrong_type"),
    ("features missing", without("features"), "missing_field"),
    ("features list", with_(features=[1, 2]), "wrong_type"),
    ("features string", with_(features="amount=1"), "wrong_type"),
    ("prediction missing", without("prediction"), "missing_field"),
    ("prediction null", with_(prediction=None), "missing_field"),
    ("prediction list", with_(prediction=[0.1, 0.9]), "wrong_type"),
    ("prediction string score", with_(prediction={"score": "high"}), "wrong_type"),
    ("prediction list score", with_(prediction={"score": [0.5]}), "wrong_type"),
    ("prediction fractional label", with_(prediction={"label": 1.5}), "wrong_type"),
    ("prediction dict label", with_(prediction={"label": {"c": 1}}), "wrong_type"),
    ("model_version number", with_(model_version=3.1), "wrong_type"),
    ("model_version bool", with_(model_version=True), "wrong_type"),
    ("segments list", with_(segments=["EU"]), "wrong_type"),
    ("segments string", with_(segments="EU"), "wrong_type"),
    ("segment value float", with_(segments={"region": 1.5}), "wrong_type"),
    ("segment value null", with_(segments={"region": None}), "wrong_type"),
    ("segment value object", with_(segments={"region": {"eu": 1}}), "wrong_type"),
    ("timestamp garbage", with_(timestamp="yesterday"), "bad_timestamp"),
    ("timestamp empty", with_(timestamp=""), "bad_timestamp"),
    ("timestamp hour 24", with_(timestamp="2026-11-22T24:00:00Z"), "bad_timestamp"),
    ("timestamp month 13", with_(timestamp="2026-13-01T00:00:00Z"), "bad_timestamp"),
    ("timestamp list", with_(timestamp=[2026, 11, 22]), "bad_timestamp"),
    ("timestamp object", with_(timestamp={"s": 1}), "bad_timestamp"),
]


def test_cases_cover_every_reason():
    reasons = {r for _, _, r in CASES}
    assert reasons == {
        None,
        "invalid_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
    }


@pytest.mark.parametrize(("name", "raw", "reason"), CASES, ids=[c[0] for c in CASES])
def test_verdict_matches_pydantic(name, raw, reason):
    assert pydantic_accepts(raw) is (reason is None), "the case table disagrees with pydantic"
    batch = decode_predictions([FakeMessage(raw, partition=2, offset=41)], BIG)
    assert batch.messages == 1
    assert batch.bytes_in == len(raw)
    assert batch.last_offsets == {("predictions", 2): 41}
    if reason is None:
        assert batch.dead == []
        (model,) = batch.by_model
        events = batch.by_model[model]
        event = json.loads(raw)
        assert model == event["model_id"]
        assert len(events) == 1
        assert events.prediction_ids == [event["prediction_id"]]
        assert events.features == [event["features"]]
        assert events.predictions == [event["prediction"]]
        assert events.versions == [event.get("model_version")]
        assert events.partitions == [2]
        assert events.offsets == [41]
        assert events.raws == [raw]
    else:
        assert batch.by_model == {}
        (dead,) = batch.dead
        assert dead.reason == reason
        assert dead.value == raw
        assert (dead.topic, dead.partition, dead.offset, dead.key) == ("predictions", 2, 41, b"k")


def test_dead_letter_carries_model_only_when_model_id_is_valid():
    messages = [
        FakeMessage(without("features"), offset=1),
        FakeMessage(with_(model_id=""), offset=2),
        FakeMessage(with_(model_id=7), offset=3),
    ]
    dead = decode_predictions(messages, BIG).dead
    assert [(d.offset, d.model_id) for d in dead] == [(1, "fraud"), (2, None), (3, None)]
    assert "features" in dead[0].detail


def test_oversized_is_rejected_by_size_before_parsing():
    raw = with_(features={f"f{i}": i * 1.5 for i in range(50)})
    assert pydantic_accepts(raw)
    ok = decode_predictions([FakeMessage(raw, offset=5)], max_event_bytes=len(raw))
    assert len(ok.by_model["fraud"]) == 1 and ok.dead == []
    batch = decode_predictions([FakeMessage(raw, offset=5)], max_event_bytes=len(raw) - 1)
    (dead,) = batch.dead
    assert dead.reason == "oversized"
    assert dead.value == raw and dead.offset == 5
    assert str(len(raw)) in dead.detail
    assert batch.bytes_in == len(raw)
    # oversized garbage is oversized, not invalid JSON: the size check comes first
    garbage = b"{" * 300
    assert decode_predictions([FakeMessage(garbage)], 299).dead[0].reason == "oversized"


def test_tombstone_is_not_an_object():
    batch = decode_predictions([FakeMessage(None, offset=9)], BIG)
    (dead,) = batch.dead
    assert (dead.reason, dead.value, dead.offset) == ("not_an_object", None, 9)
    assert batch.bytes_in == 0 and batch.messages == 1


# ---- feature values: checked by validate_features after decode -----------------------


@pytest.mark.parametrize(
    "features",
    [
        {"amount": {"value": 1}},
        {"country": ["DE"]},
        {"unknown_feature": {"a": 1}},
        {"amount": "12.5"},
        {"age": "old"},
    ],
)
def test_bad_feature_values_are_caught_by_decode_then_validate(features, small_profile):
    """decode leaves per-value checks to validate_features (which knows the numeric
    features); together they reject what pydantic rejects, or what the profile forbids."""
    raw = with_(features=features)
    events = decode_predictions([FakeMessage(raw)], BIG).by_model["fraud"]
    bad = validate_features(events, small_profile)
    assert [(b.index, b.reason) for b in bad] == [(0, "wrong_type")]
    assert next(iter(features)) in bad[0].detail
    nested = any(isinstance(v, dict | list) for v in features.values())
    assert pydantic_accepts(raw) is not nested  # strings are valid scalars for pydantic


def test_good_feature_values_pass_decode_and_validate(small_profile):
    features = {"amount": 3, "age": True, "country": "DE", "vip": None, "channel": 2, "new": "x"}
    raw = with_(features=features)
    assert pydantic_accepts(raw)
    events = decode_predictions([FakeMessage(raw)], BIG).by_model["fraud"]
    assert validate_features(events, small_profile) == []


# ---- stricter than pydantic's lax coercion --------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"prediction": {"score": "0.5"}}, "wrong_type"),
        ({"prediction": {"score": True}}, "wrong_type"),
        ({"timestamp": True}, "bad_timestamp"),
    ],
    ids=["numeric string score", "bool score", "bool timestamp"],
)
def test_stricter_than_lax_pydantic_like_the_json_schema(changes, reason):
    """Pydantic's lax mode coerces these; the published contract (the JSON Schema made
    from the model, checked here with jsonschema) and pydantic's strict JSON mode do not,
    and neither does decode."""
    jsonschema = pytest.importorskip("jsonschema")
    raw = with_(**changes)
    validator = jsonschema.Draft202012Validator(PredictionEvent.model_json_schema())
    assert not validator.is_valid(json.loads(raw))
    with pytest.raises(ValidationError):
        PredictionEvent.model_validate_json(raw, strict=True)
    assert decode_predictions([FakeMessage(raw)], BIG).dead[0].reason == reason


# ---- timestamps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00+00:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T12:30:00+02:30", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T05:00:00-05:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00.250Z", datetime(2026, 11, 22, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-22t10:00:00z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22 10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),  # naive: UTC
    ],
)
def test_rfc3339_timestamps(text, expected):
    raw = with_(timestamp=text)
    (ts,) = decode_predictions([FakeMessage(raw)], BIG).by_model["fraud"].timestamps
    assert ts == expected.timestamp()
    # and the same instant as pydantic reads it
    parsed = PredictionEvent.model_validate(json.loads(raw)).timestamp
    assert isinstance(parsed, datetime)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    assert ts == parsed.timestamp()
    # and as the standard library reads it (which in Python 3.11 wants an upper-case T, Z)
    dt = datetime.fromisoformat(text.upper())
    assert ts == (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@pytest.fixture
def new_york(monkeypatch):
    """The process's local time zone is five hours behind UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_naive_timestamps_are_utc_whatever_the_local_zone():
    assert time.timezone != 0
    raw = with_(timestamp="2026-11-22T10:00:00")
    (ts,) = decode_predictions([FakeMessage(raw)], BIG).by_model["fraud"].timestamps
    assert ts == datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("epoch", [1_795_000_000, 1_795_000_000.75, 0, 86400])
def test_epoch_timestamps(epoch):
    (ts,) = (
        decode_predictions([FakeMessage(with_(timestamp=epoch))], BIG).by_model["fraud"].timestamps
    )
    assert type(ts) is float
    assert ts == float(epoch)


# one instant, 2026-11-18T11:06:40.5Z, in each unit an event may use
INSTANT = 1_795_000_000.5
IN_UNITS = {
    "seconds": 1_795_000_000.5,
    "milliseconds": 1_795_000_000_500,
    "microseconds": 1_795_000_000_500_000,
    "nanoseconds": 1_795_000_000_500_000_000,
}


@pytest.mark.parametrize("unit", IN_UNITS)
def test_every_unit_decodes_to_the_same_seconds(unit):
    raw = with_(timestamp=IN_UNITS[unit])
    (ts,) = decode_predictions([FakeMessage(raw)], BIG).by_model["fraud"].timestamps
    assert type(ts) is float
    assert ts == INSTANT
    (label_ts,) = (
        decode_labels([FakeMessage(label_event(IN_UNITS[unit]))], BIG).by_model["fraud"].timestamps
    )
    assert label_ts == INSTANT


def label_event(timestamp: object) -> bytes:
    return json.dumps(
        {"prediction_id": "a1b2", "model_id": "fraud", "label": 1, "timestamp": timestamp}
    ).encode()


@pytest.mark.parametrize(
    ("epoch", "seconds"),
    [
        (1e8, 1e8),  # 1973-03-03, the earliest time every unit reads right
        (1e11 - 1, 1e11 - 1),  # the year 5138 in seconds
        (1e11, 1e8),  # 1973-03-03 in milliseconds
        (9.9e13, 9.9e10),
        (1e14, 1e8),  # in microseconds
        (9.9e16, 9.9e10),
        (1e17, 1e8),  # in nanoseconds
        (-1e12, -1e9),  # the sign does not change the unit
    ],
)
def test_unit_bounds(epoch, seconds):
    assert UNIT_BOUNDS == (1e11, 1e14, 1e17)
    assert epoch_seconds(epoch) == seconds
    assert epoch_seconds_array(np.array([epoch])).tolist() == [seconds]


def test_years_1973_to_5000_cannot_be_read_in_the_wrong_unit():
    for year in (1974, 2000, 2026, 2100, 3000, 5000):
        s = datetime(year, 1, 1, tzinfo=UTC).timestamp()
        for scale in (1, 1e3, 1e6, 1e9):
            assert epoch_seconds(s * scale) == pytest.approx(s, rel=1e-15), (year, scale)


def test_mixed_units_in_one_batch():
    values = [*IN_UNITS.values(), "2026-11-18T11:06:40.5Z", None]
    messages = [
        FakeMessage(
            with_(timestamp=v, prediction_id=f"p{i}"), offset=i, timestamp_ms=1_795_000_000_500
        )
        for i, v in enumerate(values)
    ]
    batch = decode_predictions(messages, BIG)
    assert batch.dead == []
    assert batch.by_model["fraud"].timestamps == [INSTANT] * len(values)
    # numbers only: the batch's units divided out together
    numbers = messages[: len(IN_UNITS)]
    assert decode_predictions(numbers, BIG).by_model["fraud"].timestamps == [INSTANT] * 4


def _timestamps(batch) -> list[float]:
    return [t for events in batch.by_model.values() for t in events.timestamps]


@pytest.mark.parametrize(
    "values",
    [
        list(IN_UNITS.values()),
        [1_795_000_000, 1_795_000_000_001, 1_795_000_000_000_001, 1_795_000_000_000_000_001],
        [1.7e9 + i * 0.001 for i in range(50)],
        [(1.7e9 + i * 0.37) * 1e3 for i in range(50)],
        [int((1.7e9 + i * 1.1) * 1e6) for i in range(50)],
        [int(1.7e18) + i * 123_456_789 for i in range(50)],
        [1.7e9, 1.7e12, "2026-01-01T00:00:00Z", None, 1.7e15, 1.7e18, 1_700_000_000],
        [86400, 0, 1e8, 1e11, 1e14, 1e17],
    ],
    ids=["one instant", "ints", "seconds", "ms", "µs", "ns", "mixed", "bounds"],
)
def test_fast_and_event_by_event_paths_agree(values):
    messages = [FakeMessage(with_(timestamp=v), offset=i) for i, v in enumerate(values)]
    fast = _decode_fast(messages, BIG)
    assert fast is not None, "the column path should take this batch"
    each = _decode_each(messages, BIG)
    assert each.dead == []
    assert _timestamps(fast) == _timestamps(each)  # the same floats, bit for bit
    assert all(type(t) is float for t in _timestamps(fast))
    labels = decode_labels([FakeMessage(label_event(v)) for v in values], BIG)
    assert _timestamps(labels) == _timestamps(each)


FAR_AHEAD = time.time() + 2 * 86400


@pytest.mark.parametrize(
    "epoch",
    [
        -86400,  # before 1970, in seconds
        -1_795_000_000_000,  # and in milliseconds
        -1,
        FAR_AHEAD,  # more than a day ahead, in each unit
        FAR_AHEAD * 1e3,
        int(FAR_AHEAD * 1e6),
        int(FAR_AHEAD * 1e9),
        5e10,  # milliseconds before March 1973 read as seconds: the year 3554
        1e11 - 1,  # seconds in 5138
        9e19,  # nanoseconds in 4822
        (1 << 64) - 1,  # the largest integer JSON parsers keep: 2554 in nanoseconds
        1e300,
    ],
    # ids that do not change with the clock: test runners that collect in several
    # processes (pytest-xdist) must collect the same tests in each
    ids=[
        "before-1970-s",
        "before-1970-ms",
        "minus-1",
        "2-days-ahead-s",
        "2-days-ahead-ms",
        "2-days-ahead-us",
        "2-days-ahead-ns",
        "5e10",
        "1e11-1",
        "9e19",
        "2^64-1",
        "1e300",
    ],
)
def test_times_before_1970_or_far_ahead_in_any_unit_are_dead_letters(epoch):
    for raw in (with_(timestamp=epoch), label_event(epoch)):
        decode = decode_labels if b"features" not in raw else decode_predictions
        batch = decode([FakeMessage(raw)], BIG)
        assert not batch.by_model
        assert [d.reason for d in batch.dead] == ["bad_timestamp"]
        assert "before 1970" in batch.dead[0].detail or "ahead" in batch.dead[0].detail


def test_bad_time_detail_names_the_unit_it_was_read_in():
    good = with_()
    bad = with_(timestamp=5e10, prediction_id="late")
    batch = decode_predictions([FakeMessage(good), FakeMessage(bad, offset=1)], BIG)
    assert len(batch.by_model["fraud"]) == 1  # the good one still counts
    (dead,) = batch.dead
    assert dead.offset == 1
    assert (
        dead.detail
        == "timestamp 50000000000.0 (read as epoch seconds) is more than a day ahead of this clock"
    )
    (dead,) = decode_predictions([FakeMessage(with_(timestamp=-1_000_000_000_000))], BIG).dead
    assert dead.detail == "timestamp -1000000000000 (read as epoch milliseconds) is before 1970"


@pytest.mark.parametrize("raw", [without("timestamp"), with_(timestamp=None)])
def test_missing_timestamp_falls_back_to_message_time(raw):
    msg = FakeMessage(raw, timestamp_ms=1_795_000_000_456)
    (ts,) = decode_predictions([msg], BIG).by_model["fraud"].timestamps
    assert ts == 1_795_000_000.456


def test_parse_timestamp_rejects_other_types():
    assert parse_timestamp(None, 12.5) == 12.5
    assert parse_timestamp(1_795_000_000_500, 0.0) == INSTANT
    for value in (True, [1], {"a": 1}, b"2026-11-22"):
        with pytest.raises(ValueError, match="timestamp has type"):
            parse_timestamp(value, 0.0)
    with pytest.raises(ValueError, match="yesterday"):
        parse_timestamp("yesterday", 0.0)


# ---- batches --------------------------------------------------------------------------


def test_batch_groups_by_model_and_tracks_last_offsets():
    good = with_()
    other = with_(model_id="churn", prediction_id="c1", model_version=None)
    messages = [
        FakeMessage(good, partition=0, offset=10),
        FakeMessage(other, partition=1, offset=7),
        FakeMessage(good, partition=0, offset=12),
        FakeMessage(b"not json", partition=0, offset=15),  # dead, but the highest offset
        FakeMessage(good, partition=0, offset=11),  # out of order: does not lower the max
        FakeMessage(other, partition=1, offset=3),
        FakeMessage(good, topic="predictions-b", partition=0, offset=2),
        FakeMessage(None, partition=3, offset=99, error=FakeError()),  # an error: ignored
        FakeMessage(without("prediction"), partition=4, offset=5),  # only dead in partition 4
    ]
    batch = decode_predictions(messages, BIG)
    assert batch.messages == 8
    assert batch.bytes_in == sum(len(m.value()) for m in messages if m.error() is None)
    assert batch.last_offsets == {
        ("predictions", 0): 15,
        ("predictions", 1): 7,
        ("predictions-b", 0): 2,
        ("predictions", 4): 5,
    }
    assert sorted(batch.by_model) == ["churn", "fraud"]
    fraud, churn = batch.by_model["fraud"], batch.by_model["churn"]
    assert fraud.offsets == [10, 12, 11, 2]
    assert fraud.partitions == [0, 0, 0, 0]
    assert churn.offsets == [7, 3]
    assert churn.partitions == [1, 1]
    assert churn.versions == [None, None]
    assert churn.prediction_ids == ["c1", "c1"]
    assert [(d.partition, d.offset, d.reason) for d in batch.dead] == [
        (0, 15, "invalid_json"),
        (4, 5, "missing_field"),
    ]


def test_empty_batch():
    batch = decode_predictions([], BIG)
    assert (batch.messages, batch.bytes_in, batch.by_model, batch.dead, batch.last_offsets) == (
        0,
        0,
        {},
        [],
        {},
    )


def test_select_keeps_positions_in_order():
    messages = [FakeMessage(with_(prediction_id=f"p{i}"), offset=i) for i in range(5)]
    events = decode_predictions(messages, BIG).by_model["fraud"]
    sub = events.select([4, 1])
    assert sub.prediction_ids == ["p4", "p1"]
    assert sub.offsets == [4, 1]
    assert sub.raws == [messages[4].value(), messages[1].value()]
    assert len(sub) == 2


_GOOD_LABELS = [
    {"prediction_id": f"p{i}", "model_id": "fraud" if i % 3 else "loan", "label": v}
    | ({"timestamp": 1_795_000_000 + i} if i % 2 else {})
    for i, v in enumerate([1, 0, True, "fraud", 2.5, 0, 1, "ok"] * 10)
]

_BAD_LABELS = {
    "not JSON": b"{nope",
    "an array": b"[1]",
    "no label": b'{"prediction_id": "x", "model_id": "fraud"}',
    "null label": b'{"prediction_id": "x", "model_id": "fraud", "label": null}',
    "object label": b'{"prediction_id": "x", "model_id": "fraud", "label": {"a": 1}}',
    "numeric id": b'{"prediction_id": 5, "model_id": "fraud", "label": 1}',
    "empty model": b'{"prediction_id": "x", "model_id": "", "label": 1}',
    "long id": b'{"prediction_id": "' + b"x" * 300 + b'", "model_id": "fraud", "label": 1}',
    "bad time": b'{"prediction_id": "x", "model_id": "fraud", "label": 1, "timestamp": -5}',
    "text time": b'{"prediction_id": "x", "model_id": "fraud", "label": 1, '
    b'"timestamp": "2026-11-30T10:00:00Z"}',
    "no value": None,
}


def _label_view(batch) -> tuple:
    columns = {
        m: (c.partitions, c.offsets, c.timestamps, c.labels, c.prediction_ids, c.raws)
        for m, c in batch.by_model.items()
    }
    dead = [(d.offset, d.reason, d.detail, d.model_id, d.value) for d in batch.dead]
    return columns, dead, batch.last_offsets, batch.messages, batch.bytes_in


def test_a_clean_label_batch_is_decoded_in_columns_as_event_by_event():
    messages = [
        FakeMessage(json.dumps(e).encode(), partition=i % 2, offset=i)
        for i, e in enumerate(_GOOD_LABELS)
    ]
    fast = _decode_labels_fast(messages, BIG)
    assert fast is not None and set(fast.by_model) == {"fraud", "loan"}
    assert _label_view(fast) == _label_view(_decode_labels_each(messages, BIG))
    assert _label_view(decode_labels(messages, BIG)) == _label_view(fast)
    scanned = _decode_labels_scanned(messages, BIG)  # the compiled scanner's reading
    assert scanned is not None and _label_view(scanned) == _label_view(fast)
    for model, columns in scanned.by_model.items():  # 1 and True are equal, not the same
        assert list(map(type, columns.labels)) == list(map(type, fast.by_model[model].labels))


@pytest.mark.parametrize("bad", list(_BAD_LABELS))
def test_a_label_batch_with_trouble_decodes_as_event_by_event(bad):
    values = [json.dumps(e).encode() for e in _GOOD_LABELS]
    values.insert(17, _BAD_LABELS[bad])
    messages = [FakeMessage(v, partition=i % 2, offset=i) for i, v in enumerate(values)]
    assert _label_view(decode_labels(messages, BIG)) == _label_view(
        _decode_labels_each(messages, BIG)
    )


def test_a_batch_column_as_an_array_is_made_once_and_follows_select() -> None:
    events = ModelEvents(
        partitions=[0, 1, 0, 2], offsets=[5, 9, 6, 1], timestamps=[1.5, 2.0, 2.5, 3.0]
    )
    ts = column_array(events, "timestamps")
    assert ts.dtype == np.float64 and ts.tolist() == [1.5, 2.0, 2.5, 3.0]
    assert column_array(events, "timestamps") is ts  # not converted again
    parts = column_array(events, "partitions")
    assert parts.dtype == np.int64 and parts.tolist() == [0, 1, 0, 2]
    kept = events.select([1, 3])
    assert column_array(kept, "timestamps").tolist() == [2.0, 3.0]
    assert column_array(kept, "offsets").tolist() == [9, 1]
    assert kept == ModelEvents(partitions=[1, 2], offsets=[9, 1], timestamps=[2.0, 3.0])
    # a column still being filled is converted again once it has grown
    events.timestamps.append(4.0)
    assert column_array(events, "timestamps").tolist() == [1.5, 2.0, 2.5, 3.0, 4.0]
    labels = ModelLabels(partitions=[3], offsets=[7], timestamps=[9.0])
    assert column_array(labels, "offsets").tolist() == [7]
