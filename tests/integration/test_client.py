"""The SDK end to end: 50,000 predictions and some of their labels published with
`Monitor`, counted by a worker, and read back with `Results` as DataFrames."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pandas as pd
import pytest

from streamdrift import synthetic
from streamdrift.client import Monitor, Results
from streamdrift.worker import Worker

from .conftest import register_fraud_model

pytestmark = pytest.mark.integration

WINDOW = 600
EVENTS = 50_000
WINDOWS = 4


def test_monitor_to_worker_to_results(settings, store, model_id, tmp_path):
    register_fraud_model(settings, model_id, tmp_path, window_seconds=WINDOW)
    start = (time.time() // WINDOW - WINDOWS - 1) * WINDOW
    events = [
        orjson.loads(v)
        for _, v in synthetic.prediction_events(model_id, EVENTS, start, WINDOWS * WINDOW, seed=5)
    ]
    failed: list[bytes | None] = []
    per_window: Counter[int] = Counter()
    labelled: Counter[int] = Counter()
    with Monitor(
        bootstrap=settings.kafka_bootstrap,
        model_id=model_id,
        version="1.0.0",
        predictions_topic=settings.predictions_topic,
        labels_topic=settings.labels_topic,
        on_error=lambda err, key: failed.append(key),
    ) as monitor:
        for i, e in enumerate(events):
            ts = e["timestamp"]
            monitor.log_prediction(
                e["prediction_id"],
                e["features"],
                e["prediction"],
                timestamp=ts,
                segments={"tier": i % 3},
            )
            per_window[int(ts // WINDOW * WINDOW)] += 1
            if i % 4 == 0:  # a quarter of them labelled, a minute later
                monitor.log_label(e["prediction_id"], int(i % 8 == 0), timestamp=ts + 60)
                labelled[int(ts // WINDOW * WINDOW)] += 1
        assert monitor.flush(30) == 0
    assert failed == []
    labels = sum(labelled.values())
    assert labels == EVENTS // 4

    stats = Worker(settings).run(
        max_seconds=150, install_signals=False, until_messages=EVENTS + labels
    )
    assert stats.counted == EVENTS
    assert sum(stats.dead.values()) == 0
    assert store.counters.join_stats(model_id).get("joined") == labels

    windows = Results(settings.redis_url).windows(model_id)
    assert isinstance(windows, pd.DataFrame)
    starts = sorted(per_window)
    assert list(windows["start"]) == [pd.Timestamp(s, unit="s", tz="UTC") for s in starts]
    assert (windows["end"] - windows["start"] == pd.Timedelta(seconds=WINDOW)).all()
    assert list(windows["count"]) == [per_window[s] for s in starts]
    assert windows["count"].sum() == EVENTS
    assert list(windows["labelled"]) == [labelled[s] for s in starts]
    assert set(windows["metric"]) == {"roc_auc"}
    assert windows["value"].notna().all()
    assert (windows["drifting_features"] == 0).all()  # a stationary stream

    perf = Results(settings.redis_url).performance(model_id)
    assert list(perf["count"]) == list(windows["count"])
    assert list(perf["labelled"]) == list(windows["labelled"])
    assert list(perf["roc_auc"]) == list(windows["value"])

    # a time range as a datetime and as text: the windows starting in it
    middle = windows["start"].iloc[1].to_pydatetime()
    since = Results(settings.redis_url).windows(model_id, since=middle)
    assert list(since["count"]) == list(windows["count"])[1:]
    until = Results(settings.redis_url).windows(model_id, until=middle.isoformat())
    assert list(until["count"]) == list(windows["count"])[:1]

    by_version = Results(settings.redis_url).windows(model_id, version="1.0.0")
    assert list(by_version["count"]) == list(windows["count"])

    alerts = Results(settings.redis_url).alerts(model_id)
    assert len(alerts) == len(store.alerts.all(model_id))
    assert "severity" in alerts.columns
