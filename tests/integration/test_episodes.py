"""Episodes against real servers: a silent model's freshness episode opens and ends when
traffic returns; a commit from an evaluator that lost its lease writes nothing."""

from __future__ import annotations

import time

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.store.episodes import EpisodeState, LeaseLost

from .conftest import produce, read_alerts, wait_for
from .truth import WorkerThread

pytestmark = pytest.mark.integration

WINDOW = 600


def _register(store, model_id, tmp_path, **config):
    profile = build_profile(
        model_id,
        synthetic.write_reference(tmp_path / "ref.csv", rows=5000),
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(window_seconds=WINDOW, evaluation_interval_seconds=0.5, **config),
    )
    return store.profiles.save(profile)[0]


def _events(model_id: str, n: int, seed: int):
    now = time.time()
    return list(synthetic.prediction_events(model_id, n, now - 60, 50, seed=seed))


def test_a_silent_model_opens_a_freshness_episode_until_events_come_back(
    settings, store, model_id, tmp_path
):
    _register(store, model_id, tmp_path, silence_seconds=4)
    produce(settings, _events(model_id, 500, seed=1))
    with WorkerThread(settings):

        def freshness(status: str, alerts: list[dict] | None = None) -> list[dict]:
            return [
                a
                for a in (read_alerts(settings, now=True) if alerts is None else alerts)
                if a["type"] == "freshness" and a["status"] == status
            ]

        assert wait_for(lambda: freshness("open"), timeout=40, interval=0.5)
        (opened,) = freshness("open")
        assert opened["context"]["route"] == "ops" and opened["severity"] == "critical"
        assert opened["value"] >= 4 and opened["threshold"] == 4
        time.sleep(6)  # still silent: no repeat (and none in the 3 s read_alerts waits)
        assert len(freshness("open", read_alerts(settings))) == 1
        produce(settings, _events(model_id, 300, seed=2))
        assert wait_for(lambda: freshness("resolved"), timeout=40, interval=0.5)
    alerts = read_alerts(settings)
    (resolved,) = freshness("resolved", alerts)
    assert resolved["episode_id"] == opened["episode_id"]
    assert resolved["alert_id"] != opened["alert_id"]
    assert [a["type"] for a in alerts] == ["freshness", "freshness"]
    assert not store.episodes.load(model_id).episodes["freshness:events"].open


def test_an_evaluator_that_lost_its_lease_commits_nothing(settings, store, model_id, tmp_path):
    _register(store, model_id, tmp_path)
    assert store.schedule.try_lock(model_id, "first", lease_ms=50)
    time.sleep(0.1)  # the lease expired; another evaluator takes the model
    assert store.schedule.try_lock(model_id, "second")
    alert = orjson.dumps({"alert_id": "a" * 32})
    with pytest.raises(LeaseLost):
        store.episodes.commit(
            model_id, "first", [("a" * 32, alert)], EpisodeState(), set(), set(), time.time()
        )
    assert store.alerts.all(model_id) == []
    assert store.redis.exists(f"sd:{{{model_id}}}:episodes") == 0
    fresh = store.episodes.commit(
        model_id, "second", [("a" * 32, alert)], EpisodeState(), set(), set(), time.time()
    )
    assert fresh == {"a" * 32}
    again = store.episodes.commit(
        model_id, "second", [("a" * 32, alert)], EpisodeState(), set(), set(), time.time()
    )
    assert again == set()  # claimed once
    # as published: later workers of this Redis must not re-send the stand-in alert
    store.alerts.mark_published(model_id, ["a" * 32], time.time())


def test_watermarks_only_rise_and_idle_partitions_stop_holding_back(store, model_id):
    w = store.watermarks
    assert w.low(model_id, 100.0, 60.0) == (None, False)
    w.advance({model_id: {"p@x:0": 5000.0, "p@x:1": 3000.0}}, now=100.0)
    w.advance({model_id: {"p@x:0": 4000.0}}, now=110.0)  # a late batch: no step back
    assert w.low(model_id, 120.0, 60.0) == (3000.0, True)  # the slowest moving one
    w.advance({model_id: {"p@x:0": 9000.0}}, now=170.0)
    # partition 1 has not moved for 70 s: idle, no longer holding the windows back
    assert w.low(model_id, 170.0, 60.0) == (9000.0, True)
    # nothing moving at all: the furthest mark, and no partition moving
    assert w.low(model_id, 1000.0, 60.0) == (9000.0, False)


def test_an_owned_partition_not_read_yet_holds_windows_back_until_read_or_idle(store, model_id):
    w = store.watermarks
    # the first batch read partition 0 only; partitions 1 and 2 are owned, unread
    w.advance({model_id: {"p@x:0": 5000.0}}, now=100.0, hold={model_id: ["p@x:1", "p@x:2"]})
    low, moving = w.low(model_id, 101.0, 60.0)
    assert low == float("-inf") and moving  # no window is complete yet
    # partition 1 is read; partition 2 still holds
    w.advance({model_id: {"p@x:1": 4000.0}}, now=110.0, hold={model_id: ["p@x:2"]})
    assert w.low(model_id, 111.0, 60.0) == (float("-inf"), True)
    w.advance({model_id: {"p@x:2": 4500.0}}, now=120.0)
    assert w.low(model_id, 121.0, 60.0) == (4000.0, True)
    # holding again (a later assignment) neither lowers a mark nor makes it move again
    w.advance({}, now=500.0, hold={model_id: ["p@x:0", "p@x:1", "p@x:2"]})
    assert w.low(model_id, 500.0, 60.0) == (5000.0, False)
    # a partition that never carries the model stops holding once idle
    w.advance({model_id: {"p@x:0": 6000.0}}, now=600.0, hold={model_id: ["p@x:3"]})
    assert w.low(model_id, 630.0, 60.0) == (float("-inf"), True)
    w.advance({model_id: {"p@x:0": 7000.0}}, now=670.0)
    assert w.low(model_id, 670.0, 60.0) == (7000.0, True)
