"""Schema changes upstream, end to end: a renamed, a dropped, an added and a re-typed
feature each raise exactly one data_quality alert, however many events carry them."""

from __future__ import annotations

import random
import time
from collections import Counter

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts

pytestmark = pytest.mark.integration

WINDOW = 600


def _register(store, model_id: str, tmp_path) -> None:
    """The synthetic fraud model without labels, with short windows."""
    store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "r.csv"),
            features=[*synthetic.NUMERIC, "country", "device"],
            config=MonitorConfig(window_seconds=WINDOW, evaluation_interval_seconds=0.2),
        )
    )


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
    _register(store, model_id, tmp_path)
    start = (time.time() // WINDOW - 4) * WINDOW
    events = list(synthetic.prediction_events(model_id, 6000, start, 3 * WINDOW, seed=4))
    # The first window is as the reference; the change lands at a window boundary.
    changed = [(k, v if i < 2000 else _changed(v, i)) for i, (k, v) in enumerate(events)]
    produce(settings, changed)
    Worker(settings).run(max_seconds=90, install_signals=False, until_messages=6000)

    quality = [a for a in read_alerts(settings, now=True) if a["type"] == "data_quality"]
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


def test_repeated_prediction_ids_raise_one_alert_per_episode(settings, store, model_id, tmp_path):
    """A model without labels: 4 windows, ids re-sent in the second and the fourth. Redis
    counts the repeats of each window exactly, and the problem is one episode: one clean
    window between is a lull, not a fix."""
    _register(store, model_id, tmp_path)
    start = (time.time() // WINDOW - 5) * WINDOW
    events = list(synthetic.prediction_events(model_id, 6000, start, 4 * WINDOW, seed=8))
    rng = random.Random(3)
    repeats = rng.sample(range(1500, 3000), 75)  # second window: 5 %
    fourth = rng.sample(range(4500, 6000), 40)
    repeats += fourth + fourth[:20]  # fourth window: some ids three times
    copies = [events[i] for i in repeats]
    rng.shuffle(copies)
    stream = events[:3000] + copies[:40] + events[3000:] + copies[40:]
    produce(settings, stream)
    Worker(settings).run(max_seconds=90, install_signals=False, until_messages=len(stream))

    # offline: per window, events minus distinct ids
    expected = Counter()
    seen = set()
    for key, value in stream:
        if key in seen:
            expected[int(orjson.loads(value)["timestamp"] // WINDOW * WINDOW)] += 1
        seen.add(key)
    profile = store.profiles.load(model_id)
    windows = store.windows.read(profile, store.windows.starts(model_id, profile.revision))
    assert {w.start: w.duplicates for w in windows if w.duplicates} == dict(expected)
    assert sorted(expected) == [start + WINDOW, start + 3 * WINDOW]
    for w in windows:
        if w.duplicates:
            assert w.duplicate_example in {k.decode() for k, _ in copies}
    assert store.counters.join_stats(model_id)["duplicate_predictions"] == sum(expected.values())

    # one clean window between two with repeats is a lull, not the end of the episode
    # (resolve_after_windows=2): one alert, since the second window
    dup = [a for a in read_alerts(settings, now=True) if a["statistic"] == "duplicate_ids"]
    assert [(a["status"], a["since"]) for a in dup] == [
        ("open", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + WINDOW)))
    ]
    assert {a["feature"] for a in dup} == {"prediction_id"}
    (episode,) = store.episodes.load(model_id).open()
    assert (episode.since, episode.last) == (start + WINDOW, start + 3 * WINDOW)
    assert episode.clear == []
