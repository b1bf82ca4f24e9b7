"""End to end on the real broker and Redis: drift is found where it is and nowhere else."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import jsonschema
import orjson
import pytest

from streamdrift import kafka_io, synthetic
from streamdrift.config import MonitorConfig
from streamdrift.evaluator import Evaluator
from streamdrift.reference import build_profile
from streamdrift.store.keys import ModelKeys
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts, write_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 600


def _register(settings, model_id, tmp_path: Path) -> None:
    ref = synthetic.write_reference(tmp_path / "reference.csv")
    # Evaluated once, when the worker stops: an earlier evaluation may see a window
    # half-counted (a legitimate alert, with a smaller sample) and make the figures
    # below depend on the machine's speed.
    config = write_config(
        tmp_path / "monitor.json", window_seconds=WINDOW, evaluation_interval_seconds=600
    )
    res = cli(
        settings,
        "register",
        model_id,
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
    assert f"registered model '{model_id}'" in res.stdout


def _stream(model_id: str, n: int, windows: int, drift_at: float | None):
    start = (time.time() // WINDOW - windows - 1) * WINDOW  # aligned: whole windows
    events = list(
        synthetic.prediction_events(
            model_id, n, start, windows * WINDOW, drift_at=drift_at, seed=11
        )
    )
    per_window = Counter(int(orjson.loads(v)["timestamp"] // WINDOW * WINDOW) for _, v in events)
    return events, per_window


def test_a_window_is_not_complete_while_an_owned_partition_is_unread(
    settings, store, model_id, tmp_path
):
    """Read unevenly (here: three of four partitions paused), the partitions read first
    must not carry a window to complete: it would be judged on a quarter of its events
    (a false volume drop; a performance drop whose inputs look unchecked)."""
    _register(settings, model_id, tmp_path)
    events, _ = _stream(model_id, 8_000, 2, drift_at=None)
    producer = kafka_io.producer(settings)
    for i, (key, value) in enumerate(events):  # in time order on each partition
        producer.produce(settings.predictions_topic, key=key, value=value, partition=i % 4)
    assert producer.flush(30) == 0
    times = [orjson.loads(v)["timestamp"] for _, v in events]
    first = Worker(settings)
    on_assign = first._on_assign

    def read_partition_zero_only(consumer, partitions):  # type: ignore[no-untyped-def]
        on_assign(consumer, partitions)
        consumer.pause([tp for tp in partitions if tp.partition != 0])

    first._on_assign = read_partition_zero_only  # type: ignore[method-assign]
    # the hold is in Redis before the first apply raises partition 0's mark: an
    # evaluator never sees that mark alone
    send, at_first_send = first.store.applies.send, []
    marks_key = ModelKeys(model_id).watermarks

    def send_after_hold(request):  # type: ignore[no-untyped-def]
        if not at_first_send:
            at_first_send.append(store.redis.zrange(marks_key, 0, -1, withscores=True))
        return send(request)

    first.store.applies.send = send_after_hold  # type: ignore[method-assign]
    stats = first.run(max_seconds=60, install_signals=False, until_messages=2_000)
    assert stats.counted == 2_000
    assert [s for _, s in at_first_send[0]] == [float("-inf")] * 4
    low, moving = store.watermarks.low(model_id, time.time(), 600.0)
    # partition 0 passed both windows; the three unread ones hold them back
    assert moving and low == float("-inf")

    stats = Worker(settings).run(max_seconds=60, install_signals=False, until_messages=6_000)
    assert stats.counted == 6_000
    low, moving = store.watermarks.low(model_id, time.time(), 600.0)
    # every partition read to its end: the slowest one's mark (a batch's 99th percentile)
    ends = [max(times[p::4]) for p in range(4)]
    assert moving and min(times) < low <= min(ends)


def test_a_busy_worker_keeps_evaluations_to_their_share_of_its_time(
    settings, store, model_id, tmp_path
):
    """While messages keep coming, evaluations take at most EVALUATION_SHARE of the
    worker's time, the longest-waiting model first; idle, only the interval holds."""
    ref = synthetic.write_reference(tmp_path / "reference.csv")
    config = MonitorConfig(window_seconds=WINDOW, evaluation_interval_seconds=0)
    models = [f"{model_id}-a", f"{model_id}-b"]
    for m in models:
        store.profiles.save(build_profile(m, ref, prediction_column="score", config=config))
    worker = Worker(settings)
    ran: list[tuple[str, float]] = []

    def slow(profile, now=None):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        time.sleep(0.05)
        ran.append((profile.model_id, time.perf_counter() - started))
        return []

    worker.evaluator.evaluate = slow  # type: ignore[method-assign]
    busy_until = time.monotonic() + 2.0
    while time.monotonic() < busy_until:
        worker._pending_eval.update(models)
        worker.evaluate_due(idle=False)
        time.sleep(0.001)  # consuming
    busy, spent = [m for m, _ in ran], [t for _, t in ran]
    # 2 s at a tenth, and the evaluation the 2 s began with
    assert len(busy) >= 2 and sum(spent) <= 0.1 * 2.0 + max(spent), ran
    assert busy == [models[i % 2] for i in range(len(busy))]  # taking turns
    assert worker.stats.evaluations_deferred > 100
    ran.clear()
    idle_until = time.monotonic() + 1.0
    while time.monotonic() < idle_until:
        worker._pending_eval.update(models)
        worker.evaluate_due(idle=True)
    assert len(ran) >= 12  # idle: no share, back to back
    worker.store.redis.close()


