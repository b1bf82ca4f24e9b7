"""Deliveries of one sink: one model's alerts one after the other, models side by side.

Alerts of one model must reach a receiver in the order they were raised (a `resolved`
before its `open` would leave an incident open for good), but a model whose alert is
being retried must not hold up every other model's. So each sink has a pool of threads
and a queue per key (the model id): a key's tasks run in the order submitted, never
two at once; different keys run in parallel. After each task its key goes to the back
of the pool's queue, so a busy model cannot starve the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("streamdrift.notify")


class Lanes:
    def __init__(self, threads: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"notify-{name}")
        self._lock = threading.Lock()
        #: key -> its tasks not yet finished; the first is running or about to run
        self._queues: dict[str, deque[Callable[[], None]]] = {}

    def submit(self, key: str, task: Callable[[], None]) -> None:
        """Run `task` after every task submitted before it with the same `key`."""
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                queue.append(task)
                return
            self._queues[key] = deque([task])
        self._pool.submit(self._run_next, key)

    def _run_next(self, key: str) -> None:
        with self._lock:
            task = self._queues[key][0]
        try:
            task()
        except Exception:  # tasks handle their own errors; this keeps the lane alive
            log.exception("delivery task failed")
        with self._lock:
            queue = self._queues[key]
            queue.popleft()
            if not queue:
                del self._queues[key]
                return
        self._pool.submit(self._run_next, key)

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def shutdown(self) -> None:
        """Wait for the running and queued tasks (cancel their alerts first to be quick)."""
        while self.pending():
            time.sleep(0.01)
        self._pool.shutdown(wait=True)
