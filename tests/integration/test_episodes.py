"""Episodes against real servers: a silent model's freshness episode opens and ends when
traffic returns; a commit from an evaluator that lost its lease writes nothing."""

from __future__ import annotations

import time

import orjson
import pytest

from streamdrift import evaluator as evaluator_module
from streamdrift import kafka_io, synthetic
from streamdrift.config import MonitorConfig
from streamdrift.evaluator import Evaluator
from streamdrift.reference import build_profile
from streamdrift.store.episodes import EpisodeState, LeaseLost
from streamdrift.store.keys import ModelKeys
from streamdrift.store.schedule import LEASE_MS

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


def test_the_lease_is_short_and_renewed_only_by_its_holder(store, model_id):
    """A worker killed mid-evaluation holds the model's evaluations back for one short
    lease, not minutes; a long evaluation keeps its lease by renewing it."""
    lease = ModelKeys(model_id).eval_lock
    assert store.schedule.try_lock(model_id, "first")
    assert 15_000 < store.redis.pttl(lease) <= LEASE_MS
    assert not store.schedule.try_lock(model_id, "second")
    store.redis.pexpire(lease, 1_000)  # most of the lease used up by a long evaluation
    assert not store.schedule.renew(model_id, "second")  # not the holder: nothing moves
    assert store.redis.pttl(lease) <= 1_000
    assert store.schedule.renew(model_id, "first")
    assert store.redis.pttl(lease) > 15_000
    store.redis.delete(lease)  # lapsed: renewing does not take it back
    assert not store.schedule.renew(model_id, "first")
    assert store.redis.exists(lease) == 0