def test_drift_detected_end_to_end(settings, store, model_id, tmp_path):
    _register(settings, model_id, tmp_path)
    events, per_window = _stream(model_id, 16_000, 4, drift_at=0.5)
    produce(settings, events)

    stats = Worker(settings).run(max_seconds=90, install_signals=False, until_messages=16_000)
    assert stats.counted == 16_000

    assert store.schedule.dirty(model_id) == []  # every touched window was evaluated
    everything = read_alerts(settings, now=True)
    schema = orjson.loads((ROOT / "schemas" / "alert.schema.json").read_bytes())
    for a in everything:
        jsonschema.validate(a, schema)
    alerts = [a for a in everything if a["type"] == "data_drift"]
    # f03's doubled spread also puts values beyond the reference range: one quality alert
    quality = [a for a in everything if a["type"] == "data_quality"]
    assert [(a["feature"], a["statistic"]) for a in quality] == [("f03", "out_of_range")]
    starts = sorted(per_window)
    # the drift starts in window 2 and lasts to the end: one episode per feature, opened
    # by window 2 and not repeated by window 3
    found = {
        (a["feature"], int(datetime.fromisoformat(a["window_start"]).timestamp())) for a in alerts
    }
    assert found == {(f, starts[2]) for f in synthetic.DRIFTING}
    assert {a["status"] for a in alerts} == {"open"}
    assert all(a["since"] == a["window_start"] for a in alerts)
    assert len({a["episode_id"] for a in alerts}) == len(alerts) == len(synthetic.DRIFTING)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    episodes = store.episodes.load(model_id).open()
    assert {e.key for e in episodes} >= {f"data_drift:{f}" for f in synthetic.DRIFTING}
    assert all(e.last == starts[3] for e in episodes if e.key.startswith("data_drift:"))
    top = next(a for a in alerts if a["feature"] == "f00")
    assert top["type"] == "data_drift" and top["model_version"] == "1.0.0"
    assert top["sample_size"] == 4000 and top["reference_size"] == 20_000
    assert {d["feature"] for d in top["context"]["drifting_features"]} == set(synthetic.DRIFTING)

    report = cli(settings, "inspect", model_id, "--json")
    assert report.returncode == 0, report.stderr
    doc = orjson.loads(report.stdout)
    assert doc["model_id"] == model_id
    assert [w["count"] for w in doc["windows"]] == [per_window[s] for s in starts]
    assert sorted(doc["windows"][3]["drifting"]) == sorted(synthetic.DRIFTING)
    assert doc["windows"][0]["drifting"] == []
    assert doc["windows"][0]["features"]["f05"]["psi"] < 0.05
    assert len(doc["alerts"]) == len(everything)

    table = cli(settings, "inspect", model_id)
    assert table.returncode == 0 and "drifting features" in table.stdout


