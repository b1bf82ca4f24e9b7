"""Sequential detection through the real broker, Redis and worker: a concept change
found a few minutes into a window, from the first labels after it, before the window
has the labels its own test needs; and a feature mean creeping up window by window,
found by +0.25 sd. The scan's figures are checked against the same pairs counted
offline."""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np
import orjson
import pytest

from streamdrift import synthetic
from streamdrift.report import model_report
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts, register_fraud_model

pytestmark = pytest.mark.integration

HOUR = 3600


def _register(settings, store, model_id, folder):
    register_fraud_model(settings, model_id, folder, window_seconds=HOUR)
    return store.profiles.load(model_id)


def test_a_concept_change_is_found_inside_its_window_from_the_first_labels(
    settings, store, model_id, tmp_path
):
    """Four windows of 2,000 predictions, then the labels turn against the model 90 s
    into the fifth window. Sent: every prediction up to 6 minutes into it, and every
    label whose time has come by then (labels arrive 30 s to 5 min late). The fifth
    window then holds far fewer than the 200 labels its own test needs; the scan alarms
    on accuracy, its cut at the sub-window of the change, its figures those of the pairs
    counted offline."""
    profile = _register(settings, store, model_id, tmp_path)
    start = (time.time() // HOUR - 8) * HOUR
    n = 10_000  # 2,000 an hour: five windows
    change = 8_050  # 90 s into the fifth window
    predictions, labels = synthetic.labelled_events(
        model_id,
        n,
        start,
        5 * HOUR,
        concept_drift_at=change / n,
        seed=11,
        delay_seconds=(30, 300),
    )
    cut_time = start + 4 * HOUR + 360  # 6 minutes into the fifth window
    sent = [(k, v) for k, v in predictions if orjson.loads(v)["timestamp"] < cut_time]
    arrived = [(k, v) for k, v in labels if orjson.loads(v)["timestamp"] <= cut_time]
    produce(settings, sent)
    produce(settings, arrived, topic=settings.labels_topic)
    stats = Worker(settings).run(
        max_seconds=120, install_signals=False, until_messages=len(sent) + len(arrived)
    )
    assert stats.labels_joined == len(arrived)

    # offline: each labelled pair's time, whether the model's class was wrong, its log loss
    made = {}
    for _, v in sent:
        e = orjson.loads(v)
        made[e["prediction_id"]] = (e["timestamp"], e["prediction"])
    pairs = []
    for _, v in arrived:
        e = orjson.loads(v)
        ts, p = made[e["prediction_id"]]
        score = min(max(p["score"], 1e-15), 1 - 1e-15)
        loss = -math.log(score if e["label"] == 1 else 1 - score)
        pairs.append((ts, e["label"] != p["label"], loss))
    fifth = start + 4 * HOUR
    in_fifth = sum(1 for ts, *_ in pairs if ts >= fifth)
    assert in_fifth < profile.config.performance.min_labels  # too few for the window test

    perf = [a for a in read_alerts(settings, now=True) if a["type"] == "performance_degradation"]
    assert [a["status"] for a in perf] == ["open"]
    (alert,) = perf
    assert datetime.fromisoformat(alert["window_start"]).timestamp() == fifth
    ctx = alert["context"]
    assert ctx["detector"] == "sequential" and ctx["baseline"] == "sequential"
    assert alert["feature"] == "roc_auc"  # the model's one performance episode
    assert alert["statistic"] in ("accuracy", "log_loss")
    for metric, column in (("accuracy", 1), ("log_loss", 2)):
        scan = ctx["tests"][metric]["sequential"]
        assert scan["alarm"] == 1.0 and scan["statistic"] >= scan["threshold"]
        # the cut is the change's sub-window: the first tenth of the fifth window
        assert scan["since"] == fifth
        after = [p[column] for p in pairs if p[0] >= scan["since"]]
        before = [p[column] for p in pairs if p[0] < scan["since"]]
        assert scan["after_labelled"] == len(after) and scan["labelled"] == len(before)
        if metric == "accuracy":
            assert scan["value"] == pytest.approx(1 - np.mean(after), abs=1e-12)
            assert scan["baseline"] == pytest.approx(1 - np.mean(before), abs=1e-12)
        else:
            assert scan["value"] == pytest.approx(np.mean(after), rel=1e-9)
            assert scan["baseline"] == pytest.approx(np.mean(before), rel=1e-9)
        if metric == alert["statistic"]:
            assert alert["value"] == scan["value"] and alert["sample_size"] == len(after)
        # inspect shows the scan as the evaluator ran it
        shown = model_report(store, model_id)["windows"][-1]["sequential"][metric]
        assert shown["alarm"] is True and shown["since"] == alert["window_start"]
        assert shown["after_labelled"] == scan["after_labelled"]
        assert shown["statistic"] == pytest.approx(scan["statistic"], rel=1e-12)
    text = cli(settings, "inspect", model_id).stdout
    assert "sequential scan, accuracy" in text and "ALARM" in text


def test_a_creeping_mean_is_found_by_a_quarter_sd(settings, store, model_id, tmp_path):
    """f05's mean creeps up 0.05 reference sd a window (within each window too), for
    eight windows of 2,000 events: no window alone drifts, the CUSUM alarms on
    `data_drift:f05` by the window where the shift reaches +0.25 sd."""
    profile = _register(settings, store, model_id, tmp_path)
    ref = profile.features["f05"]
    start = (time.time() // HOUR - 10) * HOUR
    per = 2000
    predictions, _ = synthetic.labelled_events(
        model_id, 8 * per, start, 8 * HOUR, seed=12, delay_seconds=(30, 60)
    )
    out = []
    for i, (k, v) in enumerate(predictions):
        e = orjson.loads(v)
        e["features"]["f05"] = e["features"]["f05"] + 0.05 * ref.std * (i / per)
        out.append((k, orjson.dumps(e)))
    produce(settings, out)
    Worker(settings).run(max_seconds=120, install_signals=False, until_messages=len(out))
    alerts = [
        a
        for a in read_alerts(settings, now=True)
        if a["type"] == "data_drift" and a["feature"] == "f05"
    ]
    # one episode, opened once: a sum that keeps growing does not escalate it
    assert [a["status"] for a in alerts] == ["open"]
    alert = alerts[0]
    assert alert["statistic"] == "mean_cusum" and alert["context"]["detector"] == "cusum"
    k = round((datetime.fromisoformat(alert["window_start"]).timestamp() - start) / HOUR)
    assert 0.05 * (k + 1) <= 0.25 + 1e-9  # by the window whose end is +0.25 sd
    # offline: the CUSUM the alert reports, from the events' own window means
    values = np.array([orjson.loads(v)["features"]["f05"] for _, v in out], dtype=float)
    s = 0.0
    for w in range(k + 1):
        x = values[w * per : (w + 1) * per]
        s = max(0.0, s + (np.nanmean(x) - ref.mean) / ref.std - 0.1)
    assert alert["value"] == pytest.approx(s, rel=1e-9)
    (window,) = [
        w
        for w in model_report(store, model_id)["windows"]
        if datetime.fromisoformat(w["start"]).timestamp() == start + k * HOUR
    ]
    mean = window["cumulative"]["f05"]["mean"]
    assert mean["raised"] is True and mean["direction"] == "up"
    assert mean["cusum"] == pytest.approx(s, rel=1e-9)
