"""What Redis must hold, computed offline from the events themselves, and a worker run in
a thread of the test process (so a test can watch its readiness and logs while it injects
faults into the servers under it)."""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson

from streamdrift.config import Settings
from streamdrift.profile import ReferenceProfile
from streamdrift.store import Store
from streamdrift.worker import Worker


@dataclass
class Truth:
    """Per window: predictions, the sum of f00, country counts, and the confusion matrix
    of the labelled pairs (each prediction id once, each label once)."""

    count: Counter[int] = field(default_factory=Counter)
    f00: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    country: defaultdict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    confusion: defaultdict[int, Counter[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(Counter)
    )

    @property
    def predictions(self) -> int:
        return sum(self.count.values())

    @property
    def joined(self) -> int:
        return sum(sum(c.values()) for c in self.confusion.values())


def truth(predictions: list, labels: list, width: int) -> Truth:
    t = Truth()
    made: dict[str, tuple[int, str]] = {}
    for _, v in predictions:
        e = orjson.loads(v)
        w = int(e["timestamp"] // width * width)
        t.count[w] += 1  # a repeated id counts in its window too (and is flagged)
        t.f00[w] += e["features"]["f00"]
        t.country[w][e["features"]["country"]] += 1
        made.setdefault(e["prediction_id"], (w, str(e["prediction"]["label"])))
    seen: set[str] = set()
    for _, v in labels:
        e = orjson.loads(v)
        pid = e["prediction_id"]
        if pid in seen or pid not in made:
            continue
        seen.add(pid)
        w, predicted = made[pid]
        t.confusion[w][(str(e["label"]), predicted)] += 1
    return t


def observed(store: Store, profile: ReferenceProfile) -> Truth:
    """The same figures as Redis holds them."""
    t = Truth()
    for w in store.windows.read(profile, store.windows.starts(profile.model_id, profile.revision)):
        if w.count:
            t.count[w.start] = w.count
            t.f00[w.start] = w.numeric["f00"].total
            t.country[w.start] = Counter(w.categorical["country"].counts)
        if w.performance is not None and w.performance.labelled:
            t.confusion[w.start] = Counter(w.performance.confusion)
    return t


def assert_exact(got: Truth, want: Truth) -> None:
    assert dict(got.count) == dict(want.count)
    for w, total in want.f00.items():
        assert abs(got.f00[w] - total) <= 1e-9 * max(1.0, abs(total)), w
    assert {w: dict(c) for w, c in got.country.items()} == {
        w: dict(c) for w, c in want.country.items()
    }
    assert {w: dict(c) for w, c in got.confusion.items() if c} == {
        w: dict(c) for w, c in want.confusion.items() if c
    }


class Recorder(logging.Handler):
    """The worker's log records, kept for assertions."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


class WorkerThread:
    """A `Worker` running in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.worker = Worker(settings)
        self.error: BaseException | None = None
        self.log = Recorder()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(install_signals=False)
        except BaseException as e:
            self.error = e

    def __enter__(self) -> WorkerThread:
        logging.getLogger("streamdrift").addHandler(self.log)
        logging.getLogger("streamdrift").setLevel(logging.INFO)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> None:
        self.worker.stop()
        self._thread.join(timeout)
        logging.getLogger("streamdrift").removeHandler(self.log)
        assert not self._thread.is_alive(), "the worker did not stop"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
