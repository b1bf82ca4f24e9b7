"""Every kind of bad input lands in the dead-letter topic with its reason, byte for byte,
while the valid events around it are counted normally."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

from .conftest import produce, read_topic

pytestmark = pytest.mark.integration


def test_bad_events_go_to_the_dlq_with_their_reason(settings, store, model_id, tmp_path):
    settings.max_event_bytes = 4096
    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "ref.csv"),
            config=MonitorConfig(window_seconds=3600),
        )
    )
    now = time.time()
    good = [v for _, v in synthetic.prediction_events(model_id, 300, now - 60, 30, seed=3)]
    base = orjson.loads(good[0])

    def variant(**changes) -> bytes:
        e = {**base, "prediction_id": f"bad-{len(changes)}-{sorted(changes)}"}
        for k, v in changes.items():
            if v is ...:
                e.pop(k)
            else:
                e[k] = v
        return orjson.dumps(e)

    bad = {
        b"{not json": "invalid_json",
        b"[1, 2, 3]": "not_an_object",
        variant(prediction_id=...): "missing_field",
        variant(model_id=42): "wrong_type",
        variant(features=[1, 2]): "wrong_type",
        variant(prediction=...): "missing_field",
        variant(prediction=[0.3]): "wrong_type",
        variant(timestamp="yesterday"): "bad_timestamp",
        variant(features={**base["features"], "f00": "12.5"}): "wrong_type",
        variant(features={**base["features"], "country": {"code": "DE"}}): "wrong_type",
        variant(model_id="nobody-registered-me"): "unregistered_model",
        variant(timestamp=now - 30 * 86400): "too_late",
        variant(features={**base["features"], "blob": "x" * 5000}): "oversized",
    }
    stream: list[tuple[bytes, bytes]] = []
    bad_values = list(bad)
    for i, value in enumerate(good):
        stream.append((b"k", value))
        if i % 20 == 0 and bad_values:
            stream.append((b"k", bad_values.pop()))
    assert not bad_values
    unrouted_before = store.counters.unrouted_dlq()
    produce(settings, stream)

    stats = Worker(settings).run(max_seconds=60, install_signals=False, until_messages=len(stream))
    assert stats.counted == len(good)

    dead = read_topic(settings, settings.dlq_topic(settings.predictions_topic))
    got = {m.value: dict(m.headers) for m in dead}
    assert set(got) == set(bad)
    for value, reason in bad.items():
        headers = got[value]
        assert headers["streamdrift.reason"].decode() == reason, headers
        topic, _partition, offset = headers["streamdrift.source"].decode().rsplit(":", 2)
        assert topic == settings.predictions_topic and int(offset) >= 0
    assert (
        b"f00" in got[variant(features={**base["features"], "f00": "12.5"})]["streamdrift.detail"]
    )

    windows = store.windows.read(profile, store.windows.starts(model_id, profile.revision))
    assert sum(w.count for w in windows) == len(good)
    assert sum(w.numeric["f00"].n for w in windows) == len(good)
    # `streamdrift dlq` reads the same topic back, grouped by reason.
    from .conftest import cli

    res = cli(settings, "dlq", "--json")
    assert res.returncode == 0, res.stderr
    groups = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert {g["reason"]: g["count"] for g in groups} == dict(Counter(bad.values()))
    assert all(g["example"]["source"].startswith(settings.predictions_topic) for g in groups)
    assert "dead letters" in cli(settings, "dlq").stdout

    # Bad events of a registered model are counted with it (exactly once, fenced)...
    assert store.counters.model_dlq(model_id) == {
        "missing_field": 2,
        "wrong_type": 2,
        "wrong_type:f00": 1,
        "wrong_type:country": 1,
        "bad_timestamp": 1,
        "too_late": 1,
    }
    # ...the others globally, since no model can own them.
    unrouted = store.counters.unrouted_dlq()
    for reason, n in {
        "invalid_json": 1,
        "not_an_object": 1,
        "wrong_type": 1,
        "unregistered_model": 1,
        "oversized": 1,
    }.items():
        assert unrouted.get(reason, 0) - unrouted_before.get(reason, 0) == n, reason
