"""The event contract checked by hand, before an event leaves the process.

The rules are those of `streamdrift.events` (`PredictionEvent`, `LabelEvent`), checked
without pydantic: the common, valid event costs one C pass over its features, which
groups them by type and clears their numbers with `math.hypot` (`prediction_json` tests
the rest inline and leaves key types to orjson), and a mistake raises `InvalidEvent` (a
`ValueError`) naming the field and the reason at the call, instead of a dead letter
later. Unit tests hold these checks to the pydantic models' verdicts on good and bad
events, and the inline tests to these checks.

Two rules are the worker's on top of the contract's, since the worker would put such
events on the dead-letter topic anyway: numbers beyond ±1e100 (their squares must stay
finite in Redis's sums) and times before 1970 or more than a day ahead of this clock
(epoch numbers in seconds, milliseconds, microseconds or nanoseconds are told apart by
size, as the worker does). Values pydantic would coerce (the text "0.5" as a
score, bytes as text) are refused too, as the JSON Schema and the worker refuse them.
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from streamdrift.decode import epoch_seconds

MAX_ID = 256
#: numbers beyond this are dead letters in the worker (`decode.MAX_MAGNITUDE`)
MAX_MAGNITUDE = 1e100
#: an event time this far past the wall clock is a unit error (`decode.MAX_FUTURE_SECONDS`)
MAX_FUTURE_SECONDS = 86400.0

_NONE = type(None)
_SCALARS = frozenset({float, int, str, bool, _NONE})
_NUMBERS = frozenset({float, int, bool})
_SEGMENT_VALUES = frozenset({str, int, bool})
_STR = frozenset({str})
_OUTPUT_KEYS = frozenset({"score", "label"})
_LABELS = frozenset({int, str, bool})
_hypot = math.hypot
_groupby = itertools.groupby
_time = time.time
_DUMPS = orjson.dumps
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class InvalidEvent(ValueError):
    """An event that breaks the contract: `field` says where, the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_id(value: object, field: str) -> str:
    if type(value) is not str:
        if isinstance(value, str):
            return check_id(str(value), field)
        raise InvalidEvent(field, f"must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID:
        raise InvalidEvent(field, f"must have 1 to {MAX_ID} characters, has {len(value)}")
    return value


def _bad_number(value: float | int, field: str) -> InvalidEvent | None:
    """Why a number is refused (not finite, beyond ±1e100), or None."""
    try:
        if type(value) is not int:
            value = float(value)  # numpy's float32 compares badly with 1e100
        ok = -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE
    except OverflowError:  # an int too large for a float
        ok = False
    if ok:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return InvalidEvent(field, f"{value!r} is not allowed (NaN and infinity are not)")
    return InvalidEvent(field, f"{value!r} is beyond ±{MAX_MAGNITUDE:g}")


def _number_like(value: object) -> bool:
    """A numpy scalar or another real number type orjson can write as a number."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _scalars_fine(values: Any) -> bool:
    """True when every value is a str, None, or a number (float, int, bool) finite and
    within ±1e100, all of exactly those types; False when one may not be (the caller
    then looks at each).

    One C pass (`groupby` by type) reads each value once; each run of numbers is cleared
    at once by `hypot`, which is NaN or infinite when any value is and never less than the
    largest magnitude, so `<= 1e100` is False for any culprit."""
    try:
        for t, run in _groupby(values, type):
            if t is float or t is int or t is bool:
                if not _hypot(*run) <= MAX_MAGNITUDE:
                    return False
            elif t is not str and t is not _NONE:
                return False
    except (OverflowError, TypeError):  # an int too large for a float; a type in disguise
        return False
    return True


def check_features(features: object) -> dict[str, Any]:
    if type(features) is not dict:
        raise InvalidEvent("features", f"must be a dict, not {type(features).__name__}")
    if _scalars_fine(features.values()) and set(map(type, features)) <= _STR:
        return features
    for name, value in features.items():
        if type(name) is not str:
            raise InvalidEvent("features", f"key {name!r} is not a string")
        t = type(value)
        if t is float or t is int or (t is not bool and _number_like(value)):
            problem = _bad_number(value, f"features.{name}")
            if problem is not None:
                raise problem
        elif t not in _SCALARS:
            raise InvalidEvent(
                f"features.{name}",
                f"must be a number, string, bool or None, not {t.__name__}",
            )
    return features


def check_prediction(prediction: object) -> object:
    t = type(prediction)
    if t is str or t is bool:
        return prediction
    if t is float or t is int or _number_like(prediction):
        problem = _bad_number(prediction, "prediction")  # type: ignore[arg-type]
        if problem is not None:
            raise problem
        return prediction
    if t is dict:
        output: dict[Any, Any] = prediction  # type: ignore[assignment]
        score = output.get("score")
        label = output.get("label")
        if (
            output.keys() <= _OUTPUT_KEYS  # so every key a string
            and (
                score is None
                or ((type(score) is float or type(score) is int) and -1e100 <= score <= 1e100)
            )
            and (label is None or type(label) in _LABELS)
        ):
            return prediction  # the usual {"score": p, "label": c}, all fine
        if score is not None:
            st = type(score)
            if st is bool or not (st is float or st is int or _number_like(score)):
                raise InvalidEvent("prediction.score", f"must be a number, not {st.__name__}")
            problem = _bad_number(score, "prediction.score")
            if problem is not None:
                raise problem
        if label is not None:
            lt = type(label)
            integral = lt is float and math.isfinite(label) and label.is_integer()
            if not (integral or lt is int or lt is str or lt is bool):
                raise InvalidEvent(
                    "prediction.label", f"must be an int, string or bool, not {label!r}"
                )
        if any(type(k) is not str for k in output):
            raise InvalidEvent("prediction", "keys must be strings")
        return prediction
    if prediction is None:
        raise InvalidEvent("prediction", "is required (a score/label dict, number or string)")
    raise InvalidEvent("prediction", f"must be a dict, number, string or bool, not {t.__name__}")


def check_timestamp(value: object) -> float | None:
    """Epoch seconds from an epoch number (seconds, milliseconds, microseconds or
    nanoseconds, told apart by size as the worker does: `decode.epoch_seconds`), a
    datetime (naive: UTC) or RFC 3339 text."""
    if value is None:
        return None
    t = type(value)
    if t is float:  # epoch seconds, the usual unit, need no division (`epoch_seconds`)
        seconds: float = value  # type: ignore[assignment]
        if 0.0 <= seconds < 1e11 and seconds <= time.time() + MAX_FUTURE_SECONDS:
            return seconds
    if t is float or t is int:
        ts = epoch_seconds(float(value))  # type: ignore[arg-type]
    elif isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        ts = dt.timestamp()
    elif t is str:
        text: str = value  # type: ignore[assignment]
        try:
            dt = datetime.fromisoformat(text.upper())
        except ValueError:
            raise InvalidEvent("timestamp", f"{text!r} is not an RFC 3339 time") from None
        ts = (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()
    elif _number_like(value):
        ts = epoch_seconds(float(value))  # type: ignore[arg-type]
    else:
        raise InvalidEvent("timestamp", f"must be epoch seconds or a datetime, not {t.__name__}")
    if not 0.0 <= ts <= time.time() + MAX_FUTURE_SECONDS:
        raise InvalidEvent(
            "timestamp",
            f"{value!r} is not a time: before 1970, or more than a day ahead of this clock",
        )
    return ts


def check_segments(segments: object) -> dict[str, str | int | bool] | None:
    if segments is None:
        return None
    if type(segments) is not dict:
        raise InvalidEvent("segments", f"must be a dict, not {type(segments).__name__}")
    if set(map(type, segments.values())) <= _SEGMENT_VALUES and set(map(type, segments)) <= _STR:
        return segments
    for name, value in segments.items():
        if type(name) is not str:
            raise InvalidEvent("segments", f"key {name!r} is not a string")
        if type(value) not in _SEGMENT_VALUES:
            raise InvalidEvent(
                f"segments.{name}", f"must be a string, int or bool, not {type(value).__name__}"
            )
    return segments


def check_label(label: object) -> object:
    t = type(label)
    if t is str or t is bool:
        return label
    if t is float or t is int or _number_like(label):
        problem = _bad_number(label, "label")  # type: ignore[arg-type]
        if problem is not None:
            raise problem
        return label
    if label is None:
        raise InvalidEvent("label", "is required")
    raise InvalidEvent("label", f"must be a number, string or bool, not {t.__name__}")


def prediction_event(
    model_id: str,
    version: str | None,
    prediction_id: object,
    features: object,
    prediction: object,
    timestamp: object = None,
    segments: object = None,
) -> dict[str, Any]:
    """A prediction event (`events.PredictionEvent`) of checked values; raises
    `InvalidEvent` on the first problem."""
    event: dict[str, Any] = {
        "prediction_id": check_id(prediction_id, "prediction_id"),
        "model_id": model_id,
        "features": check_features(features),
        "prediction": check_prediction(prediction),
    }
    if version is not None:
        event["model_version"] = version
    ts = check_timestamp(timestamp)
    if ts is not None:
        event["timestamp"] = ts
    seg = check_segments(segments)
    if seg is not None:
        event["segments"] = seg
    return event


def label_event(
    model_id: str, prediction_id: object, label: object, timestamp: object = None
) -> dict[str, Any]:
    """A label event (`events.LabelEvent`) of checked values."""
    event: dict[str, Any] = {
        "prediction_id": check_id(prediction_id, "prediction_id"),
        "model_id": model_id,
        "label": check_label(label),
    }
    ts = check_timestamp(timestamp)
    if ts is not None:
        event["timestamp"] = ts
    return event


def encode(event: dict[str, Any]) -> bytes:
    try:
        return _DUMPS(event, option=_OPTIONS)
    except TypeError as e:  # an extra key of a prediction dict that JSON cannot hold
        raise ValueError(f"event cannot be written as JSON: {e}") from None


def prediction_json(
    model_id: str,
    version: str | None,
    prediction_id: object,
    features: object,
    prediction: object,
    timestamp: object = None,
    segments: object = None,
) -> bytes:
    """`encode(prediction_event(...))`, the same bytes and the same verdicts, in about half
    the time for the usual event.

    The usual event (exact builtin types, epoch seconds as a float, a score/label dict)
    is cleared by tests that only ever say yes when `prediction_event` would, inline
    rather than through its per-field calls; the names in features and segments are left
    to orjson, which refuses any key that is not exactly a str, as `check_features`
    does. Anything else, and any encoding error, is sent through `prediction_event`,
    whose first problem is the one raised."""
    if (
        type(prediction_id) is str
        and 0 < len(prediction_id) <= MAX_ID
        and type(features) is dict
        and _scalars_fine(features.values())
        and type(prediction) is dict
        and prediction.keys() <= _OUTPUT_KEYS  # so every key a string
        and (
            (score := prediction.get("score")) is None
            or ((type(score) is float or type(score) is int) and -1e100 <= score <= 1e100)
        )
        and ((label := prediction.get("label")) is None or type(label) in _LABELS)
        and (
            timestamp is None
            or (
                type(timestamp) is float
                and 0.0 <= timestamp < 1e11  # seconds (see `check_timestamp`)
                and timestamp <= _time() + MAX_FUTURE_SECONDS
            )
        )
        and (
            segments is None
            or (type(segments) is dict and set(map(type, segments.values())) <= _SEGMENT_VALUES)
        )
    ):
        event: dict[str, Any] = {
            "prediction_id": prediction_id,
            "model_id": model_id,
            "features": features,
            "prediction": prediction,
        }
        if version is not None:
            event["model_version"] = version
        if timestamp is not None:
            event["timestamp"] = timestamp
        if segments is not None:
            event["segments"] = segments
        try:
            return _DUMPS(event, option=_OPTIONS)
        except TypeError:  # a name not a str, an int beyond 64 bits: said below
            pass
    return encode(
        prediction_event(
            model_id, version, prediction_id, features, prediction, timestamp, segments
        )
    )


def label_json(
    model_id: str, prediction_id: object, label: object, timestamp: object = None
) -> bytes:
    """`encode(label_event(...))`, with the usual label cleared inline (see
    `prediction_json`)."""
    if (
        type(prediction_id) is str
        and 0 < len(prediction_id) <= MAX_ID
        and (
            type(label) is str
            or type(label) is bool
            or ((type(label) is float or type(label) is int) and -1e100 <= label <= 1e100)
        )
        and (
            timestamp is None
            or (
                type(timestamp) is float
                and 0.0 <= timestamp < 1e11
                and timestamp <= _time() + MAX_FUTURE_SECONDS
            )
        )
    ):
        event: dict[str, Any] = {
            "prediction_id": prediction_id,
            "model_id": model_id,
            "label": label,
        }
        if timestamp is not None:
            event["timestamp"] = timestamp
        try:
            return _DUMPS(event, option=_OPTIONS)
        except TypeError:  # an int beyond 64 bits
            pass
    return encode(label_event(model_id, prediction_id, label, timestamp))
