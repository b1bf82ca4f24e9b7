"""streamdrift on a real three-master Redis Cluster: each model's keys on one master (its
hash tag), its apply atomic there; exact counts and joins with three models on three
shards, with workers SIGKILLed, and while a model's slot moves to another master."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig, Settings
from streamdrift.reference import build_profile
from streamdrift.store import Store
from streamdrift.worker import Worker

from .conftest import cli, env_for, produce, read_alerts, wait_for, write_config
from .redis_control import RedisCluster, stable_port
from .truth import Truth, WorkerThread, assert_exact, observed, truth

pytestmark = pytest.mark.integration

WIDTH = 600
SLOW_COMMIT_WORKER = Path(__file__).with_name("slow_commit_worker.py")


def _on_cluster(settings: Settings, cluster: RedisCluster) -> tuple[Settings, Store]:
    s = settings.model_copy(update={"redis_url": cluster.url})
    return s, Store(cluster.url)


def _model_per_master(cluster: RedisCluster) -> dict[str, tuple[str, int]]:
    """A fresh model id for each master: the id is the hash tag of all its keys, so the
    model lives on the master that serves the id's slot."""
    uid = uuid.uuid4().hex[:6]
    return {cluster.hash_tag_on(node, prefix=f"m{uid}-"): node for node in cluster.nodes}


def _register(s: Settings, model: str, tmp_path: Path) -> None:
    """`streamdrift register` as a user runs it, with STREAMDRIFT_REDIS_URL naming the
    cluster."""
    ref = tmp_path / "reference.csv"
    if not ref.exists():
        synthetic.write_reference(ref, rows=3000)
    config = write_config(
        tmp_path / "monitor.json", window_seconds=WIDTH, evaluation_interval_seconds=0.5
    )
    res = cli(
        s,
        "register",
        model,
        "--reference",
        str(ref),
        "--prediction-column",
        "score",
        "--label-column",
        "is_fraud",
        "--config",
        str(config),
    )
    assert res.returncode == 0, res.stderr
    assert f"registered model '{model}'" in res.stdout


def _save(store: Store, model: str, tmp_path: Path) -> None:
    """The profile `_register` stores, saved directly (quicker than the CLI)."""
    ref = tmp_path / "reference.csv"
    if not ref.exists():
        synthetic.write_reference(ref, rows=3000)
    config = MonitorConfig(window_seconds=WIDTH, evaluation_interval_seconds=0.5)
    store.profiles.save(
        build_profile(model, ref, prediction_column="score", label_column="is_fraud", config=config)
    )


