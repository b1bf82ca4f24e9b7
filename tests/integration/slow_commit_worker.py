"""A real `streamdrift worker` whose Kafka commits lag its Redis applies by 100 ms.

Fault injection for the exactly-once test: a SIGKILL then often lands after a batch was
applied to Redis but before its offsets were committed, so the restarted worker re-reads
events whose effects are already in Redis, the case the offset fences exist for.

To make that moment certain rather than likely, the test may ask one worker to stop in
its next commit: it creates `hold-<pid>` in the directory named by `SLOW_COMMIT_HOLD_DIR`,
and the worker, once a batch is applied and its commit begins, creates `held-<pid>` and
waits there for the kill."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from streamdrift.config import Settings
from streamdrift.worker import Worker

HOLD_DIR = os.environ.get("SLOW_COMMIT_HOLD_DIR")


class _LaggingCommits:
    def __init__(self, consumer: object) -> None:
        self._consumer = consumer

    def commit(self, *args: object, **kwargs: object) -> object:
        if HOLD_DIR and (Path(HOLD_DIR) / f"hold-{os.getpid()}").exists():
            (Path(HOLD_DIR) / f"held-{os.getpid()}").touch()
            while True:  # applied, not committed: the test kills the worker here
                time.sleep(1)
        time.sleep(0.1)
        return self._consumer.commit(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._consumer, name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    worker = Worker(Settings())
    worker.consumer = _LaggingCommits(worker.consumer)  # type: ignore[assignment]
    worker.run()
