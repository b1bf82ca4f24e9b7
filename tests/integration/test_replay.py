"""Re-delivery after a crash, replayed deterministically: whatever the new batch
boundaries, every event is counted once (the offset fences of the atomic apply, `store.applies`)."""

from __future__ import annotations

import time

import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

pytestmark = pytest.mark.integration


class Message:
    """The parts of a confluent-kafka Message the worker reads."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def error(self):
        return None

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def key(self):
        return None

    def value(self):
        return self._v

    def timestamp(self):
        return (1, int(time.time() * 1000))


def _counts(store, profile):
    windows = store.windows.read(profile, store.windows.starts(profile.model_id, profile.revision))
    return sum(w.count for w in windows), sum(w.numeric["f00"].n for w in windows)


def test_replays_with_other_batch_boundaries_count_once(settings, store, model_id, tmp_path):
    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "r.csv", rows=2000),
            config=MonitorConfig(window_seconds=600),
        )
    )
    values = [v for _, v in synthetic.prediction_events(model_id, 400, time.time() - 900, 900)]
    topic = settings.predictions_topic
    # Two partitions, offsets 0..199 each, interleaved as a consumer would see them.
    msgs = [Message(topic, i % 2, i // 2, v) for i, v in enumerate(values)]
    worker = Worker(settings)

    def part(p, lo, hi):
        return [m for m in msgs if m.partition() == p and lo <= m.offset() < hi]

    worker.apply(part(0, 0, 150) + part(1, 0, 120))
    assert _counts(store, profile) == (270, 270)
    # The crash: nothing was committed. Re-delivery starts at 0 with smaller batches, the
    # first of which ends below what Redis already holds (the fence must not move back).
    assert worker.apply(part(0, 0, 50)) == {(topic, 0): 49}
    worker.apply(part(0, 50, 100) + part(1, 0, 60))
    assert _counts(store, profile) == (270, 270)
    worker.apply(part(0, 100, 200) + part(1, 60, 200))
    assert _counts(store, profile) == (400, 400)
    worker.apply(msgs)  # everything again
    assert _counts(store, profile) == (400, 400)
    assert worker.stats.skipped_replays == 50 + 110 + 50 + 60 + 400
