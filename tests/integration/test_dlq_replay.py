"""`streamdrift dlq replay`: dead letters go back to their topic once their cause is
fixed, and are counted exactly once however often the replay runs, also after a replay
that died between producing and recording."""

from __future__ import annotations

import time

import pytest

from streamdrift import kafka_io, synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.replay import REPLAY_OF

from .conftest import cli, produce, read_topic, wait_for
from .truth import WorkerThread, observed

pytestmark = pytest.mark.integration

WIDTH = 600


def _profile(model: str, tmp_path):
    return build_profile(
        model,
        synthetic.write_reference(tmp_path / f"{model}.csv", rows=2000),
        config=MonitorConfig(window_seconds=WIDTH),
    )


def test_dead_letters_of_a_model_registered_late_are_counted_once(
    settings, store, model_id, tmp_path
):
    other = f"{model_id}-other"
    store.profiles.save(_profile(other, tmp_path))  # a worker waits for a first model
    start = (time.time() // WIDTH - 3) * WIDTH
    events = list(synthetic.prediction_events(model_id, 1500, start, 2 * WIDTH, seed=4))
    produce(settings, events)
    with WorkerThread(settings) as w:
        dlq = settings.dlq_topic(settings.predictions_topic)
        assert wait_for(lambda: w.worker.stats.messages >= 1500, 60)
        dead = read_topic(settings, dlq, idle_ms=1500)
        assert len(dead) == 1500
        assert {dict(m.headers)["streamdrift.reason"] for m in dead} == {b"unregistered_model"}

        # the cause is fixed: the model is registered
        profile, _ = store.profiles.save(_profile(model_id, tmp_path))
        res = cli(settings, "dlq", "replay", "--dry-run", "--model", model_id)
        assert res.returncode == 0, res.stderr
        assert "would replay 1,500" in res.stdout
        assert observed(store, profile).predictions == 0

        res = cli(settings, "dlq", "replay", "--reason", "unregistered_model", "--model", model_id)
        assert res.returncode == 0, res.stderr
        assert "replayed 1,500" in res.stdout and "0 replayed before" in res.stdout
        assert wait_for(lambda: observed(store, profile).predictions == 1500, 60)

        res = cli(settings, "dlq", "replay", "--model", model_id)  # again: nothing twice
        assert res.returncode == 0, res.stderr
        assert "replayed 0" in res.stdout and "1,500 replayed before" in res.stdout
        time.sleep(3)
        assert observed(store, profile).predictions == 1500
    assert len(read_topic(settings, dlq, idle_ms=1000)) == 1500  # none died again


def test_a_replay_that_died_half_way_sends_the_rest_only(settings, store, model_id, tmp_path):
    """The first 400 dead letters were produced and marked pending, then the replay
    died: the next run finds them in the topic and produces the other 600 only."""
    other = f"{model_id}-other"
    store.profiles.save(_profile(other, tmp_path))
    start = (time.time() // WIDTH - 3) * WIDTH
    events = list(synthetic.prediction_events(model_id, 1000, start, 2 * WIDTH, seed=5))
    produce(settings, events)
    dlq = settings.dlq_topic(settings.predictions_topic)
    with WorkerThread(settings) as w:
        assert wait_for(lambda: w.worker.stats.messages >= 1000, 60)
        dead = read_topic(settings, dlq, idle_ms=1500)
        assert len(dead) == 1000
        profile, _ = store.profiles.save(_profile(model_id, tmp_path))
        # what the dead replay did before it died
        producer = kafka_io.producer(settings)
        first = dead[:400]
        coords = [f"{m.topic}:{m.partition}:{m.offset}" for m in first]
        store.replays.mark_pending(coords, time.time())
        for m, c in zip(first, coords, strict=True):
            producer.produce(
                settings.predictions_topic, key=m.key, value=m.value, headers=[(REPLAY_OF, c)]
            )
        assert producer.flush(10) == 0
        assert wait_for(lambda: observed(store, profile).predictions == 400, 60)

        res = cli(settings, "dlq", "replay", "--model", model_id)
        assert res.returncode == 0, res.stderr
        assert "replayed 600" in res.stdout and "400 of an interrupted replay" in res.stdout
        assert wait_for(lambda: observed(store, profile).predictions == 1000, 60)
        time.sleep(3)
        assert observed(store, profile).predictions == 1000
