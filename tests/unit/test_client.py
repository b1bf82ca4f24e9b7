"""The SDK's hand checks, held to the verdicts of the pydantic contract models.

The reference for "is this event valid" is `PredictionEvent` / `LabelEvent.model_validate`
on the values as given to `log_prediction` / `log_label`. The SDK is stricter in a few
documented ways (coercions the JSON Schema and the worker refuse, the worker's bounds on
numbers and times); those cases are checked against pydantic's strict mode or the
worker's rules instead.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from streamdrift.client import InvalidEvent, Monitor
from streamdrift.client.monitor import POLL_EVERY, producer_settings
from streamdrift.client.validation import (
    encode,
    label_event,
    label_json,
    prediction_event,
    prediction_json,
)
from streamdrift.events import LabelEvent, PredictionEvent

NOW = time.time()
GOOD: dict[str, Any] = {
    "prediction_id": "a1b2",
    "features": {"amount": 120.5, "country": "DE", "age": None, "n": 3, "vip": True},
    "prediction": {"score": 0.83, "label": 1},
    "timestamp": NOW - 60,
    "segments": {"region": "EU"},
}


def call(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def pydantic_accepts(kwargs: dict[str, Any], strict: bool = False) -> bool:
    event = {"model_id": "fraud", **{k: v for k, v in kwargs.items() if v is not None}}
    try:
        PredictionEvent.model_validate(event, strict=strict)
    except ValidationError:
        return False
    return True


def sdk_verdict(kwargs: dict[str, Any]) -> str | None:
    """None when the SDK accepts; else the field it names."""
    try:
        event = prediction_event("fraud", "3.1.0", **kwargs)
    except InvalidEvent as e:
        assert str(e).startswith(f"{e.field}: ") and e.reason
        return e.field
    PredictionEvent.model_validate(event)  # what is sent is valid
    return None


# (name, log_prediction arguments, the field named; None: valid)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("design example", call(), None),
    ("minimal", call(timestamp=None, segments=None), None),
    ("empty features", call(features={}), None),
    ("only numbers", call(features={"a": 1.5, "b": 2, "c": -3.25}), None),
    ("only strings", call(features={"a": "x", "b": "y"}), None),
    ("only nulls", call(features={"a": None}), None),
    ("only bools", call(features={"a": True, "b": False}), None),
    ("every scalar kind", call(features={"a": 1.5, "b": True, "c": "x", "d": 2, "e": None}), None),
    ("ints and strings", call(features={"n": -7, "c": "x"}), None),
    ("unicode id", call(prediction_id="äöü-✓"), None),
    ("id of 256 chars", call(prediction_id="p" * 256), None),
    ("prediction float", call(prediction=0.25), None),
    ("prediction int", call(prediction=3), None),
    ("prediction string", call(prediction="cat"), None),
    ("prediction bool", call(prediction=True), None),
    ("prediction empty dict", call(prediction={}), None),
    ("prediction label only", call(prediction={"label": "spam"}), None),
    ("prediction label bool", call(prediction={"label": False, "score": 0}), None),
    ("prediction label 1.0", call(prediction={"label": 1.0}), None),
    ("prediction extra keys", call(prediction={"score": 0.1, "probs": [0.1, 0.9]}), None),
    ("segments mixed", call(segments={"region": "EU", "tier": 2, "vip": True}), None),
    ("timestamp int", call(timestamp=int(NOW)), None),
    ("timestamp datetime", call(timestamp=datetime.now(UTC)), None),
    ("timestamp naive datetime", call(timestamp=datetime(2025, 1, 1)), None),
    ("timestamp RFC 3339", call(timestamp="2025-11-22T10:00:00Z"), None),
    ("prediction_id empty", call(prediction_id=""), "prediction_id"),
    ("prediction_id too long", call(prediction_id="p" * 257), "prediction_id"),
    ("prediction_id number", call(prediction_id=17), "prediction_id"),
    ("prediction_id None", call(prediction_id=None), "prediction_id"),
    ("features None", call(features=None), "features"),
    ("features list", call(features=[1, 2]), "features"),
    ("features string", call(features="amount=1"), "features"),
    ("feature NaN", call(features={"amount": math.nan}), "features.amount"),
    ("feature inf", call(features={"amount": math.inf, "c": "DE"}), "features.amount"),
    ("feature -inf", call(features={"x": "a", "amount": -math.inf}), "features.amount"),
    ("feature NaN among ints", call(features={"c": "x", "n": 3, "a": math.nan}), "features.a"),
    ("feature inf among bools", call(features={"v": True, "a": math.inf}), "features.a"),
    ("feature NaN among nulls", call(features={"z": None, "a": math.nan}), "features.a"),
    ("feature list", call(features={"tags": [1, 2]}), "features.tags"),
    ("feature list among numbers", call(features={"a": 1.0, "tags": [1.0]}), "features.tags"),
    ("feature tuple", call(features={"a": "x", "t": (1.0,)}), "features.t"),
    ("feature dict", call(features={"geo": {"lat": 1}}), "features.geo"),
    ("feature key int", call(features={1: 2.0}), "features"),
    ("feature key int among strings", call(features={"a": "x", 1: "y"}), "features"),
    ("feature key int, prediction bad too", call(features={1: 2.0}, prediction=None), "features"),
    ("prediction None", call(prediction=None), "prediction"),
    ("prediction list", call(prediction=[0.1, 0.9]), "prediction"),
    ("prediction NaN", call(prediction=math.nan), "prediction"),
    ("score string", call(prediction={"score": "high"}), "prediction.score"),
    ("score list", call(prediction={"score": [0.5]}), "prediction.score"),
    ("score NaN", call(prediction={"score": math.nan}), "prediction.score"),
    ("score inf", call(prediction={"score": math.inf}), "prediction.score"),
    (
        "score NaN with a label",
        call(prediction={"score": math.nan, "label": 1}),
        "prediction.score",
    ),
    ("score None with a label", call(prediction={"score": None, "label": 1}), None),
    ("label list with a score", call(prediction={"score": 0.5, "label": [1]}), "prediction.label"),
    ("label fractional", call(prediction={"label": 1.5}), "prediction.label"),
    ("label dict", call(prediction={"label": {"c": 1}}), "prediction.label"),
    ("segments list", call(segments=["EU"]), "segments"),
    ("segments string", call(segments="EU"), "segments"),
    ("segment float", call(segments={"region": 1.5}), "segments.region"),
    ("segment None", call(segments={"region": None}), "segments.region"),
    ("segment dict", call(segments={"region": {"eu": 1}}), "segments.region"),
    ("timestamp garbage", call(timestamp="yesterday"), "timestamp"),
    ("timestamp list", call(timestamp=[2026, 11, 22]), "timestamp"),
    ("timestamp NaN", call(timestamp=math.nan), "timestamp"),
]


def test_cases_cover_every_field():
    named = {field.split(".")[0] for _, _, field in CASES if field}
    assert named == {"prediction_id", "features", "prediction", "segments", "timestamp"}


@pytest.mark.parametrize(("name", "kwargs", "field"), CASES, ids=[c[0] for c in CASES])
def test_verdict_matches_pydantic(name, kwargs, field):
    assert pydantic_accepts(kwargs) is (field is None), "the case table disagrees with pydantic"
    assert sdk_verdict(kwargs) == field


# coercions of pydantic's lax mode that the JSON Schema, strict mode and the worker refuse
STRICTER = [
    ("score as text", call(prediction={"score": "0.5"}), "prediction.score"),
    ("score bool", call(prediction={"score": True}), "prediction.score"),
    ("feature bytes", call(features={"country": b"DE"}), "features.country"),
    ("segment float 2.0", call(segments={"tier": 2.0}), "segments.tier"),
    ("label float 1.0 text", call(prediction={"label": b"x"}), "prediction.label"),
]


@pytest.mark.parametrize(("name", "kwargs", "field"), STRICTER, ids=[c[0] for c in STRICTER])
def test_stricter_than_lax_pydantic_like_strict_mode(name, kwargs, field):
    assert not pydantic_accepts(kwargs, strict=True)
    assert sdk_verdict(kwargs) == field


# the worker's rules on top of the contract: it would dead-letter these
WORKER_RULES = [
    ("feature beyond 1e100", call(features={"x": 1e101}), "features.x"),
    ("feature beyond -1e100 among strings", call(features={"c": "x", "x": -1e101}), "features.x"),
    ("feature just beyond 1e100", call(features={"x": math.nextafter(1e100, 2e100)}), "features.x"),
    ("huge int feature", call(features={"x": 10**400}), "features.x"),
    (
        "huge int among floats and strings",
        call(features={"f": 1.0, "c": "x", "n": -(10**400)}),
        "features.n",
    ),
    ("int beyond 1e100 among bools", call(features={"b": True, "n": 10**101}), "features.n"),
    ("score int beyond float range", call(prediction={"score": 10**400}), "prediction.score"),
    ("prediction int beyond float range", call(prediction=-(10**400)), "prediction"),
    ("score beyond 1e100", call(prediction={"score": -1e150}), "prediction.score"),
    ("prediction beyond 1e100", call(prediction=2e100), "prediction"),
    ("timestamp far ahead, in milliseconds", call(timestamp=(NOW + 3 * 86400) * 1000), "timestamp"),
    ("timestamp before 1970", call(timestamp=-5.0), "timestamp"),
    (
        "timestamp two days ahead",
        call(timestamp=datetime.now(UTC) + timedelta(days=2)),
        "timestamp",
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "field"), WORKER_RULES, ids=[c[0] for c in WORKER_RULES]
)
def test_worker_rules_are_checked_at_the_call(name, kwargs, field):
    assert sdk_verdict(kwargs) == field


def test_many_numbers_near_the_bound_are_each_fine():
    # the fast path's hypot exceeds 1e100; the value-by-value path clears them
    assert sdk_verdict(call(features={f"f{i}": 9e99 for i in range(5)})) is None
    assert sdk_verdict(call(features={"a": 9e99, "b": 9e99, "c": "x"})) is None
    assert sdk_verdict(call(features={"a": 1e100, "b": -1e100, "c": True})) is None
    assert sdk_verdict(call(prediction={"score": -1e100, "label": "x"})) is None


# the encoder's shortcut must say what `prediction_event` says, on every case above and
# on those only it sees differently (keys left to orjson, ints orjson cannot write)
ENCODER_CASES = [
    *CASES,
    *STRICTER,
    *WORKER_RULES,
    ("feature key str subclass", call(features={type("S", (str,), {})("a"): 1.0}), "features"),
    ("feature key None", call(features={"a": 1.0, None: 2.0}), "features"),
    ("segment key int", call(segments={1: "EU"}), "segments"),
    ("feature str subclass value", call(features={"a": type("S", (str,), {})("x")}), "features.a"),
    ("feature float subclass value", call(features={"a": np.float64(1e101)}), "features.a"),
    ("prediction key int", call(prediction={"score": 0.5, 1: "x"}), "prediction"),
    ("timestamp milliseconds", call(timestamp=NOW * 1000), None),
    ("timestamp float zero", call(timestamp=0.0), None),
    ("timestamp 1e11 seconds ahead", call(timestamp=1e11 - 1), "timestamp"),
    ("no version", call(), None),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "field"), ENCODER_CASES, ids=[c[0] for c in ENCODER_CASES]
)
def test_encoder_agrees_with_the_field_checks(name, kwargs, field):
    version = None if name == "no version" else "3.1.0"
    try:
        expected = encode(prediction_event("fraud", version, **kwargs))
    except InvalidEvent as e:
        assert e.field == field
        with pytest.raises(InvalidEvent) as raised:
            prediction_json("fraud", version, **kwargs)
        assert raised.value.field == field and str(raised.value) == str(e)
    else:
        assert field is None
        assert prediction_json("fraud", version, **kwargs) == expected


def test_encoder_refuses_what_json_cannot_hold():
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        prediction_json("m", None, "p", {"n": 10**30}, 1)  # valid, but beyond 64 bits
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        prediction_json("m", None, "p", {}, {"score": 0.5, "extra": object()})
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        label_json("m", "p", 10**30)


def test_datetimes_become_epoch_seconds():
    aware = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert prediction_event("m", None, "p", {}, 1, aware)["timestamp"] == aware.timestamp()
    naive = datetime(2025, 3, 1, 10, 0)
    assert prediction_event("m", None, "p", {}, 1, naive)["timestamp"] == aware.timestamp()
    text = prediction_event("m", None, "p", {}, 1, "2025-03-01T10:00:00z")["timestamp"]
    assert text == aware.timestamp()


def test_numpy_scalars_are_numbers():
    event = prediction_event(
        "m",
        None,
        "p",
        {"a": np.float64(1.5), "b": np.int64(3), "c": np.float32(0.5)},
        {"score": np.float64(0.7)},
    )
    raw = orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    assert orjson.loads(raw)["features"] == {"a": 1.5, "b": 3, "c": 0.5}
    with pytest.raises(InvalidEvent, match=r"features\.a"):
        prediction_event("m", None, "p", {"a": np.float64("nan")}, 1)


LABEL_CASES: list[tuple[str, Any, Any, str | None]] = [
    ("int", 1, None, None),
    ("float", 12.5, None, None),
    ("string", "spam", None, None),
    ("bool", False, NOW, None),
    ("datetime", 0, datetime.now(UTC), None),
    ("None", None, None, "label"),
    ("NaN", math.nan, None, "label"),
    ("inf", -math.inf, None, "label"),
    ("list", [1], None, "label"),
    ("dict", {"y": 1}, None, "label"),
    ("bad time", 1, "soon", "timestamp"),
    ("float time", 0.5, NOW - 1, None),
]


@pytest.mark.parametrize(
    ("name", "label", "ts", "field"), LABEL_CASES, ids=[c[0] for c in LABEL_CASES]
)
def test_label_verdict_matches_pydantic(name, label, ts, field):
    raw = {"prediction_id": "a1b2", "model_id": "m", "label": label, "timestamp": ts}
    try:
        LabelEvent.model_validate(raw)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is (field is None)
    try:
        event = label_event("m", "a1b2", label, ts)
    except InvalidEvent as e:
        assert e.field == field
        with pytest.raises(InvalidEvent, match=f"^{field}: "):
            label_json("m", "a1b2", label, ts)
    else:
        assert field is None
        LabelEvent.model_validate(event)
        assert label_json("m", "a1b2", label, ts) == encode(event)
    with pytest.raises(InvalidEvent, match="prediction_id"):
        label_event("m", "", 1)


@pytest.mark.parametrize("label", [1e101, -(10**101), 10**400, math.nextafter(-1e100, -2e100)])
def test_labels_beyond_1e100_are_refused_like_the_workers(label):
    with pytest.raises(InvalidEvent, match=r"^label: .* beyond"):
        label_event("m", "a1b2", label)
    with pytest.raises(InvalidEvent, match=r"^label: .* beyond"):
        label_json("m", "a1b2", label, NOW)
    assert label_json("m", "a1b2", -1e100) == encode(label_event("m", "a1b2", -1e100))


def test_producer_settings_take_both_spellings():
    conf = producer_settings("k:9092", {"linger_ms": 50, "queue.buffering.max.messages": 10})
    assert conf["bootstrap.servers"] == "k:9092"
    assert conf["linger.ms"] == 50 and conf["queue.buffering.max.messages"] == 10
    assert conf["acks"] == "all"


def test_publishing_does_not_import_pandas():
    import subprocess

    code = "import sys, streamdrift.client; assert 'pandas' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_monitor_refuses_at_the_call_and_reports_failed_deliveries():
    failed: list[tuple[Any, bytes | None]] = []
    # nothing listens on port 1: every message times out after 200 ms
    monitor = Monitor(
        "127.0.0.1:1",
        "fraud",
        version="1.0",
        on_error=lambda err, key: failed.append((err, key)),
        message_timeout_ms=200,
    )
    with pytest.raises(ValueError, match=r"features\.amount: nan"):
        monitor.log_prediction("a", {"amount": math.nan}, 0.5)
    with pytest.raises(ValueError, match="label: is required"):
        monitor.log_label("a", None)
    monitor.log_prediction("a", {"amount": 1.0}, {"score": 0.5}, timestamp=NOW)
    monitor.log_label("a", 1)
    assert monitor.flush(5) == 0  # both given up on: none left
    # the two good events were sent (and failed), the two bad ones never left
    assert sorted(k for _, k in failed) == [b"a", b"a"]
    assert monitor.failed == 2
    assert monitor.close(0.1) == 0


def test_failures_reach_on_error_through_log_calls_alone():
    """log_* look for delivery reports every POLL_EVERY calls: no poll or flush needed."""
    failed: list[bytes | None] = []
    monitor = Monitor(
        "127.0.0.1:1", "fraud", on_error=lambda err, key: failed.append(key), message_timeout_ms=100
    )
    monitor.log_label("first", 1)
    deadline = time.monotonic() + 5
    while not failed and time.monotonic() < deadline:
        time.sleep(0.05)
        for _ in range(POLL_EVERY):
            monitor.log_label("later", 1)
    assert failed[:1] == [b"first"]
    monitor.flush(2)


def test_monitor_checks_its_model_id():
    with pytest.raises(InvalidEvent, match="model_id"):
        Monitor("127.0.0.1:1", "")
    with pytest.raises(ValueError, match="version"):
        Monitor("127.0.0.1:1", "m", version=3)  # type: ignore[arg-type]


def test_epoch_numbers_in_any_unit_are_the_same_time():
    """Seconds, milliseconds, microseconds and nanoseconds, told apart by size as the
    worker tells them (`decode.epoch_seconds`)."""
    from streamdrift.client.validation import check_timestamp

    t = 1_796_000_000.25
    for scale in (1, 1e3, 1e6, 1e9):
        assert check_timestamp(t * scale) == pytest.approx(t, abs=1e-6)
