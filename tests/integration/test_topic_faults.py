"""The broker misbehaving under a running worker: it restarts with its log gone (Tansu on
memory storage, like a topic deleted and created again: offsets start at 0 under a new
topic id), after being away for a while.

A topic deleted while a consumer is subscribed to it crashes librdkafka 2.16 against
Tansu (a segfault in its metadata cache, rd_kafka_metadata_cache_find), so the log reset
is made by restarting the broker, as the fault was first seen."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from streamdrift import embedded, kafka_io, synthetic
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile

from .conftest import produce, read_alerts, read_topic, wait_for
from .truth import WorkerThread, observed

pytestmark = pytest.mark.integration

WIDTH = 600


class Broker:
    """A Tansu broker of this test's own, on memory storage, restartable on its port."""

    def __init__(self, workdir) -> None:
        self.port = embedded.free_port()
        self.log = workdir / "tansu.log"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = embedded.start_tansu(self.port, self.log)
        embedded.wait_for_port(self.port, self.proc, "Tansu")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_a_recreated_topic_is_counted_not_dropped_as_redelivery(
    settings, store, model_id, tmp_path, broker
):
    """After the broker lost its log, 2,000 events arrive on topics created again under
    the same names: new events at offsets the old fences already passed. All are
    counted, and one `system` alert per topic says it was created again."""
    settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    kafka_io.ensure_topics(settings)
    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "ref.csv", rows=2000),
            config=MonitorConfig(window_seconds=WIDTH),
        )
    )
    start = (time.time() // WIDTH - 4) * WIDTH
    first = list(synthetic.prediction_events(model_id, 4000, start, 2 * WIDTH, seed=11))
    second = list(synthetic.prediction_events(model_id, 2000, start, 2 * WIDTH, seed=12))
    produce(settings, first)
    with WorkerThread(settings) as w:
        assert wait_for(lambda: observed(store, profile).predictions == 4000, 60)
        broker.stop()
        time.sleep(2)
        broker.start()
        kafka_io.ensure_topics(settings)
        produce(settings, second)
        assert wait_for(lambda: observed(store, profile).predictions >= 6000, 90), (
            observed(store, profile).predictions,
            w.log.messages(),
        )
        time.sleep(2)
        assert observed(store, profile).predictions == 6000
        assert w.worker.metrics.topic_recreated._value.get() == 2 and w.alive
    assert read_topic(settings, settings.dlq_topic(settings.predictions_topic), 1000) == []
    recreated = [a for a in read_alerts(settings) if a["statistic"] == "topic_recreated"]
    assert sorted(a["feature"] for a in recreated) == sorted(
        [settings.predictions_topic, settings.labels_topic]
    )
    assert recreated[0]["context"]["route"] == "ops"
    # the offsets hash also holds the model's version registry (`__version...`)
    fields = {
        f for f in store.redis.hkeys(f"sd:{{{model_id}}}:offsets") if not f.startswith(b"__version")
    }
    assert all(f.decode().startswith(f"{settings.predictions_topic}@") for f in fields)
    incarnations = {f.decode().split("@")[1].split(":")[0] for f in fields}
    assert len(incarnations) == 1  # the old topic's fences are gone
