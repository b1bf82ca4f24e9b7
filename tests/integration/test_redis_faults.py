"""Redis misbehaving under a running worker, each fault injected into a real redis-server:
it loses acknowledged writes (a restart from an older RDB snapshot, an AOF tail lost),
restarts empty, goes away, freezes, fills up. Counts and joins must end exactly equal
to the truth computed offline from the events, or the worker must stop loudly, say why,
and recover when the cause is fixed."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig, Settings
from streamdrift.reference import build_profile
from streamdrift.store import Store

from .conftest import cli, produce, read_alerts, read_topic, wait_for
from .truth import WorkerThread, assert_exact, observed, truth

pytestmark = pytest.mark.integration

WIDTH = 600


def _setup(settings: Settings, node, model_id: str, tmp_path, n: int = 12_000, seed: int = 3):
    s = settings.model_copy(update={"redis_url": node.url})
    store = Store(node.url)
    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "ref.csv", rows=3000),
            prediction_column="score",
            label_column="is_fraud",
            config=MonitorConfig(window_seconds=WIDTH, evaluation_interval_seconds=1.0),
        )
    )
    start = (time.time() // WIDTH - 8) * WIDTH
    predictions, labels = synthetic.labelled_events(
        model_id, n, start, 4 * WIDTH, seed=seed, delay_seconds=(30, 1800)
    )
    return s, store, profile, predictions, labels


def _counted(store: Store, profile) -> int:
    return observed(store, profile).predictions


def _joined(store: Store, profile) -> int:
    return observed(store, profile).joined


def _settle(store, profile, want, timeout: float = 90) -> None:
    """Wait until Redis holds the truth, then a little longer: a double count shows."""
    assert wait_for(
        lambda: (
            _counted(store, profile) >= want.predictions and _joined(store, profile) >= want.joined
        ),
        timeout,
        interval=0.5,
    ), (_counted(store, profile), want.predictions, _joined(store, profile), want.joined)
    time.sleep(2)
    assert_exact(observed(store, profile), want)


def _readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


@pytest.mark.parametrize("how", ["rdb_snapshot", "aof_tail"])
def test_writes_redis_lost_are_read_again_from_kafka(settings, redis_node, model_id, tmp_path, how):
    """Redis comes back holding less than was applied and acknowledged, while Kafka's
    committed offsets are ahead of it: the worker reads the lost events again from
    Redis's fences, and counts and joins end exact."""
    node = redis_node(persistence="rdb" if how == "rdb_snapshot" else "aof-always")
    s, store, profile, predictions, labels = _setup(settings, node, model_id, tmp_path)
    want = truth(predictions, labels, WIDTH)
    half = len(predictions) // 2
    produce(s, predictions[:half])
    produce(s, labels[: half // 2], topic=s.labels_topic)
    with WorkerThread(s) as w:
        assert wait_for(lambda: _counted(store, profile) >= half // 3, 60)
        snapshot = node.snapshot() if how == "rdb_snapshot" else None
        produce(s, labels[half // 2 : half], topic=s.labels_topic)
        assert wait_for(
            lambda: _counted(store, profile) >= half and _joined(store, profile) >= half // 2, 60
        )
        time.sleep(1)  # the offsets of what was applied reach Kafka's commit
        before = _counted(store, profile) + _joined(store, profile)
        if snapshot is not None:
            node.restart_from_snapshot(snapshot)
        else:
            cut = node.restart_losing_aof_tail(0.3)
            assert cut.commands_lost > 0
        # Redis did lose applied writes
        assert _counted(store, profile) + _joined(store, profile) < before
        produce(s, predictions[half:])
        produce(s, labels[half:], topic=s.labels_topic)
        _settle(store, profile, want)
        assert w.worker.stats.resyncs >= 1
        assert w.alive and w.error is None
    stats = store.counters.join_stats(model_id)
    assert stats["joined"] == want.joined


def test_redis_restarted_empty_stops_the_worker_until_models_are_registered_again(
    settings, redis_node, model_id, tmp_path
):
    """Nothing is dead-lettered because Redis forgot a profile: the worker pauses,
    reports not-ready with one clear reason, raises a `system` alert (route ops), and
    once the model is registered again it re-reads the retained log and counts it
    exactly."""
    node = redis_node(persistence="none")
    s, store, profile, predictions, labels = _setup(settings, node, model_id, tmp_path, n=6000)
    want = truth(predictions, labels, WIDTH)
    produce(s, predictions[:3000])
    with WorkerThread(s) as w:
        assert wait_for(lambda: _counted(store, profile) >= 3000, 60)
        node.restart_empty()
        produce(s, predictions[3000:])
        produce(s, labels, topic=s.labels_topic)
        port = w.worker.health.port
        assert wait_for(lambda: _readyz(port)[0] == 503, 20)
        _code, body = _readyz(port)
        assert "lost its state" in body["reason"] and "register" in body["reason"]
        assert w.worker.metrics.state_lost._value.get() == 1
        time.sleep(3)  # paused: nothing is counted, nothing dead-lettered
        assert store.profiles.models() == []
        assert read_topic(s, s.dlq_topic(s.predictions_topic), idle_ms=1000) == []
        assert read_topic(s, s.dlq_topic(s.labels_topic), idle_ms=1000) == []
        profile, _ = store.profiles.save(profile.model_copy(update={"revision": 1}))
        _settle(store, profile, want)
        assert wait_for(lambda: _readyz(port)[0] == 200, 20)
        assert w.worker.metrics.state_lost._value.get() == 0
        pausing = [m for m in w.log.messages() if m.startswith("pausing")]
        assert len(pausing) == 1, w.log.messages()
    lost = [a for a in read_alerts(s, now=True) if a["type"] == "system"]
    assert [a["statistic"] for a in lost] == ["state_lost"]
    assert lost[0]["context"]["route"] == "ops"


def test_a_known_model_whose_profile_vanished_is_state_lost_not_dead_letters(
    settings, redis_node, model_id, tmp_path
):
    """A registered model's profile gone (a cluster shard emptied, a key deleted by
    hand) is lost state too: its events wait for the profile, none is dead-lettered."""
    node = redis_node(persistence="none")
    s, store, profile, predictions, _ = _setup(settings, node, model_id, tmp_path, n=2000)
    store.redis.delete(f"sd:{{{model_id}}}:profile")
    produce(s, predictions)
    with WorkerThread(s) as w:
        assert wait_for(lambda: w.worker.fault is not None, 30)
        assert w.worker.fault.code == "state_lost"
        time.sleep(2)
        assert read_topic(s, s.dlq_topic(s.predictions_topic), idle_ms=1000) == []
        store.profiles.save(profile)
        assert wait_for(lambda: _counted(store, store.profiles.load(model_id)) == 2000, 60)


def test_unreachable_and_frozen_redis_is_waited_out(settings, redis_node, model_id, tmp_path):
    """Redis SIGKILLed for a while, then SIGSTOPped: the worker stays up, /readyz says
    503 with the reason within a second, each change is one log line (no traceback),
    and it resumes by itself with exact counts."""
    node = redis_node(persistence="aof-always")
    s, store, profile, predictions, labels = _setup(settings, node, model_id, tmp_path, n=8000)
    want = truth(predictions, labels, WIDTH)
    produce(s, predictions[:4000])
    with WorkerThread(s) as w:
        assert wait_for(lambda: _counted(store, profile) >= 4000, 60)
        port = w.worker.health.port
        assert wait_for(lambda: _readyz(port)[0] == 200, 20)

        node.kill()
        produce(s, predictions[4000:6000])
        t0 = time.monotonic()
        assert wait_for(lambda: _readyz(port)[0] == 503, 5, interval=0.05)
        assert time.monotonic() - t0 < 1.5
        assert "redis" in _readyz(port)[1]["reason"]
        rss = _rss(w)
        time.sleep(6)
        assert w.alive and w.error is None
        assert _rss(w) < rss + 30_000  # kB: paused, nothing piles up
        node.restart()
        assert wait_for(lambda: _counted(store, profile) >= 6000, 60)

        node.freeze()
        produce(s, predictions[6000:])
        t0 = time.monotonic()
        assert wait_for(lambda: _readyz(port)[0] == 503, 5, interval=0.05)
        assert time.monotonic() - t0 < 1.5
        # past the reply timeout (5 s): the main loop notices too
        assert wait_for(lambda: w.worker.fault is not None, 15, interval=0.1)
        assert w.alive
        node.thaw()
        produce(s, labels, topic=s.labels_topic)
        _settle(store, profile, want)
        assert wait_for(lambda: _readyz(port)[0] == 200, 20)
    messages = w.log.messages(logging.WARNING)
    assert not any(r.exc_info for r in w.log.records), "a traceback was logged"
    pausing = [m for m in messages if m.startswith("pausing")]
    resumed = [m for m in messages if m.startswith("resumed")]
    assert 2 <= len(pausing) <= 3 and len(resumed) == len(pausing), messages
    assert len(messages) <= 20, messages


def _rss(w: WorkerThread) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_an_evicting_redis_is_refused_at_start(settings, redis_node, model_id, tmp_path):
    node = redis_node(persistence="none", maxmemory=64 * 1024 * 1024, policy="volatile-lru")
    s = settings.model_copy(update={"redis_url": node.url})
    res = cli(s, "worker", "--max-seconds", "5")
    assert res.returncode == 2, res.stderr
    [line] = [x for x in res.stderr.splitlines() if x.startswith("streamdrift:")]
    assert "volatile-lru" in line and "noeviction" in line
    res = cli(
        s,
        "register",
        model_id,
        "--reference",
        str(synthetic.write_reference(tmp_path / "r.csv", rows=500)),
    )
    assert res.returncode == 2 and "noeviction" in res.stderr


def test_a_full_redis_pauses_the_worker_until_it_has_room(settings, redis_node, model_id, tmp_path):
    """`noeviction` at maxmemory: the apply is refused up front (nothing half-written),
    the worker waits, and counts everything once Redis has room again."""
    node = redis_node(persistence="none", maxmemory=64 * 1024 * 1024)
    s, store, profile, predictions, labels = _setup(settings, node, model_id, tmp_path, n=6000)
    want = truth(predictions, labels, WIDTH)
    produce(s, predictions[:2000])
    with WorkerThread(s) as w:
        assert wait_for(lambda: _counted(store, profile) >= 2000, 60)
        used = int(node.client().info("memory")["used_memory"])
        node.client().config_set("maxmemory", used - 1024 * 1024)
        produce(s, predictions[2000:])
        produce(s, labels, topic=s.labels_topic)
        assert wait_for(lambda: w.worker.fault is not None, 30)
        assert w.worker.fault.code == "redis_oom"
        node.client().config_set("maxmemory", 256 * 1024 * 1024)
        _settle(store, profile, want)
