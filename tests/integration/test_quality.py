"""Schema changes upstream, end to end: a renamed, a dropped, an added and a re-typed
feature each raise exactly one data_quality alert, however many events carry them."""

from __future__ import annotations

import time

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts

pytestmark = pytest.mark.integration

WINDOW = 600


def _changed(value: bytes, i: int) -> bytes:
    e = orjson.loads(value)
    f = e["features"]
    f["amount_eur"] = f.pop("f01")  # renamed
    f.pop("f02")  # dropped
    f["session_length"] = float(i % 97)  # added
    if i % 5 == 0:
        f["f04"] = str(f["f04"])  # re-typed: numbers now arrive as strings
    return orjson.dumps(e)


def test_schema_changes_raise_one_alert_each(settings, store, model_id, tmp_path):
    store.save_profile(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "r.csv"),
            features=[*synthetic.NUMERIC, "country", "device"],
            config=MonitorConfig(window_seconds=WINDOW, evaluation_interval_seconds=0.2),
        )
    )
    start = (time.time() // WINDOW - 4) * WINDOW
    events = list(synthetic.prediction_events(model_id, 6000, start, 3 * WINDOW, seed=4))
    # The first window is as the reference; the change lands at a window boundary.
    changed = [(k, v if i < 2000 else _changed(v, i)) for i, (k, v) in enumerate(events)]
    produce(settings, changed)
    Worker(settings).run(max_seconds=90, install_signals=False, until_messages=6000)

    quality = [a for a in read_alerts(settings) if a["type"] == "data_quality"]
    got = sorted((a["statistic"], a["feature"]) for a in quality)
    assert got == [
        ("feature_added", "session_length"),
        ("feature_missing", "f02"),
        ("feature_renamed", "f01"),
        ("type_change", "f04"),
    ]
    renamed = next(a for a in quality if a["statistic"] == "feature_renamed")
    assert renamed["context"]["example"] == "amount_eur"
    assert renamed["window_start"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 2000 * 3 * WINDOW // 6000)
    )
    typed = next(a for a in quality if a["statistic"] == "type_change")
    assert typed["context"]["events"] >= 10
    assert all(a["context"]["route"] == "data-team" for a in quality)

    doc = orjson.loads(cli(settings, "inspect", model_id, "--json").stdout)
    first, second = doc["windows"][0], doc["windows"][1]
    assert first["quality"] == []
    assert {(q["kind"], q["feature"]) for q in second["quality"]} == set(got)
    assert "feature_renamed f01" in cli(settings, "inspect", model_id).stdout
