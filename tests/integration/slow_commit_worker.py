"""A real `streamdrift worker` whose Kafka commits lag its Redis applies by 100 ms.

Fault injection for the exactly-once test: a SIGKILL then often lands after a batch was
applied to Redis but before its offsets were committed, so the restarted worker re-reads
events whose effects are already in Redis, the case the offset fences exist for."""

from __future__ import annotations

import logging
import sys
import time

from streamdrift.config import Settings
from streamdrift.worker import Worker


class _LaggingCommits:
    def __init__(self, consumer: object) -> None:
        self._consumer = consumer

    def commit(self, *args: object, **kwargs: object) -> object:
        time.sleep(0.1)
        return self._consumer.commit(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._consumer, name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    worker = Worker(Settings())
    worker.consumer = _LaggingCommits(worker.consumer)  # type: ignore[assignment]
    worker.run()
