"""Two workers on four partitions, SIGKILLed at random moments and restarted while the
stream flows: Redis must end exactly as if every event had been counted once, and the
drift half-way through must open one episode per feature, raised under one alert id
whatever the kills interrupted. Commits lag the applies (slow_commit_worker.py), so
random kills often land between the two; every other kill lands there for certain (the
worker is asked to stop in its next commit, after the apply)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.reference import build_profile

from .conftest import env_for, produce, read_alerts, wait_for, write_config
from .truth import WorkerThread

pytestmark = pytest.mark.integration

WINDOW = 600
N = 30_000
KILLS = 6
MIN_AGE = 6.0  # seconds: start-up, group join, and the dead member's session timeout (3 s)


SLOW_COMMIT_WORKER = Path(__file__).with_name("slow_commit_worker.py")
DYING_WORKER = Path(__file__).with_name("dying_worker.py")


def _spawn(settings, log_path, hold_dir):
    return subprocess.Popen(
        [sys.executable, str(SLOW_COMMIT_WORKER)],
        env={**env_for(settings), "SLOW_COMMIT_HOLD_DIR": str(hold_dir)},
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )


def test_sigkilled_workers_count_every_event_exactly_once(settings, store, model_id, tmp_path):
    settings.batch_size = 300
    settings.session_timeout_ms = 3000  # a killed member's partitions move on within 3 s
    config = write_config(tmp_path / "m.json", window_seconds=WINDOW)
    from streamdrift.config import MonitorConfig

    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "ref.csv"),
            config=MonitorConfig.model_validate_json(config.read_text()),
        )
    )
    start = (time.time() // WINDOW - 5) * WINDOW
    events = list(synthetic.prediction_events(model_id, N, start, 4 * WINDOW, drift_at=0.5, seed=5))

    # What Redis must hold, computed offline from the events themselves.
    want_count: Counter[int] = Counter()
    want_sum: defaultdict[int, float] = defaultdict(float)
    want_country: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for _, value in events:
        e = orjson.loads(value)
        w = int(e["timestamp"] // WINDOW * WINDOW)
        want_count[w] += 1
        want_sum[w] += e["features"]["f00"]
        want_country[w][e["features"]["country"]] += 1

    def counted() -> int:
        return sum(
            w.count
            for w in store.windows.read(profile, store.windows.starts(model_id, profile.revision))
        )

    log = tmp_path / "workers.log"
    hold = tmp_path / "hold"
    hold.mkdir()
    workers = [_spawn(settings, log, hold), _spawn(settings, log, hold)]
    killed = threading.Event()

    def feed() -> None:
        """250 events every half second until the last kill (the stream flows under
        every kill), then the rest at once."""
        i = 0
        while i < N and not killed.is_set():
            produce(settings, events[i : i + 250])
            i += 250
            time.sleep(0.5)
        produce(settings, events[i:])

    producer = threading.Thread(target=feed)
    producer.start()
    rng = random.Random(42)
    born = [time.monotonic()] * len(workers)
    kills = 0
    deadline = time.monotonic() + 120
    while kills < KILLS and time.monotonic() < deadline:
        # Kill a worker that has been in the group long enough to be consuming, while
        # batches are being applied: often after an apply and before its commit.
        i = min(range(len(workers)), key=lambda k: born[k])
        time.sleep(max(0.0, born[i] + MIN_AGE - time.monotonic()))
        before = counted()
        if not wait_for(lambda b=before: counted() > b, timeout=20, interval=0.02):
            break
        if kills % 2 == 0:  # certainly between an apply and its commit
            pid = workers[i].pid
            (hold / f"hold-{pid}").touch()
            if not wait_for((hold / f"held-{pid}").exists, timeout=20, interval=0.01):
                break
        else:  # at a random moment
            time.sleep(rng.uniform(0.0, 0.08))
        workers[i].send_signal(signal.SIGKILL)
        workers[i].wait()
        kills += 1
        workers[i], born[i] = _spawn(settings, log, hold), time.monotonic()
    killed.set()
    producer.join()
    try:
        assert wait_for(lambda: counted() >= N, timeout=150, interval=0.25), (
            f"only {counted()} of {N} counted after {kills} kills; log: {log.read_text()[-2000:]}"
        )
        time.sleep(2)  # anything still in flight would show up as a double count now
        windows = {
            w.start: w
            for w in store.windows.read(profile, store.windows.starts(model_id, profile.revision))
        }
        assert {s: w.count for s, w in windows.items()} == dict(want_count)
        for s, w in windows.items():
            assert w.numeric["f00"].n == want_count[s]
            assert int(w.numeric["f00"].bins.sum()) == want_count[s]
            assert w.numeric["f00"].total == pytest.approx(want_sum[s], rel=1e-9)
            assert dict(w.categorical["country"].counts) == dict(want_country[s])
        assert kills == KILLS
        # Episodes: one per drifting feature, one alert id per transition; an alert a
        # killed worker claimed but did not publish stays claimed for its re-send.
        assert wait_for(lambda: not store.schedule.dirty(model_id), timeout=30)
        claimed = {a["alert_id"]: a for a in store.alerts.all(model_id)}
        published = read_alerts(settings)
        assert {a["alert_id"] for a in published} <= set(claimed)
        transitions: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
        for a in claimed.values():
            transitions[(a["episode_id"], a["status"], a["severity"])].add(a["alert_id"])
        assert all(len(ids) == 1 for ids in transitions.values()), transitions
        drift = [a for a in claimed.values() if a["type"] == "data_drift"]
        assert sorted(a["feature"] for a in drift if a["status"] == "open") == sorted(
            synthetic.DRIFTING
        )
        assert len({a["episode_id"] for a in drift}) == len(synthetic.DRIFTING)
        episodes = store.episodes.load(model_id).episodes
        for f in synthetic.DRIFTING:
            assert episodes[f"data_drift:{f}"].since == start + 2 * WINDOW
        # A worker resumes from Redis's fences, not from Kafka's commit: the events a
        # killed worker applied but did not commit are not read again at all.
        text = log.read_text()
        assert text.count("reading from Redis's fences") >= KILLS
        assert text.count("applied beyond the commits") >= KILLS // 2, (
            "a kill asked to land between an apply and its commit did not"
        )
    finally:
        for p in workers:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in workers]
    assert codes == [0, 0], log.read_text()[-3000:]


def test_a_worker_killed_between_two_models_applies_loses_neither(settings, store, tmp_path):
    """A batch's applies go to Redis model by model. A worker that dies after the first
    model's apply (its fence now past the batch) and before the second's (no fence on
    the partition at all) leaves the second model's events of that batch to be read again:
    the next worker reads the partition from where the second model stands, not from the
    first model's fence, and both models end with every event counted once."""
    settings.batch_size = 400
    tag = uuid.uuid4().hex[:6]
    a, b = f"a-{tag}", f"b-{tag}"  # the worker applies them in this order
    reference = synthetic.write_reference(tmp_path / "ref.csv")
    from streamdrift.config import MonitorConfig

    config = MonitorConfig(window_seconds=WINDOW)
    profiles = {
        m: store.profiles.save(build_profile(m, reference, config=config))[0] for m in (a, b)
    }
    start = (time.time() // WINDOW - 3) * WINDOW
    n = 1200
    streams = [
        [v for _, v in synthetic.prediction_events(m, n, start, 2 * WINDOW, seed=s)]
        for s, m in enumerate((a, b), 7)
    ]
    # one key: one partition, a and b alternating, so b's first events lie below the
    # fence a's first apply leaves
    produce(settings, [(b"one", v) for pair in zip(*streams, strict=True) for v in pair])

    def counted(m: str) -> int:
        p = profiles[m]
        return sum(w.count for w in store.windows.read(p, store.windows.starts(m, p.revision)))

    dying = subprocess.run(
        [sys.executable, str(DYING_WORKER)],
        env=env_for(settings),
        capture_output=True,
        timeout=120,
    )
    assert dying.returncode == 137, dying.stderr.decode()[-3000:]
    fences = store.fences.all([a, b])
    predictions = [f for f in fences[a] if f.startswith(settings.predictions_topic)]
    assert [fences[a][f] >= 1 for f in predictions] == [True], fences  # past b's first event
    assert not any(f.startswith(settings.predictions_topic) for f in fences[b]), fences
    assert counted(a) > 0 and counted(b) == 0

    with WorkerThread(settings) as w:
        assert wait_for(lambda: counted(a) >= n and counted(b) >= n, timeout=60), (
            counted(a),
            counted(b),
        )
        time.sleep(1)  # a double count still in flight would show now
        assert w.error is None
    assert (counted(a), counted(b)) == (n, n)
