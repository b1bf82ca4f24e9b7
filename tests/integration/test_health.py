"""The worker's own health: /metrics scraped while it runs and compared with what was
sent, /healthz and /readyz, and structured JSON logs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

from .conftest import env_for, produce, wait_for

pytestmark = pytest.mark.integration


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_metrics_count_what_was_sent(settings, store, model_id, tmp_path):
    store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "r.csv", rows=3000),
            prediction_column="score",
            label_column="is_fraud",
            config=MonitorConfig(window_seconds=600, evaluation_interval_seconds=0.2),
        )
    )
    predictions, labels = synthetic.labelled_events(
        model_id, 3000, time.time() - 1800, 1800, drift_at=0.5, delay_seconds=(1, 60)
    )
    bad = [(b"x", b"{broken"), (b"y", b'{"model_id": 3}')]
    produce(settings, predictions + bad)
    produce(settings, labels[:1000], topic=settings.labels_topic)
    sent_bytes = sum(len(v) for _, v in predictions + bad)

    worker = Worker(settings)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: worker.health is not None and worker.health.port, timeout=10)
        port = worker.health.port
        assert wait_for(lambda: worker.stats.messages >= 4002, timeout=60)
        assert wait_for(lambda: worker.stats.alerts > 0, timeout=30)
        m = _scrape(port)
        p_topic = (("topic", settings.predictions_topic),)
        assert m[("streamdrift_events_total", p_topic)] == 3002
        assert m[("streamdrift_bytes_total", p_topic)] == sent_bytes
        assert m[("streamdrift_events_total", (("topic", settings.labels_topic),))] == 1000
        assert m[("streamdrift_predictions_counted_total", ())] == 3000
        assert m[("streamdrift_labels_joined_total", ())] == 1000
        # every prediction's record (1,000 of them joined by now) and no other
        assert m[("streamdrift_join_records_held", ())] == 3000
        assert m[("streamdrift_dead_letters_total", (("reason", "invalid_json"),))] == 1
        assert m[("streamdrift_dead_letters_total", (("reason", "wrong_type"),))] == 1
        by_type = {k[1][0][1]: v for k, v in m.items() if k[0] == "streamdrift_alerts_total"}
        assert by_type["data_drift"] >= 3
        assert sum(by_type.values()) == worker.stats.alerts
        assert m[("streamdrift_batches_total", ())] >= 1
        assert m[("streamdrift_batch_seconds_count", ())] == m[("streamdrift_batches_total", ())]
        assert m[("streamdrift_evaluation_seconds_count", ())] >= 1
        code, body = _get(port, "/healthz")
        assert code == 200 and body["alive"] is True
        assert wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout=20)
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_worker_logs_are_json_lines(settings, store, model_id, tmp_path):
    env = env_for(settings)
    proc = subprocess.run(
        [sys.executable, "-m", "streamdrift", "worker", "--max-seconds", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [orjson.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
    first = next(x for x in lines if "consuming" in x["message"])
    assert isinstance(first["metrics_port"], int)


def test_apply_seconds_leave_out_the_wait_for_the_next_batch(settings, store, model_id, tmp_path):
    """A batch's applies are read at the next turn, after its poll, which waits up to
    `poll_timeout_seconds` when nothing comes. On a quiet stream that wait is not
    Redis's: each event alone, a second of quiet after it, and every apply stays fast."""
    settings = settings.model_copy(update={"poll_timeout_seconds": 1.0})
    store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "r.csv", rows=3000),
            prediction_column="score",
            label_column="is_fraud",
            config=MonitorConfig(window_seconds=600),
        )
    )
    events = list(synthetic.prediction_events(model_id, 5, time.time() - 60, 30))
    worker = Worker(settings)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: worker.health is not None and worker.health.port, timeout=10)
        for k, event in enumerate(events, 1):
            produce(settings, [event])
            # counted once its apply is read: after the next, quiet, poll
            assert wait_for(lambda k=k: worker.stats.counted >= k, timeout=30)
        m = _scrape(worker.health.port)
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    count = m[("streamdrift_apply_seconds_count", ())]
    assert count >= len(events)
    assert m[("streamdrift_apply_seconds_bucket", (("le", "0.5"),))] == count
    assert m[("streamdrift_apply_seconds_sum", ())] < 0.5 * count
