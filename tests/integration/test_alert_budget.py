"""The alert budget: three days of hourly windows with a daily rhythm, one 4-hour input
drift in two features, one 3-hour performance drop, one 2-hour traffic collapse and
reference-like outliers. The alerts topic must carry exactly one `open` and one
`resolved` per real episode, and nothing else: no outlier events, no seasonal alarms."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from streamdrift import kafka_io, scenario
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile

from .conftest import read_alerts, wait_for
from .truth import WorkerThread

pytestmark = pytest.mark.integration

HOUR = scenario.HOUR


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _produce(settings, sc: scenario.Scenario) -> None:
    producer = kafka_io.producer(settings)
    topics = {"predictions": settings.predictions_topic, "labels": settings.labels_topic}
    for i, (_, kind, key, value) in enumerate(sc.messages):
        while True:
            try:
                producer.produce(topics[kind], key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def test_one_open_and_one_resolved_per_real_episode_and_nothing_else(
    settings, store, model_id, tmp_path
):
    config = MonitorConfig.model_validate(
        {
            "window_seconds": HOUR,
            "evaluation_interval_seconds": 0.5,
            "drift": {
                "baselines": ["seasonal"],
                "season_seconds": 86400,
                "seasons": 2,
                "until_history": "wait",
            },
            # partitions read unevenly under load must not count as idle (10 x 10 s)
            "episodes": {"complete_after_idle_seconds": 10},
        }
    )
    store.profiles.save(
        build_profile(
            model_id,
            scenario.write_reference(tmp_path / "ref.csv"),
            prediction_column="score",
            label_column="is_fraud",
            config=config,
        )
    )
    start = int(time.time() // HOUR - 74) * HOUR
    sc = scenario.build(model_id, start)
    _produce(settings, sc)
    with WorkerThread(settings):
        assert wait_for(
            lambda: store.counters.join_stats(model_id).get("joined", 0) == sc.predictions,
            timeout=240,
            interval=0.25,
        )
        # every window evaluated, and every episode over once its windows are complete
        # and quiet (the last windows stay incomplete: the stream just stopped)
        assert wait_for(
            lambda: not store.schedule.dirty(model_id) and not store.episodes.load(model_id).open(),
            timeout=120,
            interval=0.25,
        )
    alerts = read_alerts(settings, now=True)
    by_condition: defaultdict[tuple[str, str], list[dict]] = defaultdict(list)
    for a in alerts:
        by_condition[(a["type"], a["feature"])].append(a)
    expected = {(e.type, e.feature): e for e in sc.truth}
    summary = {k: [(a["status"], a["window_start"]) for a in v] for k, v in by_condition.items()}
    assert set(by_condition) == set(expected), summary
    for key, episode in expected.items():
        got = by_condition[key]
        assert [a["status"] for a in got] == ["open", "resolved"], summary
        opened, resolved = got
        assert opened["episode_id"] == resolved["episode_id"]
        # opened as soon as a window showed it (with partitions read unevenly, a later
        # window's data can come first); the resolution spans the whole episode
        first, last = _iso(start + episode.first * HOUR), _iso(start + episode.last * HOUR)
        assert first <= opened["since"] <= last, summary
        assert resolved["since"] == resolved["window_start"] == first, summary
        assert resolved["context"]["last_seen"] == _iso(start + episode.last * HOUR).replace(
            "Z", "+00:00"
        ), summary
        assert resolved["context"]["duration_seconds"] == (episode.last - episode.first + 1) * HOUR
    routes = {a["type"]: a["context"]["route"] for a in alerts}
    assert routes == {
        "data_drift": "ml-team",
        "performance_degradation": "ml-team",
        "volume": "ops",
    }
    drop = by_condition[("performance_degradation", "roc_auc")][0]
    assert drop["context"]["cause"] == "concept_drift", drop["context"]["evidence"]
    assert store.episodes.load(model_id).open() == []
