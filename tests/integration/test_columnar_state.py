"""Reading predictions in columns changes nothing in Redis.

Two workers read the same topics — predictions with bad events mixed into some batches,
segments in others, and labels for half of them, late and shuffled — into two Redis
servers: one with the
columnar decode (the default), one event by event (`columnar_decode=False`). Every key
of the model's counting state must then hold the same fields and values in both, and
the dead-letter topics the same reasons."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.store import Store
from streamdrift.store.keys import ModelKeys
from streamdrift.store.records import Shard
from streamdrift.store.window_deltas import fold, fold_fields
from streamdrift.worker import Worker

from .conftest import produce, read_topic_now

pytestmark = pytest.mark.integration

#: keys written by evaluation (alert and episode state, times of the last look), not by
#: counting; the profile itself carries the time it was saved in each Redis; the
#: watermarks are the wall-clock time each partition was last seen and the 99th
#: percentile of each batch's event times (batches end where consume() returned)
NOT_COUNTING = (
    "profile",
    "alerts",
    "alert_state",
    "episodes",
    "eval_lock",
    "sweep",
    "dirty",
    "watermarks",
    "watermarks_seen",
)


def _stream(model_id: str, n: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    rng = np.random.default_rng(21)
    now = time.time()
    predictions = list(synthetic.prediction_events(model_id, n, now - 5400, 5400, seed=4))
    # the last two fifths carry segments, keys in varying sets and orders (read in columns
    # too, and spelled in the join's records alike)
    for i in range(3 * n // 5, n):
        key, value = predictions[i]
        event = orjson.loads(value)
        seg = {"region": ["eu", "us", "apac"][i % 3], "tier": i % 4, "vip": i % 5 == 0}
        names = list(seg)[i % 3 :] + list(seg)[: i % 3]
        event["segments"] = {k: seg[k] for k in names if (i + len(k)) % 4}
        predictions[i] = (key, orjson.dumps(event))
    bad = [
        b"{broken",
        orjson.dumps(
            {
                "model_id": model_id,
                "prediction_id": "b1",
                "features": {"f00": "x"},
                "prediction": {"score": 0.2, "label": 0},
            }
        ),
        b'{"model_id":"' + model_id.encode() + b'","prediction_id":"b2","features":{"f01":NaN},'
        b'"prediction":{"score":0.2,"label":0}}',
        orjson.dumps(
            {
                "model_id": model_id,
                "prediction_id": "b3",
                "features": {"f02": 1e200},
                "prediction": {"score": 0.2, "label": 0},
            }
        ),
        orjson.dumps(
            {
                "model_id": model_id,
                "prediction_id": "b4",
                "features": {},
                "prediction": {"score": 0.2, "label": 0},
                "timestamp": now + 9e5,
            }
        ),
        orjson.dumps({"model_id": model_id, "features": {}, "prediction": 0.3}),
        orjson.dumps(
            {
                "model_id": model_id,
                "prediction_id": "b5",
                "features": {"f03": 2.0, "unknown": 1},
                "prediction": {"score": 0.9},
            }
        ),
    ]
    # the bad events sit in the second fifth of the stream: those batches are read event
    # by event, the others in columns
    out = list(predictions)
    for k, value in enumerate(bad):
        out.insert(n // 5 + 37 * k, (b"bad", value))
    labels = []
    for key, value in rng.permutation(np.array(predictions, dtype=object))[: n // 2]:
        event = orjson.loads(value)
        labels.append(
            (
                key,
                orjson.dumps(
                    {
                        "model_id": model_id,
                        "prediction_id": event["prediction_id"],
                        "label": int(rng.random() < event["prediction"]["score"]),
                        "timestamp": event["timestamp"] + float(rng.uniform(1, 600)),
                    }
                ),
            )
        )
    return out, labels


def _state(store: Store, model_id: str) -> dict[bytes, object]:
    """Each counting key of the model, read by type (HyperLogLogs by their count; the join's
    journals by the records they replay to: their blobs and heads depend on how the
    batches fell, the records must not)."""
    r = store.redis
    k = ModelKeys(model_id)
    skip = {getattr(k, name).encode() for name in NOT_COUNTING} | {k.journal_heads.encode()}
    journals = k.journal(0).encode()[:-1]
    out: dict[bytes, object] = {}
    for key in r.scan_iter(match=f"{k.tag}:*", count=1000):
        if key in skip:
            continue
        kind = r.type(key)
        if key.endswith((b":pd", b":cd", b":md")):
            # a window's pair, correlation and score-bin sums: by their sum, as the
            # numeric deltas below
            ints, floats = fold_fields(r.lrange(key, 0, -1))
            out[key] = {
                **{f.encode(): str(v).encode() for f, v in ints.items()},
                **{f.encode(): repr(v).encode() for f, v in floats.items()},
            }
        elif key.endswith(b":nd"):
            # a window's numeric deltas: by their sum (tokens and batch boundaries differ)
            folded = fold(r.lrange(key, 0, -1))
            out[key] = {
                f"{column}:{name}".encode(): repr(v).encode()
                for column, sk in folded.items()
                for name, v in (
                    ("n", sk.n),
                    ("missing", sk.missing),
                    ("oor", sk.out_of_range),
                    ("sum", sk.total),
                    ("sumsq", sk.total_sq),
                    ("min", sk.minimum),
                    ("max", sk.maximum),
                    *((f"bin:{i}", int(c)) for i, c in enumerate(sk.bins)),
                )
            }
        elif key.startswith(journals):
            shard = Shard()
            assert shard.replay(r.lrange(key, 0, -1)), key
            out[key] = {p.encode(): v.encode() for p, v in shard.records.items()}
        elif kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = r.smembers(key)
        elif kind == b"list":
            out[key] = r.lrange(key, 0, -1)
        elif b":hll:" in key:
            out[key] = r.pfcount(key)
        else:
            out[key] = r.get(key)
    return out


def _same_value(got: bytes, want: bytes, where: str) -> None:
    """Counts exactly; float sums to 1e-12: Redis adds each batch's sum, and the two
    workers' batches end at different messages (consume returns what has arrived), so
    the additions run in another order."""
    if got == want:
        return
    try:
        g, w = float(got), float(want)
    except ValueError:
        raise AssertionError(f"{where}: {got!r} != {want!r}") from None
    assert not (want.lstrip(b"-").isdigit() and got.lstrip(b"-").isdigit()), where
    assert g == pytest.approx(w, rel=1e-12, abs=1e-300), where


def test_columns_and_event_by_event_leave_the_same_redis_state(
    settings, store, model_id, tmp_path, redis_node
):
    profile = build_profile(
        model_id,
        synthetic.write_reference(tmp_path / "r.csv", rows=4000),
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(window_seconds=900, evaluation_interval_seconds=3600),
    )
    other = Store(redis_node(persistence="none").url)
    for s in (store, other):
        s.profiles.save(profile)
    predictions, labels = _stream(model_id, 12_000)
    produce(settings, predictions)
    produce(settings, labels, topic=settings.labels_topic)
    total = len(predictions) + len(labels)

    in_columns = Worker(settings)
    stats = in_columns.run(max_seconds=120, install_signals=False, until_messages=total)
    exact_settings = settings.model_copy(
        update={
            "redis_url": other.url,
            "consumer_group": settings.consumer_group + "-exact",
            "columnar_decode": False,
        }
    )
    exact = Worker(exact_settings)
    exact_stats = exact.run(max_seconds=120, install_signals=False, until_messages=total)

    assert stats.messages == exact_stats.messages == total
    assert stats.counted == exact_stats.counted == 12_000 + 1  # b5: valid, an extra feature
    assert stats.labels_joined == exact_stats.labels_joined == len(labels)
    assert stats.columnar_batches > 0 and exact_stats.columnar_batches == 0
    assert stats.dead == exact_stats.dead
    assert sum(stats.dead.values()) == 6

    got, want = _state(store, model_id), _state(other, model_id)
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], dict):
            if key.endswith(b":join"):
                # how many labels had to wait for their prediction: the order the two
                # topics' messages arrived in
                for counts in (got[key], want[key]):
                    counts.pop(b"labels_before_prediction", None)  # type: ignore[attr-defined]
            assert got[key].keys() == want[key].keys(), key
            for f, value in want[key].items():
                _same_value(got[key][f], value, f"{key!r}.{f!r}")
        elif key.endswith(b":outliers"):
            # each window's first few outliers in detail: which come first depends on
            # the order the partitions' batches arrived in, not on the decode
            assert len(got[key]) == len(want[key]), key  # type: ignore[arg-type]
        else:
            assert got[key] == want[key], key
    # the windows' state is there to compare: numeric bins, categories, performance
    names = b" ".join(want)
    for part in (b":nd", b":cat:country", b":perf", b":offsets"):
        assert part in names

    dlq = settings.dlq_topic(settings.predictions_topic)
    messages = read_topic_now(settings, dlq)
    reasons = Counter(
        dict(m.headers or []).get("streamdrift.reason", b"").decode() for m in messages
    )
    assert sum(reasons.values()) == 2 * 6  # both workers sent each bad event once
    assert all(c % 2 == 0 for c in reasons.values())
