"""The delayed-label join on the real broker and Redis: late, shuffled, early and repeated
labels, two workers killed mid-stream, and a model whose labels stop matching it."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

from .conftest import env_for, produce, read_alerts, wait_for

pytestmark = pytest.mark.integration

SLOW_COMMIT_WORKER = Path(__file__).with_name("slow_commit_worker.py")


def _register(store, model_id, tmp_path, **config):
    profile = build_profile(
        model_id,
        synthetic.write_reference(tmp_path / "ref.csv"),
        task="binary",
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(**config),
    )
    return store.profiles.save(profile)[0]


def _offline(predictions, labels, width):
    """Confusion matrices and labelled counts per window, computed from the events."""
    made = {}
    for _, v in predictions:
        e = orjson.loads(v)
        made[e["prediction_id"]] = (
            int(e["timestamp"] // width * width),
            str(e["prediction"]["label"]),
        )
    seen, cm = set(), defaultdict(Counter)
    for _, v in labels:
        e = orjson.loads(v)
        if e["prediction_id"] in seen:
            continue
        seen.add(e["prediction_id"])
        window, predicted = made[e["prediction_id"]]
        cm[window][(str(e["label"]), predicted)] += 1
    return cm


def _offline_segments(predictions, labels, width):
    """Per window and segment value: labelled count and correct classes."""
    made = {}
    for _, v in predictions:
        e = orjson.loads(v)
        made[e["prediction_id"]] = (
            int(e["timestamp"] // width * width),
            str(e["prediction"]["label"]),
            e["segments"],
        )
    seen, out = set(), defaultdict(lambda: defaultdict(Counter))
    for _, v in labels:
        e = orjson.loads(v)
        if e["prediction_id"] in seen:
            continue
        seen.add(e["prediction_id"])
        window, predicted, segments = made[e["prediction_id"]]
        for k, value in segments.items():
            out[window][f"{k}={value}"]["n"] += 1
            out[window][f"{k}={value}"]["ok"] += int(str(e["label"]) == predicted)
    return out


def test_late_shuffled_early_and_repeated_labels_join_once(settings, store, model_id, tmp_path):
    width = 6 * 3600
    settings.session_timeout_ms = 3000  # the killed worker's partitions move on within 3 s
    profile = _register(store, model_id, tmp_path, window_seconds=width)
    start = (time.time() // width - 21) * width  # labels up to 3 days late, none ahead of now
    predictions, labels = synthetic.labelled_events(
        model_id, 6000, start, 2 * 86400, seed=21, delay_seconds=(60, 3 * 86400)
    )
    rng = random.Random(3)
    labels = labels[:5000]  # some predictions never get a label
    rng.shuffle(labels)
    early, late = labels[:1500], labels[1500:]
    repeated_labels = rng.sample(labels, 300)
    repeated_predictions = rng.sample(predictions, 200)
    want = _offline(predictions, labels, width)
    want_segments = _offline_segments(predictions, labels, width)

    produce(settings, early + repeated_labels[:100], topic=settings.labels_topic)
    produce(settings, predictions)
    log = tmp_path / "workers.log"
    workers = [
        subprocess.Popen(
            [sys.executable, str(SLOW_COMMIT_WORKER)],
            env=env_for(settings),
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    try:
        produce(settings, late + repeated_labels[100:], topic=settings.labels_topic)
        produce(settings, repeated_predictions)

        def joined() -> int:
            return store.counters.join_stats(model_id).get("joined", 0)

        # Kill one worker once it is busy, then let a fresh one take over.
        assert wait_for(lambda: joined() > 500, timeout=90), log.read_text()[-2000:]
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        workers[0] = subprocess.Popen(
            [sys.executable, str(SLOW_COMMIT_WORKER)],
            env=env_for(settings),
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        assert wait_for(lambda: joined() >= 5000, timeout=150), (
            f"{store.counters.join_stats(model_id)}; {log.read_text()[-2000:]}"
        )
        assert wait_for(
            lambda: (
                sum(
                    store.counters.join_stats(model_id).get(k, 0)
                    for k in ("duplicate_labels", "duplicate_predictions")
                )
                >= 500
            ),
            timeout=60,
        )
        time.sleep(2)
        stats = store.counters.join_stats(model_id)
        assert stats["joined"] == 5000
        assert stats["duplicate_labels"] == 300
        assert stats["duplicate_predictions"] == 200
        windows = {
            w.start: w
            for w in store.windows.read(profile, store.windows.starts(model_id, profile.revision))
        }
        assert set(want) <= set(windows)
        for start_, cm in want.items():
            perf = windows[start_].performance
            assert perf is not None and dict(perf.confusion) == dict(cm), start_
            assert perf.labelled == sum(cm.values())
            assert perf.scored == perf.labelled
            assert int(perf.positive_hist.sum()) == sum(c for (a, _), c in cm.items() if a == "1")
            got = {k: {m: int(v) for m, v in c.items()} for k, c in perf.segments.items()}
            assert got == {k: dict(c) for k, c in want_segments[start_].items()}
        # The label delay is measured from the prediction's time.
        total_delay = sum(w.performance.delay_sum for w in windows.values() if w.performance)
        assert 60 * 5000 <= total_delay <= 3 * 86400 * 5000
    finally:
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            p.wait(30)

    doc = orjson.loads(
        subprocess.run(
            [sys.executable, "-m", "streamdrift", "inspect", model_id, "--json"],
            env=env_for(settings),
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    covered = [w for w in doc["windows"] if w["performance"]]
    assert sum(w["performance"]["labelled"] for w in covered) == 5000
    assert all(0 < w["performance"]["label_coverage"] <= 1 for w in covered)
    assert doc["join"]["joined"] == 5000
    assert {"region=EU", "region=US", "device=mobile"} <= set(covered[0]["segments"])
    assert (
        sum(
            w["segments"]["region=EU"]["labelled"] + w["segments"]["region=US"]["labelled"]
            for w in covered
        )
        == 5000
    )


def test_concept_drift_raises_performance_degradation_for_day_two_only(
    settings, store, model_id, tmp_path
):
    day = 86400
    profile = _register(store, model_id, tmp_path, window_seconds=day)
    start = (time.time() // day - 2) * day
    predictions, labels = synthetic.labelled_events(
        model_id, 4000, start, 2 * day, concept_drift_at=0.5, seed=8, delay_seconds=(60, 7200)
    )
    produce(settings, predictions)
    produce(settings, labels, topic=settings.labels_topic)
    stats = Worker(settings).run(max_seconds=120, install_signals=False, until_messages=8000)
    assert stats.labels_joined == 4000

    alerts = read_alerts(settings, now=True)
    perf = [a for a in alerts if a["type"] == "performance_degradation"]
    assert [a["window_start"][:10] for a in perf] == [
        time.strftime("%Y-%m-%d", time.gmtime(start + day))
    ]
    (alert,) = perf
    assert alert["feature"] == "roc_auc" and alert["value"] < 0.5
    assert alert["context"]["cause"] == "concept_drift"
    assert alert["context"]["baselines"]["reference"]["p_value"] < 1e-6
    # judged from the labels joined when the worker last evaluated: all 2,000, or fewer
    # when a busy machine made an evaluation fall between two batches of labels
    assert 0 < alert["sample_size"] <= 2000
    assert not [a for a in alerts if a["type"] in ("data_drift", "prediction_drift")]
    windows = store.windows.read(profile, store.windows.starts(model_id, profile.revision))
    first, second = (w.performance for w in windows)
    assert first is not None and first.labelled == 2000
    assert second is not None and second.labelled == 2000


def test_applies_that_hold_redis_too_long_shrink_the_batches(settings, store, model_id, tmp_path):
    """Labels first, then their predictions: each prediction joins a waiting label, the
    dearest apply there is (~25 µs each). With max_apply_ms 2 the worker polls smaller
    batches once an apply took longer, and still joins every label exactly once."""
    profile = _register(store, model_id, tmp_path, window_seconds=3600)
    predictions, labels = synthetic.labelled_events(
        model_id, 6000, time.time() - 3 * 3600, 3 * 3600, seed=12, delay_seconds=(60, 600)
    )
    produce(settings, labels, topic=settings.labels_topic)
    fast = settings.model_copy(update={"max_apply_ms": 2.0})
    first = Worker(fast)
    first.run(max_seconds=60, install_signals=False, until_messages=6000)
    produce(settings, predictions)
    worker = Worker(fast)
    stats = worker.run(max_seconds=120, install_signals=False, until_messages=6000)
    assert stats.labels_joined == 6000
    assert worker.batch_limit < settings.batch_size  # the polls were cut down
    assert stats.batches > 6000 // settings.batch_size + 2
    assert stats.longest_apply_us > 0
    windows = store.windows.read(profile, store.windows.starts(model_id, profile.revision))
    assert sum(w.count for w in windows) == 6000
    assert sum(w.performance.labelled for w in windows if w.performance) == 6000
    scripts = worker.metrics.script_seconds.collect()[0].samples
    count = next(s.value for s in scripts if s.name.endswith("_count"))
    assert count == stats.batches  # one model: one script per batch