def test_an_evaluation_longer_than_its_lease_keeps_it(settings, store, model_id, tmp_path):
    profile = _register(store, model_id, tmp_path)
    produce(settings, _events(model_id, 600, seed=3))

    def counted() -> int:
        starts = store.windows.starts(model_id, profile.revision)
        return sum(w.count for w in store.windows.read(profile, starts))

    with WorkerThread(settings):
        assert wait_for(lambda: counted() == 600, timeout=40)
        assert wait_for(lambda: store.schedule.dirty(model_id) == [], timeout=40)
    starts = store.windows.starts(model_id, profile.revision)
    # its windows written to again: the next evaluation reads and judges them
    store.redis.zadd(
        ModelKeys(model_id).dirty, {f"{profile.revision}:{s}": time.time() for s in starts}
    )
    reads = store.windows.read

    def slow_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.4)  # an evaluation reading many windows
        return reads(*args, **kwargs)

    lease = ModelKeys(model_id).eval_lock
    ttls: list[int] = []
    conditions = evaluator_module.window_conditions

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        ttls.append(store.redis.pttl(lease))
        return conditions(*args, **kwargs)

    evaluator = Evaluator(store, kafka_io.producer(settings), settings.alerts_topic, "slow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store.windows, "read", slow_read)
        mp.setattr(evaluator_module, "RENEW_SECONDS", 0.2)
        mp.setattr(evaluator_module, "window_conditions", watched)
        evaluator.evaluate(profile)
    # renewed after the slow read, not the lease taken before it less 0.4 s
    assert len(ttls) == len(starts) and min(ttls) > LEASE_MS - 200, ttls
    assert store.redis.exists(lease) == 0  # released at the end
    assert store.schedule.dirty(model_id) == []


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


def _marker(store, model_id, tmp_path):  # type: ignore[no-untyped-def]
    """Raise a model's marks as a worker does: in an apply script, each with its fence."""
    from collections import Counter

    from streamdrift.store import Applied, ApplyRequest, Fence

    profile = _register(store, model_id, tmp_path)
    applied = [-1]

    def mark(marks: dict[str, float], now: float) -> None:
        fence = Fence("p@x:fence", applied[0], applied[0] + 1)
        r = ApplyRequest(profile, [fence], {}, Counter(), None, now, None, marks, now)
        assert isinstance(store.applies.apply(r), Applied)
        applied[0] += 1

    return mark


def test_watermarks_only_rise_and_idle_partitions_stop_holding_back(store, model_id, tmp_path):
    w, mark = store.watermarks, _marker(store, model_id, tmp_path)
    assert w.low(model_id, 100.0, 60.0) == (None, False)
    mark({"p@x:0": 5000.0, "p@x:1": 3000.0}, now=100.0)
    mark({"p@x:0": 4000.0}, now=110.0)  # a late batch: no step back
    assert w.low(model_id, 120.0, 60.0) == (3000.0, True)  # the slowest moving one
    mark({"p@x:0": 9000.0}, now=170.0)
    # partition 1 has not moved for 70 s: idle, no longer holding the windows back
    assert w.low(model_id, 170.0, 60.0) == (9000.0, True)
    # nothing moving at all: the furthest mark, and no partition moving
    assert w.low(model_id, 1000.0, 60.0) == (9000.0, False)


def test_an_apply_raises_the_watermarks_with_its_counts_and_only_then(store, model_id, tmp_path):
    """The marks travel in the apply script: they rise (never fall) with the counts they
    describe, an apply refused by its fence or its input writes none, and a hold written
    afterwards does not lower them."""
    from collections import Counter

    from streamdrift.store import ApplyRejected, ApplyRequest, Fence, FenceMoved

    profile = _register(store, model_id, tmp_path)
    w, k = store.watermarks, ModelKeys(model_id)

    def apply(fence: Fence, marks: dict[str, float], at: float) -> object:
        r = ApplyRequest(profile, [fence], {}, Counter({"x": 1}), None, at, None, marks, at)
        return store.applies.apply(r)

    def dlq() -> int:
        return int(store.redis.hget(k.dlq, "x") or 0)

    apply(Fence("p@x:0", -1, 10), {"p@x:0": 5000.0, "p@x:1": 3000.0}, 100.0)
    assert w.low(model_id, 101.0, 60.0) == (3000.0, True) and dlq() == 1
    apply(Fence("p@x:0", 10, 20), {"p@x:0": 4000.0}, 110.0)  # a late batch: no step back
    assert store.redis.zscore(k.watermarks, "p@x:0") == 5000.0
    assert store.redis.zscore(k.watermarks_seen, "p@x:0") == 110.0 and dlq() == 2
    # another worker moved the fence: nothing written, marks included
    moved = apply(Fence("p@x:0", 10, 30), {"p@x:0": 9000.0}, 120.0)
    assert isinstance(moved, FenceMoved) and dlq() == 2
    assert store.redis.zscore(k.watermarks, "p@x:0") == 5000.0
    # a mark that is not a finite number: the whole apply refused before any write
    with pytest.raises(ApplyRejected):
        apply(Fence("p@x:0", 20, 30), {"p@x:0": float("nan")}, 130.0)
    assert store.redis.hget(k.offsets, "p@x:0") == b"20" and dlq() == 2
    # the worker's hold of an owned, unread partition (NX) leaves a mark as it is
    w.hold({model_id: ["p@x:0", "p@x:2"]}, now=140.0)
    assert store.redis.zscore(k.watermarks, "p@x:0") == 5000.0
    assert w.low(model_id, 141.0, 60.0) == (float("-inf"), True)


def test_an_owned_partition_not_read_yet_holds_windows_back_until_read_or_idle(
    store, model_id, tmp_path
):
    w, mark = store.watermarks, _marker(store, model_id, tmp_path)
    # the first batch read partition 0 only; partitions 1 and 2 are owned, unread: held
    # before the batch's apply raises partition 0's mark, as the worker does
    w.hold({model_id: ["p@x:1", "p@x:2"]}, now=100.0)
    mark({"p@x:0": 5000.0}, now=100.0)
    low, moving = w.low(model_id, 101.0, 60.0)
    assert low == float("-inf") and moving  # no window is complete yet
    # partition 1 is read; partition 2 still holds
    w.hold({model_id: ["p@x:2"]}, now=110.0)
    mark({"p@x:1": 4000.0}, now=110.0)
    assert w.low(model_id, 111.0, 60.0) == (float("-inf"), True)
    mark({"p@x:2": 4500.0}, now=120.0)
    assert w.low(model_id, 121.0, 60.0) == (4000.0, True)
    # holding again (a later assignment) neither lowers a mark nor makes it move again
    w.hold({model_id: ["p@x:0", "p@x:1", "p@x:2"]}, now=500.0)
    assert w.low(model_id, 500.0, 60.0) == (5000.0, False)
    # a partition that never carries the model stops holding once idle
    w.hold({model_id: ["p@x:3"]}, now=600.0)
    mark({"p@x:0": 6000.0}, now=600.0)
    assert w.low(model_id, 630.0, 60.0) == (float("-inf"), True)
    mark({"p@x:0": 7000.0}, now=670.0)
    assert w.low(model_id, 670.0, 60.0) == (7000.0, True)