def _streams(
    models: list[str],
    n: int,
    windows: int,
    drift_at: float | None = None,
    seed: int = 1,
    sizes: dict[str, int] | None = None,
):
    """Each model's labelled stream over `windows` whole windows (`n` events, or
    `sizes[model]`), the models interleaved event by event, so a smaller model's events
    end early in the stream; labels 30 s to 30 min late in event time."""
    start = (time.time() // WIDTH - windows - 1) * WIDTH
    sizes = sizes or {}
    per_model = {
        m: synthetic.labelled_events(
            m,
            sizes.get(m, n),
            start,
            windows * WIDTH,
            drift_at=drift_at,
            seed=seed,
            delay_seconds=(30, 1800),
        )
        for m in models
    }
    predictions, labels = [], []
    for i in range(n):
        for m in models:
            if i < len(per_model[m][0]):
                predictions.append(per_model[m][0][i])
                labels.append(per_model[m][1][i])
    return per_model, predictions, labels


def _observed_all(store: Store, models: list[str]) -> dict[str, Truth]:
    out = {}
    for m in models:
        profile = store.profiles.load(m)
        assert profile is not None
        out[m] = observed(store, profile)
    return out


def _settle(store: Store, want: dict[str, Truth], timeout: float, log: Path | None = None) -> None:
    """Wait until Redis holds as many predictions and joins as the truth, then a little
    longer (a double count would show), and compare exactly. A stall shows the counts
    and the tail of the workers' `log`, which goes with the test's temporary folder."""

    def done() -> bool:
        got = _observed_all(store, list(want))
        return all(
            got[m].predictions >= w.predictions and got[m].joined >= w.joined
            for m, w in want.items()
        )

    assert wait_for(done, timeout, interval=0.5), (
        {m: (t.predictions, t.joined) for m, t in _observed_all(store, list(want)).items()},
        log.read_text()[-6000:] if log is not None and log.exists() else "",
    )
    time.sleep(1.5)
    got = _observed_all(store, list(want))
    for m, w in want.items():
        assert_exact(got[m], w)
        assert store.counters.join_stats(m).get("joined", 0) == w.joined


def _keys_by_node(cluster: RedisCluster, pattern: str) -> dict[tuple[str, int], list[bytes]]:
    """The keys matching `pattern` that each master itself holds (no redirection)."""
    out = {}
    for node in cluster.nodes:
        with cluster.node_client(node) as c:
            out[node] = list(c.scan_iter(match=pattern, count=1000))
    return out


def test_three_models_on_three_masters_count_join_and_alert_exactly(
    settings, redis_cluster, tmp_path
):
    """Three models, one per master, each with labels; its inputs drift half-way. One
    worker: every window's counts and confusion matrix exact, data-drift alerts for the
    drifted features of the drifted windows of each model, and each model's keys on its
    own master only."""
    cluster = redis_cluster
    s, store = _on_cluster(settings, cluster)
    placement = _model_per_master(cluster)
    models = sorted(placement)
    assert len(set(placement.values())) == 3
    for m in models:
        _register(s, m, tmp_path)
    n, windows = 2400, 2
    per_model, predictions, labels = _streams(models, n, windows, drift_at=0.5, seed=4)
    want = {m: truth(*per_model[m], WIDTH) for m in models}
    produce(s, predictions)
    produce(s, labels, topic=s.labels_topic)

    stats = Worker(s).run(
        max_seconds=60, install_signals=False, until_messages=len(predictions) + len(labels)
    )
    assert stats.counted == len(predictions)
    _settle(store, want, timeout=20)

    alerts = [a for a in read_alerts(s, now=True) if a["type"] == "data_drift"]
    for m in models:
        starts = sorted(want[m].count)
        found = {
            (a["feature"], int(datetime.fromisoformat(a["window_start"]).timestamp()))
            for a in alerts
            if a["model_id"] == m
        }
        assert {f for f, _ in found} == set(synthetic.DRIFTING), (m, found)
        assert {w for _, w in found} == set(starts[windows // 2 :]), (m, found)

    for m, node in placement.items():
        held = _keys_by_node(cluster, f"sd:{{{m}}}:*")
        assert len(held[node]) > 50, (m, {k: len(v) for k, v in held.items()})
        assert all(not keys for other, keys in held.items() if other != node)
        slot = cluster.slot_of(f"sd:{{{m}}}:profile")
        with cluster.node_client(node) as c:
            assert int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) >= len(held[node])

    # the windows' deltas lists fold on the cluster too: a read leaves one blob each
    for m in models:
        profile = store.profiles.load(m)
        assert profile is not None
        store.windows.read(profile, store.windows.starts(m, profile.revision), slices=True)
        lists = [
            k
            for keys in _keys_by_node(cluster, f"sd:{{{m}}}:w:*").values()
            for k in keys
            if k.endswith((b":nd", b":pd", b":md"))
        ]
        assert len(lists) >= 2 * windows, (m, lists)
        assert {int(store.redis.llen(k)) for k in lists} == {1}, m

    report = cli(s, "inspect", models[0], "--json")
    assert report.returncode == 0, report.stderr
    doc = orjson.loads(report.stdout)
    assert {
        int(datetime.fromisoformat(w["start"]).timestamp()): w["count"] for w in doc["windows"]
    } == dict(want[models[0]].count)


#: Run a worker as `python -m` does, with its periodic tick (which moves quiet models'
#: fences up) pushed beyond the test: a model whose events stopped keeps its fences
#: where its last event left them, so a restart re-reads what the other models already
#: counted certainly, not only when a kill lands between two ticks.
_NO_TICK = (
    "import runpy, sys, streamdrift.worker as w; w.TICK_SECONDS = 3600.0; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__') "
    "if sys.argv[0].endswith('.py') else runpy.run_module('streamdrift', run_name='__main__')"
)


def _spawn(s: Settings, log_path: Path, kind: int) -> subprocess.Popen:
    """A worker process: `streamdrift worker` (kind 0), or one whose Kafka commits lag its
    applies by 100 ms (kind 1); neither moves quiet models' fences (`_NO_TICK`)."""
    command = ["streamdrift", "worker"] if kind == 0 else [str(SLOW_COMMIT_WORKER)]
    return subprocess.Popen(
        [sys.executable, "-c", _NO_TICK, *command],
        env=env_for(s),
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )


def _feed(
    s: Settings, predictions: list, labels: list, chunk: int, pause: float
) -> threading.Thread:
    """Produce the stream a chunk of predictions and their labels at a time, `pause`
    seconds apart, in a thread."""

    def run() -> None:
        for i in range(0, len(predictions), chunk):
            produce(s, predictions[i : i + chunk])
            produce(s, labels[i : i + chunk], topic=s.labels_topic)
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigkilled_workers_on_the_cluster_count_every_event_once(settings, redis_cluster, tmp_path):
    """Two worker processes (`streamdrift worker`, and one whose commits lag its applies),
    SIGKILLed three times while three models on three masters stream predictions and
    labels: every window's counts and confusion matrix end exact. The third model's
    events stop early, and its fences stay where they ended (`_NO_TICK`), so a restarted
    worker reads from them: events the other models already counted come again, and
    their fences drop them."""
    cluster = redis_cluster
    s, store = _on_cluster(settings, cluster)
    s.batch_size = 500
    s.session_timeout_ms = 3000  # a killed member's partitions move on within 3 s
    models = sorted(_model_per_master(cluster))
    for m in models:
        _save(store, m, tmp_path)
    per_model, predictions, labels = _streams(models, 4000, 3, seed=6, sizes={models[2]: 1500})
    want = {m: truth(*per_model[m], WIDTH) for m in models}

    def counted() -> int:
        return sum(t.predictions + t.joined for t in _observed_all(store, models).values())

    log = tmp_path / "workers.log"
    workers = [_spawn(s, log, 0), _spawn(s, log, 1)]
    born = [time.monotonic(), time.monotonic() + 3.0]  # one of them is always running
    feeder = _feed(s, predictions, labels, chunk=500, pause=0.5)
    kills = 0
    try:
        while kills < 3:
            i = min(range(2), key=lambda k: born[k])
            time.sleep(max(0.0, born[i] + 4.0 - time.monotonic()))
            before = counted()
            assert wait_for(lambda b=before: counted() > b, timeout=20, interval=0.02), (
                log.read_text()[-3000:]
            )
            time.sleep(0.03 * kills)
            workers[i].send_signal(signal.SIGKILL)
            workers[i].wait()
            kills += 1
            workers[i], born[i] = _spawn(s, log, i), time.monotonic()
        feeder.join()
        _settle(store, want, timeout=60, log=log)
        assert "already counted" in log.read_text(), "no event was re-delivered"
        # SIGTERM reaches a worker still starting up before its handler does (it dies of
        # it, code -15): the one spawned last comes up first
        for p in workers:
            assert wait_for(lambda p=p: f":{p.pid} consuming" in log.read_text(), timeout=60)
    finally:
        for p in workers:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in workers]
    assert codes == [0, 0], log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


def test_moving_a_models_slot_mid_stream_keeps_counts_and_joins_exact(
    settings, redis_cluster, tmp_path
):
    """While one worker applies a steady stream for model A, A's slot moves to another
    master key batch by key batch (applies meet ASK and TRYAGAIN the whole time), then
    `redis-cli --cluster reshard` moves a range holding it to the third master. The
    worker waits the moves out and counts and joins end exact."""
    cluster = redis_cluster
    s, store = _on_cluster(settings, cluster)
    source = cluster.nodes[0]
    model = cluster.hash_tag_for_slots(
        min(cluster.slots_of(source)), prefix=f"a{uuid.uuid4().hex[:6]}-"
    )
    slot = cluster.slot_of(f"sd:{{{model}}}:profile")
    _save(store, model, tmp_path)
    per_model, predictions, labels = _streams([model], 6000, 3, seed=8)
    want = {model: truth(*per_model[model], WIDTH)}
    profile = store.profiles.load(model)
    assert profile is not None

    with WorkerThread(s) as w:
        feeder = _feed(s, predictions, labels, chunk=150, pause=0.3)
        assert wait_for(lambda: observed(store, profile).predictions >= 600, 30)
        target = cluster.nodes[1]
        # a few keys at a time: the model's ~100 keys (64 journal shards) take seconds
        move = cluster.move_slot(slot, target, batch=2, pause=0.03)
        assert move.keys_moved > 64 and cluster.owner_of_slot(slot) == target
        assert feeder.is_alive(), "the stream ended before the slot moved"
        # redis-cli moves a master's lowest slots first: the range holds the model's
        below = sum(1 for x in cluster.slots_of(target) if x <= slot)
        moved = cluster.reshard(below + 4, target, cluster.nodes[2])
        assert slot in moved and cluster.owner_of_slot(slot) == cluster.nodes[2]
        feeder.join()
        _settle(store, want, timeout=40)
        assert w.alive and w.error is None
        waits = [m for m in w.log.messages() if m.startswith("pausing")]
        slot_waits = w.worker.store.applies.slot_waits
    # the applies did meet the move (and nothing else): refused whole, tried again a
    # moment later, and paused on only if the slot took longer than that
    assert slot_waits > 0 or waits, "no apply met the moving slot"
    assert all("redis cluster is moving a slot" in m for m in waits), waits
    held = _keys_by_node(cluster, f"sd:{{{model}}}:*")
    assert [len(held[n]) > 0 for n in cluster.nodes] == [False, False, True]
    cluster.check()


def test_a_cluster_of_one_master_works_too(settings, redis_node, tmp_path):
    """A development cluster of a single master, all slots on it: the worker reads each
    primary's INFO (the cluster client answers a one-primary INFO bare, not by node) and
    counts exactly."""
    bus = ["--cluster-port", str(stable_port())]
    node = redis_node(
        persistence="none",
        extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *bus],
    )
    with node.client() as c:
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        assert wait_for(lambda: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"), 10)
    url = f"redis+cluster://127.0.0.1:{node.port}"
    s, store = settings.model_copy(update={"redis_url": url}), Store(url)
    model = f"one-{uuid.uuid4().hex[:6]}"
    _save(store, model, tmp_path)
    store.check_eviction_policy()
    per_model, predictions, labels = _streams([model], 2000, 2, seed=9)
    produce(s, predictions)
    produce(s, labels, topic=s.labels_topic)
    stats = Worker(s).run(max_seconds=60, install_signals=False, until_messages=4000)
    assert stats.counted == 2000
    _settle(store, {model: truth(*per_model[model], WIDTH)}, timeout=10)


def test_a_shard_that_lost_a_models_keys_is_counted_again_once_registered(
    settings, redis_cluster, tmp_path
):
    """One master loses every key of model X (as when it restarts empty) while the worker
    runs; model Y on another master keeps its state. The worker stops on the loss instead
    of counting X into nothing; once X is registered again (the CLI), X's events are read
    again from the start, Y's re-deliveries are dropped by Y's fences, and both end
    exact."""
    cluster = redis_cluster
    s, store = _on_cluster(settings, cluster)
    placement = _model_per_master(cluster)
    x, y = sorted(placement)[:2]
    for m in (x, y):
        _save(store, m, tmp_path)
    per_model, predictions, labels = _streams([x, y], 1500, 2, seed=12)
    want = {m: truth(*per_model[m], WIDTH) for m in (x, y)}
    half = len(predictions) // 2
    produce(s, predictions[:half])
    produce(s, labels[:half], topic=s.labels_topic)
    with WorkerThread(s) as w:
        assert wait_for(lambda: sum(_counts(store, [x, y])) >= half, 30)
        with cluster.node_client(placement[x]) as c:
            c.delete(*c.scan_iter(match=f"sd:{{{x}}}:*", count=1000))
        produce(s, predictions[half:])
        produce(s, labels[half:], topic=s.labels_topic)
        assert wait_for(lambda: w.worker.fault is not None, 20)
        assert w.worker.fault.code == "state_lost" and x in w.worker.fault.reason
        _register(s, x, tmp_path)
        _settle(store, want, timeout=40)
        assert w.alive and w.error is None


def _counts(store: Store, models: list[str]) -> list[int]:
    out = []
    for m in models:
        profile = store.profiles.load(m)
        out.append(observed(store, profile).predictions if profile is not None else 0)
    return out