def test_stationary_stream_raises_no_alert(settings, store, model_id, tmp_path):
    _register(settings, model_id, tmp_path)
    events, _ = _stream(model_id, 15_000, 5, drift_at=None)
    produce(settings, events)
    stats = Worker(settings).run(max_seconds=90, install_signals=False, until_messages=15_000)
    assert stats.counted == 15_000
    # No drift, no quality problem, no outlier share above the rate; single outlying
    # events are recorded (inspect) but not published.
    alerts = read_alerts(settings, now=True)
    assert alerts == [], [a["message"] for a in alerts]
    assert store.alerts.all(model_id) == []
    doc = orjson.loads(cli(settings, "inspect", model_id, "--json").stdout)
    assert sum(w["count"] for w in doc["windows"]) == 15_000
    assert all(w["drifting"] == [] for w in doc["windows"])

    # the windows table: every cell under its own header, saying what the JSON says
    table = cli(settings, "inspect", model_id).stdout.splitlines()
    top = next(i for i, line in enumerate(table) if "start (UTC)" in line)
    headers = [c.strip() for c in table[top].strip("│┃ ").split("┃" if "┃" in table[top] else "│")]
    rows = [
        [c.strip() for c in line.strip("│ ").split("│")]
        for line in table[top + 2 : top + 2 + len(doc["windows"])]
    ]
    assert all(len(r) == len(headers) for r in rows), (headers, rows)
    for w, cells in zip(doc["windows"], rows, strict=True):
        cell = dict(zip(headers, cells, strict=True))
        assert cell["start (UTC)"] == w["start"][:16]
        assert cell["end"] == w["end"][11:16]
        assert cell["events"] == f"{w['count']:,}"
        assert cell["invalid"] == str(sum(w["invalid"].values()))
        assert cell["drifting features"] == "-"
        assert cell["labelled"] == f"{int(w['performance'].get('labelled', 0)):,}"
        assert cell["outliers"] == f"{w['outliers']:,}"
        assert cell["quality"] == "-"


def test_each_alert_is_raised_once_and_resent_if_its_publisher_died(
    settings, store, model_id, tmp_path
):
    _register(settings, model_id, tmp_path)
    events, _ = _stream(model_id, 4000, 1, drift_at=0.0)
    produce(settings, events)
    worker = Worker(settings)
    worker.run(max_seconds=60, install_signals=False, until_messages=4000)
    first = read_alerts(settings, now=True)
    assert {a["feature"] for a in first if a["type"] == "data_drift"} == set(synthetic.DRIFTING)

    # A second evaluation of the same windows (as after a crash) raises nothing new.
    profile = store.profiles.load(model_id)
    for start in store.windows.starts(model_id, profile.revision):
        store.redis.zadd(f"sd:{{{model_id}}}:dirty", {f"{profile.revision}:{start}": time.time()})
    evaluator = Evaluator(store, worker.producer, settings.alerts_topic, "second")
    assert evaluator.evaluate(profile) == []

    # An alert claimed by a worker that died before publishing is re-sent, same id.
    lost = first[0]["alert_id"]
    store.redis.hset(f"sd:{{{model_id}}}:alert_state", lost, f"claimed:{time.time() - 600!r}")
    evaluator.evaluate(profile)
    again = read_alerts(settings)
    assert len(again) == len(first) + 1
    assert again[-1]["alert_id"] == lost
    assert store.redis.hget(f"sd:{{{model_id}}}:alert_state", lost).startswith(b"published:")


def test_shares_worked_out_ahead_are_sent_only_while_the_heads_hold(
    settings, store, model_id, tmp_path
):
    """Each batch's shares are worked out while Redis applies the batch before, against
    the fences that apply leaves; a champion named in between (read with the heads) makes
    the worker work the share out again, and every event still counts once."""
    _register(settings, model_id, tmp_path)
    events, per_window = _stream(model_id, 12_000, 2, drift_at=None)
    produce(settings, events)
    worker = Worker(settings)
    champions: list[str | None] = []
    prepare = worker.store.applies.prepare

    def recorded(request):  # type: ignore[no-untyped-def]
        champions.append(request.champion)
        return prepare(request)

    worker.store.applies.prepare = recorded  # type: ignore[method-assign]
    plan = worker.plan
    plans = 0

    def planned(decoded):  # type: ignore[no-untyped-def]
        nonlocal plans
        plans += 1
        out = plan(decoded)
        if plans == 3 and out:  # after the share was worked out, before the heads are read
            worker.store.redis.set(f"sd:{{{model_id}}}:champion", "2.0")
        return out

    worker.plan = planned  # type: ignore[method-assign]
    stats = worker.run(max_seconds=90, install_signals=False, until_messages=12_000)
    assert stats.counted == 12_000
    profile = store.profiles.load(model_id)
    windows = store.windows.read(profile, sorted(per_window))
    assert {w.start: w.count for w in windows} == per_window
    assert stats.shares_redone == 1
    assert stats.shares_ahead >= stats.batches - 3  # the first batch has no heads to plan by
    assert champions[:2] == [None, None] and champions[-1] == "2.0"
