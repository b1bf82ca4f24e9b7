"""Single outlying events end to end: always recorded with the features that make them
extreme (`inspect` lists them), published one alert each only with
`outlier_alerts: "events"`."""

from __future__ import annotations

import time

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts, register_fraud_model

pytestmark = pytest.mark.integration

WINDOW = 600


def _events(model_id: str) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    """One past window of reference-like predictions, three of them planted 15 sds out
    in one feature each; and the planted ids with their feature."""
    start = (time.time() // WINDOW - 2) * WINDOW
    events = list(synthetic.prediction_events(model_id, 1500, start, WINDOW, seed=5))
    planted: dict[str, str] = {}
    for i, feature in ((100, "f02"), (700, "f07"), (1300, "f12")):
        key, value = events[i]
        event = orjson.loads(value)
        j = synthetic.NUMERIC.index(feature)
        event["features"][feature] = float(synthetic.MEANS[j] + 15 * synthetic.SDS[j])
        events[i] = (key, orjson.dumps(event))
        planted[event["prediction_id"]] = feature
    return events, planted


@pytest.mark.parametrize("mode", ["share", "events"])
def test_outlying_events_are_recorded_and_published_only_when_asked(
    settings, model_id, tmp_path, mode
):
    # every outlier of the window recorded: which come first depends on the partitions
    register_fraud_model(
        settings,
        model_id,
        tmp_path,
        window_seconds=WINDOW,
        outlier_alerts=mode,
        outlier_alerts_per_window=50,
    )
    events, planted = _events(model_id)
    produce(settings, events)
    stats = Worker(settings).run(max_seconds=90, install_signals=False, until_messages=1500)
    assert stats.counted == 1500

    doc = orjson.loads(cli(settings, "inspect", model_id, "--json").stdout)
    (window,) = doc["windows"]
    recorded = {ex["prediction_id"]: ex for ex in window["outlier_examples"]}
    assert window["outliers"] == len(recorded) < 50
    assert set(planted) <= set(recorded)
    for pid, feature in planted.items():
        assert recorded[pid]["features"][0]["feature"] == feature
        assert recorded[pid]["features"][0]["z"] > 10

    alerts = read_alerts(settings, now=True)
    # the outlier share's episode alerts (if the planted three make one) name no event
    events = [a for a in alerts if a["type"] == "outlier" and "prediction_id" in a["context"]]
    per_event = {a["context"]["prediction_id"]: a for a in events}
    assert len(per_event) == len(events)  # one alert per event
    if mode == "share":
        assert per_event == {}
    else:
        assert set(per_event) == set(recorded)
        for pid, a in per_event.items():
            assert a["statistic"] == "robust_mahalanobis" and a["severity"] == "info"
            assert a["context"]["features"] == recorded[pid]["features"]
            assert a["value"] == recorded[pid]["score"]
        for pid, feature in planted.items():
            assert per_event[pid]["feature"] == feature
            assert f"prediction {pid} is an outlier" in per_event[pid]["message"]
            assert f"{feature} (z=+" in per_event[pid]["message"]

    # the screen lists the recorded events (the latest ten) with their features
    table = cli(settings, "inspect", model_id)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("outlying events recorded"))
    shown = lines[head + 1 : head + 1 + min(len(recorded), 10)]
    listed = list(recorded.values())[-10:]
    for line, ex in zip(shown, listed, strict=True):
        parts = ", ".join(f"{f['feature']} z={f['z']:+.1f}" for f in ex["features"])
        assert line.strip() == (
            f"{window['start'][:16]} {ex['prediction_id']} score {ex['score']:.2f}: {parts}"
        )
    for pid, feature in planted.items():
        (line,) = [line for line in shown if f" {pid} " in line]
        assert line.split(": ", 1)[1].startswith(f"{feature} z=+")
