"""`AsyncMonitor` end to end: an asyncio program's predictions and labels, logged by
concurrent tasks through a local queue small enough to fill (so calls wait it out with
`await`), are counted by a worker exactly."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from streamdrift import synthetic
from streamdrift.client import AsyncMonitor, InvalidEvent, Results
from streamdrift.config import Settings
from streamdrift.worker import Worker

from .conftest import register_fraud_model

pytestmark = pytest.mark.integration

WINDOW = 600
EVENTS = 4000
TASKS = 4


async def publish(settings: Settings, model_id: str, events: list[dict[str, Any]]) -> list[Any]:
    failed: list[bytes | None] = []
    async with AsyncMonitor(
        settings.kafka_bootstrap,
        model_id,
        version="1.0.0",
        predictions_topic=settings.predictions_topic,
        labels_topic=settings.labels_topic,
        on_error=lambda err, key: failed.append(key),
        queue_buffering_max_messages=200,  # fills: log_* must await room
    ) as monitor:

        async def task(share: list[dict[str, Any]], offset: int) -> None:
            for i, e in enumerate(share):
                await monitor.log_prediction(
                    e["prediction_id"], e["features"], e["prediction"], timestamp=e["timestamp"]
                )
                if (offset + i * TASKS) % 3 == 0:  # a third labelled, a minute later
                    await monitor.log_label(
                        e["prediction_id"], int(i % 2 == 0), timestamp=e["timestamp"] + 60
                    )

        with pytest.raises(InvalidEvent, match=r"features\.f00"):
            await monitor.log_prediction("bad", {"f00": float("nan")}, 0.5)
        await asyncio.gather(*(task(events[k::TASKS], k) for k in range(TASKS)))
        assert await monitor.flush(30) == 0
        assert monitor.failed == 0
    return failed


def test_async_monitor_to_worker(settings, store, model_id, tmp_path):
    register_fraud_model(settings, model_id, tmp_path, window_seconds=WINDOW)
    start = (time.time() // WINDOW - 3) * WINDOW
    events = [
        orjson.loads(v)
        for _, v in synthetic.prediction_events(model_id, EVENTS, start, 2 * WINDOW, seed=9)
    ]
    assert asyncio.run(publish(settings, model_id, events)) == []

    per_window = Counter(int(e["timestamp"] // WINDOW * WINDOW) for e in events)
    labels = len(range(0, EVENTS, 3))
    stats = Worker(settings).run(
        max_seconds=60, install_signals=False, until_messages=EVENTS + labels
    )
    assert stats.counted == EVENTS
    assert sum(stats.dead.values()) == 0
    assert store.counters.join_stats(model_id).get("joined") == labels
    windows = Results(settings.redis_url).windows(model_id)
    assert list(windows["count"]) == [per_window[s] for s in sorted(per_window)]


def test_async_monitor_reports_failed_deliveries():
    async def main() -> tuple[list[bytes | None], int, int]:
        failed: list[bytes | None] = []
        # nothing listens on port 1: every message times out after 200 ms
        monitor = AsyncMonitor(
            "127.0.0.1:1",
            "fraud",
            on_error=lambda err, key: failed.append(key),
            message_timeout_ms=200,
        )
        await monitor.log_prediction("a", {"amount": 1.0}, {"score": 0.5})
        await monitor.log_label("b", 1)
        left = await monitor.flush(5)
        return failed, left, monitor.failed

    failed, left, count = asyncio.run(main())
    assert left == 0
    assert sorted(failed) == [b"a", b"b"]
    assert count == 2
