"""Recovery of two streamdrift workers from Redis faults, measured end to end.

Run:  .venv/bin/python benchmarks/faults.py [--events N] [--scenario NAME]
          [--rate R] [--json] [--keep]

For each scenario the script starts its own Tansu broker and a fresh redis-server (a
`RedisNode` of tests/integration/redis_control.py) on free loopback ports, creates a
4-partition predictions topic and a 4-partition labels topic, registers the synthetic
fraud model and runs two real `streamdrift worker` processes (the CLI, configured by
STREAMDRIFT_* variables, each with a metrics port of its own). It then streams N
22-feature predictions and 0.6·N labels (`synthetic.labelled_events`, labels 10 min to
3 h late in event time) at a steady rate, injects one Redis fault, and measures:

- exact: every window's count, f00 sum, country counts and confusion matrix, and the
  join counter, equal to the truth computed offline from the events (exit code 1 if not);
- events re-read: the `streamdrift_replayed_events` delta (events skipped by the fences)
  summed over both workers, and the events they read in all against the stream's size;
- the time from the fault's end (Redis back, thawed, or the model registered again) to
  exact counts;
- /readyz (polled every 50 ms): the time to 503 after the fault starts, and back to 200
  after it ends;
- each worker's VmRSS (every 200 ms): the peak, and at the start and end of its pause;
- the workers' log lines at WARNING and above, and that none holds a traceback.

Scenarios: none (no fault, for reference), rdb_snapshot, aof_tail, kill, freeze, empty
(see benchmarks/README.md).
Everything started is stopped at the end, also on an error, Ctrl-C or SIGTERM; the
servers' and workers' logs stay in the run directory when a scenario fails (always with
--keep).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from confluent_kafka import KafkaError, Producer
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# The checkout's own code (also for the worker processes) and its test helpers.
for _p in (str(SRC), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tests.integration.redis_control import AofCut, Persistence, RedisNode  # noqa: E402
from tests.integration.truth import Truth, assert_exact, observed, truth  # noqa: E402

from streamdrift import embedded, kafka_io, synthetic  # noqa: E402
from streamdrift.config import MonitorConfig, Settings  # noqa: E402
from streamdrift.errors import StreamdriftError  # noqa: E402
from streamdrift.profile import ReferenceProfile  # noqa: E402
from streamdrift.reference import build_profile  # noqa: E402
from streamdrift.store import Store  # noqa: E402
from streamdrift.store.client import connect  # noqa: E402
from streamdrift.store.keys import ModelKeys  # noqa: E402

MODEL = "faultbench"
PARTITIONS = 4
WORKERS = 2
WINDOW_SECONDS = 3600
SPAN_SECONDS = 12 * 3600  # prediction times over 12 h: 12-13 hourly windows
LABEL_DELAY = (600.0, 3 * 3600.0)  # labels 10 min to 3 h after their prediction
LABEL_SHARE = 0.6  # 60,000 labels for 100,000 predictions
SESSION_TIMEOUT_MS = 6000  # Tansu holds a group join about half of it
READY_POLL = 0.05
RSS_POLL = 0.2
SETTLE_SECONDS = 2.0  # exact, and still exact this much later: a double count shows
EXACT_POLL = 0.2


class BenchmarkError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the stream ------------------------------------------------------------------------
@dataclass
class Stream:
    """The events of one run, in the order they are produced, and what Redis must hold."""

    items: list[tuple[bool, bytes, bytes]]  # (is a label, key, value), by event time
    predictions: int
    labels: int
    bytes: int
    want: Truth

    @property
    def total(self) -> int:
        return len(self.items)


def make_stream(n: int, n_labels: int, seed: int = 5) -> Stream:
    """N predictions and `n_labels` labels of a random subset of them. Produced in event
    time: a label comes 10 min to 3 h after its prediction, so mostly after it."""
    start = time.time() - SPAN_SECONDS - LABEL_DELAY[1] - 300
    preds, labels = synthetic.labelled_events(
        MODEL, n, start, SPAN_SECONDS, seed=seed, delay_seconds=LABEL_DELAY
    )
    keep = np.sort(np.random.default_rng(seed).choice(n, size=n_labels, replace=False))
    labels = [labels[i] for i in keep]
    timed = [(start + i * SPAN_SECONDS / n, 0, k, v) for i, (k, v) in enumerate(preds)]
    timed += [(float(orjson.loads(v)["timestamp"]), 1, k, v) for k, v in labels]
    timed.sort(key=lambda t: (t[0], t[1]))
    items = [(bool(is_label), k, v) for _, is_label, k, v in timed]
    return Stream(
        items=items,
        predictions=n,
        labels=n_labels,
        bytes=sum(len(v) for _, _, v in items),
        want=truth(preds, labels, WINDOW_SECONDS),
    )


# ---- servers and workers ---------------------------------------------------------------
class Tansu:
    """A Tansu broker (memory storage) on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.port = embedded.free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "tansu.log"
        self.proc = embedded.start_tansu(self.port, self.log_path)
        try:
            embedded.wait_for_port(self.port, self.proc, "tansu")
        except StreamdriftError as e:
            self.stop()
            raise BenchmarkError(str(e)) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Sample:
    t: float
    value: int


class WorkerProc:
    """One `streamdrift worker` process, its log file and its metrics port."""

    def __init__(self, index: int, env: dict[str, str], workdir: Path) -> None:
        self.index = index
        self.port = embedded.free_port()
        self.log_path = workdir / f"worker-{index}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamdrift", "worker"],
                env={**env, "STREAMDRIFT_METRICS_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ready: list[Sample] = []  # /readyz status (0: no answer)
        self.reasons: list[tuple[float, str]] = []  # /readyz reasons while not ready
        self.rss: list[Sample] = []  # VmRSS, kB
        self.exited_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()
        except (OSError, urllib.error.URLError):
            return 0, b""

    def metrics(self) -> dict[str, float]:
        """`name{label="v",...}` -> value of every sample on /metrics."""
        code, body = self.get("/metrics", timeout=5.0)
        if code != 200:
            raise BenchmarkError(f"worker {self.index}: /metrics answered {code}")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
        return out

    def read_rss(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (finish the batch, commit, leave the group), SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []


def metric_sum(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for key, value in m.items():
        base, _, rest = key.partition("{")
        if base == name and all(w in rest for w in want):
            total += value
    return total


def by_label(m: dict[str, float], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in m.items():
        base, _, rest = key.partition("{")
        if base == name:
            for part in rest.rstrip("}").split(","):
                k, _, v = part.partition("=")
                if k == label:
                    out[v.strip('"')] = out.get(v.strip('"'), 0.0) + value
    return out


class Monitor:
    """/readyz of each worker every 50 ms (a thread each: a probe may hold an answer for
    half a second), VmRSS of each every 200 ms, and whether a worker process exited."""

    def __init__(self, workers: list[WorkerProc]) -> None:
        self.workers = workers
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ready, args=(w,), daemon=True) for w in workers
        ] + [threading.Thread(target=self._rss, daemon=True)]

    def start(self) -> Monitor:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _ready(self, w: WorkerProc) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            code, body = w.get("/readyz")
            t = time.monotonic()  # the answer's time: a probe may hold it for 0.5 s
            w.ready.append(Sample(t, code))
            if code != 200:
                try:
                    reason = str(orjson.loads(body).get("reason", ""))
                except (orjson.JSONDecodeError, AttributeError):
                    reason = f"HTTP {code}" if code else "no answer"
                if not w.reasons or w.reasons[-1][1] != reason:
                    w.reasons.append((t, reason))
            self._stop.wait(max(0.0, t0 + READY_POLL - time.monotonic()))

    def _rss(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            for w in self.workers:
                if w.exited_at is None and w.proc.poll() is not None:
                    w.exited_at = t
                kb = w.read_rss()
                if kb is not None:
                    w.rss.append(Sample(t, kb))
            self._stop.wait(max(0.0, t + RSS_POLL - time.monotonic()))

    def crashed(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.proc.poll() is not None]


# ---- scenarios -------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    persistence: Persistence
    #: seconds the fault lasts (0: a restart, over when Redis answers again)
    seconds: float
    #: what "the fault's end" is
    end: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "none",
            "no fault: the whole stream produced at once, a backlog (reference)",
            "none",
            0,
            "stream produced",
        ),
        Scenario(
            "rdb_snapshot",
            "restart from an RDB snapshot taken at half the stream",
            "rdb",
            0,
            "Redis back",
        ),
        Scenario(
            "aof_tail",
            "SIGKILL, ~30 % of the AOF tail cut, restart",
            "aof-everysec",
            0,
            "Redis back",
        ),
        Scenario("kill", "SIGKILL for 10 s, then restart", "aof-always", 10, "Redis back"),
        Scenario("freeze", "SIGSTOP for 10 s, then SIGCONT", "aof-everysec", 10, "thawed"),
        Scenario(
            "empty",
            "restart empty, the model registered again after 5 s",
            "none",
            5,
            "registered again",
        ),
    )
}


@dataclass
class Held:
    predictions: int
    joined: int


@dataclass
class Result:
    name: str
    ok: bool = False
    failure: str | None = None
    exact: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


class ScenarioRun:
    """One scenario: servers, topics, model, two workers, the stream, the fault, figures."""

    def __init__(
        self, sc: Scenario, stream: Stream, profile: ReferenceProfile, args: Any, workdir: Path
    ) -> None:
        self.sc, self.stream, self.base_profile, self.args = sc, stream, profile, args
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.workers: list[WorkerProc] = []
        self.res = Result(sc.name)
        self.node: RedisNode | None = None

    # -- helpers --------------------------------------------------------------------------
    def produce(self, lo: int, hi: int, seconds: float) -> None:
        """Events lo..hi-1 of the stream, spread evenly over `seconds`."""
        n = hi - lo
        if n <= 0:
            return
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None and len(errors) < 5:
                errors.append(str(err))

        topics = (self.settings.predictions_topic, self.settings.labels_topic)
        t0 = time.monotonic()
        for j in range(n):
            if j % 250 == 0:
                delay = t0 + j * seconds / n - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # not poll(delay): it returns at the first callback
                self.producer.poll(0)
            is_label, key, value = self.stream.items[lo + j]
            while True:
                try:
                    self.producer.produce(
                        topics[is_label], key=key, value=value, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
        left = self.producer.flush(60)
        if left or errors:
            raise BenchmarkError(f"produce failed: {left} undelivered, {errors}")

    def totals(self) -> Held:
        """Predictions counted and labels joined, cheaply: each window's count and the
        join counter, one round trip."""
        k = ModelKeys(MODEL)
        rev = self.profile.revision
        starts = self.store.windows.starts(MODEL, rev)
        pipe = self.store.redis.pipeline(transaction=False)
        for s in starts:
            pipe.hget(k.window(rev, s).meta, "count")
        pipe.hget(k.join, "joined")
        *counts, joined = pipe.execute()
        return Held(sum(int(c or 0) for c in counts), int(joined or 0))

    def differs(self) -> str | None:
        """None when Redis holds exactly the truth, else a short account of the gap."""
        want = self.stream.want
        try:
            quick = self.totals()
        except redis.RedisError as e:
            return f"redis: {type(e).__name__}"
        if quick.predictions > want.predictions or quick.joined > want.joined:
            # counts never come down by themselves: this is a double count
            raise BenchmarkError(
                f"counted twice: predictions {quick.predictions}/{want.predictions}, "
                f"joins {quick.joined}/{want.joined}"
            )
        if quick.predictions < want.predictions or quick.joined < want.joined:
            return (
                f"predictions {quick.predictions}/{want.predictions}, "
                f"joins {quick.joined}/{want.joined}"
            )
        try:
            got = observed(self.store, self.profile)
            joined = int(self.store.counters.join_stats(MODEL).get("joined", 0))
        except redis.RedisError as e:
            return f"redis: {type(e).__name__}"
        try:
            assert_exact(got, want)
        except AssertionError:
            return (
                f"predictions {got.predictions}/{want.predictions}, "
                f"joins {got.joined}/{want.joined}"
            )
        if joined != want.joined:
            return f"join counter {joined}/{want.joined}"
        return None

    def held(self) -> Held | None:
        try:
            return self.totals()
        except redis.RedisError:
            return None

    def wait_exact(self, timeout: float) -> float:
        """Seconds until Redis holds the truth; raises when it does not in time (or a
        worker died)."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            self.check_alive()
            last = self.differs()
            if last is None:
                return time.monotonic() - t0
            time.sleep(EXACT_POLL)
        raise BenchmarkError(f"not exact after {timeout:.0f} s: {last}")

    def check_alive(self) -> None:
        dead = [w for w in self.workers if w.proc.poll() is not None]
        if dead:
            raise BenchmarkError(
                ", ".join(f"worker {w.index} exited with code {w.proc.returncode}" for w in dead)
            )

    def metrics(self) -> list[dict[str, float]]:
        return [w.metrics() for w in self.workers]

    def sleep_until(self, t: float) -> None:
        while (left := t - time.monotonic()) > 0:
            self.check_alive()
            time.sleep(min(left, 0.2))

    # -- the run --------------------------------------------------------------------------
    def run(self) -> Result:
        sc, args = self.sc, self.args
        with contextlib.ExitStack() as stack:
            tansu = Tansu(self.dir)
            stack.callback(tansu.stop)
            self.node = node = RedisNode(self.dir / "redis", persistence=sc.persistence)
            node.start()
            stack.callback(node.stop)  # thaws a frozen one first
            self.settings = Settings(
                kafka_bootstrap=tansu.bootstrap,
                redis_url=node.url,
                predictions_topic="predictions",
                labels_topic="labels",
                alerts_topic="alerts",
                consumer_group="faultbench",
                session_timeout_ms=SESSION_TIMEOUT_MS,
            )
            kafka_io.ensure_topics(self.settings, partitions=PARTITIONS)
            self.store = Store(node.url, client=connect(node.url, timeout=2.0))
            self.profile, _ = self.store.profiles.save(self.base_profile)
            self.producer = Producer(
                {
                    "bootstrap.servers": tansu.bootstrap,
                    "linger.ms": 5,
                    "acks": "all",
                    "queue.buffering.max.messages": 500_000,
                    "queue.buffering.max.kbytes": 1024 * 1024,
                }
            )
            stack.callback(self._drop_producer)  # before the broker stops: no reconnect noise
            env = worker_env(self.settings)
            for i in range(WORKERS):
                w = WorkerProc(i, env, self.dir)
                self.workers.append(w)
            stack.callback(self.stop_workers)
            self.wait_ready(60)
            self.monitor = Monitor(self.workers).start()
            stack.callback(self.monitor.stop)
            t_stream = time.monotonic()
            fault = FAULTS[sc.name](self)
            self.res.detail.update(fault.detail)
            t_exact = self.wait_exact(args.timeout)
            self.sleep_until(time.monotonic() + SETTLE_SECONDS)
            still = self.differs()
            if still is not None:
                raise BenchmarkError(f"exact, then {SETTLE_SECONDS} s later not: {still}")
            self.res.exact = True
            after = self.metrics()
            t_end = time.monotonic()
            self.monitor.stop()
            codes = self.stop_workers()
            self.res.detail.update(self.figures(fault, after, t_exact, t_stream, t_end, codes))
        bad = [f"worker {i} exited with code {c}" for i, c in enumerate(codes) if c != 0]
        bad += [
            f"worker {i}: a Traceback in its log"
            for i, wl in enumerate(self.res.detail["logs"])
            if wl["traceback"]
        ]
        self.res.failure = "; ".join(bad) or None
        self.res.ok = self.res.exact and not bad
        return self.res

    def wait_ready(self, timeout: float) -> None:
        """Both workers ready and all 2 x 4 partitions assigned between them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if all(w.get("/readyz")[0] == 200 for w in self.workers):
                with contextlib.suppress(BenchmarkError):
                    assigned = [
                        metric_sum(m, "streamdrift_assigned_partitions") for m in self.metrics()
                    ]
                    if sum(assigned) == 2 * PARTITIONS and all(assigned):
                        return
            time.sleep(0.2)
        raise BenchmarkError(f"workers not ready with all partitions after {timeout:.0f} s")

    def _drop_producer(self) -> None:
        self.producer.flush(5)
        del self.producer

    def stop_workers(self) -> list[int | None]:
        return [w.stop() for w in self.workers]

    # -- figures --------------------------------------------------------------------------
    def figures(
        self,
        fault: FaultTimes,
        after: list[dict[str, float]],
        t_exact: float,
        t_stream: float,
        t_end: float,
        codes: list[int | None],
    ) -> dict[str, Any]:
        before = fault.metrics
        replayed = sum(
            metric_sum(a, "streamdrift_replayed_events_total")
            - metric_sum(b, "streamdrift_replayed_events_total")
            for a, b in zip(after, before, strict=True)
        )
        read = sum(metric_sum(a, "streamdrift_events_total") for a in after)
        read_after = read - sum(metric_sum(b, "streamdrift_events_total") for b in before)
        resyncs: Counter[str] = Counter()
        for a, b in zip(after, before, strict=True):
            ra, rb = (by_label(x, "streamdrift_resyncs_total", "cause") for x in (a, b))
            for cause, v in ra.items():
                if v - rb.get(cause, 0.0):
                    resyncs[cause] += int(v - rb.get(cause, 0.0))
        dead = sum(metric_sum(a, "streamdrift_dead_letters_total") for a in after)
        workers = [worker_figures(w, fault.start, fault.end, t_stream, t_end) for w in self.workers]
        lost = None
        if fault.held_before is not None and fault.held_after is not None:
            lost = {
                "predictions": max(0, fault.held_before.predictions - fault.held_after.predictions),
                "joins": max(0, fault.held_before.joined - fault.held_after.joined),
            }
        return {
            "fault_seconds": round(fault.end - fault.start, 3),
            "redis_lost": lost,
            "replayed_events": int(replayed),
            "events_read": int(read),
            "events_read_after_fault_start": int(read_after),
            "stream_events": self.stream.total,
            "extra_reads": int(read) - self.stream.total,
            "resyncs": dict(resyncs),
            "dead_letters": int(dead),
            "seconds_to_exact": round(t_exact, 3),
            "workers": workers,
            "logs": [log_figures(w) for w in self.workers],
            "exit_codes": codes,
        }


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of a `streamdrift worker` process (as the integration tests'
    `env_for`), running this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(settings.to_env())
    env["STREAMDRIFT_LOG_FORMAT"] = "json"
    return env


def worker_figures(w: WorkerProc, start: float, end: float, t0: float, t1: float) -> dict[str, Any]:
    """/readyz and RSS around the fault, from the samples of one worker."""
    ready = [s for s in w.ready if start <= s.t <= t1]
    first_bad = next((s for s in ready if s.value != 200), None)
    out: dict[str, Any] = {
        "pid": w.pid,
        "ready_503_after_s": None,
        "ready_200_after_s": None,
        "not_ready_spells": 0,
    }
    rss = [s for s in w.rss if t0 <= s.t <= t1]
    out["rss_peak_mb"] = round(max((s.value for s in rss), default=0) / 1024, 1)
    out["rss_before_mb"] = next(
        (round(s.value / 1024, 1) for s in reversed(w.rss) if s.t <= start), None
    )
    if first_bad is None:
        return out
    last_bad = next(s for s in reversed(ready) if s.value != 200)
    back = next((s for s in ready if s.t > last_bad.t and s.value == 200), None)
    out["ready_503_after_s"] = round(first_bad.t - start, 3)
    out["ready_200_after_s"] = round(back.t - end, 3) if back else None
    out["not_ready_spells"] = sum(
        1 for a, b in pairwise(ready) if a.value == 200 and b.value != 200
    ) + (ready[0].value != 200)
    out["not_ready_reasons"] = [r for t, r in w.reasons if start <= t <= t1]
    paused = [s for s in rss if first_bad.t <= s.t <= last_bad.t]
    if paused:
        out["rss_pause_start_mb"] = round(paused[0].value / 1024, 1)
        out["rss_pause_end_mb"] = round(paused[-1].value / 1024, 1)
        out["rss_pause_peak_mb"] = round(max(s.value for s in paused) / 1024, 1)
        out["pause_sampled_s"] = round(paused[-1].t - paused[0].t, 2)
    return out


def log_figures(w: WorkerProc) -> dict[str, Any]:
    """WARNING+ lines of a worker's JSON log, by kind; any traceback."""
    lines = w.log_lines()
    warn: list[str] = []
    alerts = 0
    for line in lines:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                warn.append(line[:160])  # not a log record: stray output counts as loud
            continue
        if not isinstance(doc, dict) or doc.get("level") not in ("warning", "error", "critical"):
            continue
        message = str(doc.get("message", ""))
        if message.startswith("alert ") and "alert_id" in doc:
            alerts += 1  # the monitor's own drift/quality alerts, not about the fault
        else:
            warn.append(f"{doc['level'].upper()} {message[:150]}")
    return {
        "lines": len(lines),
        "warning_plus": len(warn) + alerts,
        "fault_lines": len(warn),
        "alert_lines": alerts,
        "traceback": any("Traceback" in x for x in lines),
        "messages": warn,
    }


# ---- faults ----------------------------------------------------------------------------
@dataclass
class FaultTimes:
    start: float
    end: float
    metrics: list[dict[str, float]]  # the workers' metrics when the fault started
    held_before: Held | None = None
    held_after: Held | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _split(r: ScenarioRun, seconds: float) -> int:
    """Where the fault starts: so that the rest of the stream, at the stream's rate, is
    produced while it lasts (at least half the stream comes before it)."""
    total = r.stream.total
    return max(total // 2, total - int(r.args.rate * seconds))


def _at_rate(r: ScenarioRun, lo: int, hi: int) -> None:
    r.produce(lo, hi, (hi - lo) / r.args.rate)


def no_fault(r: ScenarioRun) -> FaultTimes:
    """The reference: the whole stream as fast as it can be produced, with the workers
    ready; the time to exact is then the time to count a backlog of all of it."""
    before = r.metrics()
    t0 = time.monotonic()
    r.produce(0, r.stream.total, 0.0)
    return FaultTimes(t0, t0, before)


def fault_rdb_snapshot(r: ScenarioRun) -> FaultTimes:
    """SAVE at half the stream; the rest streamed and counted; then Redis is SIGKILLed and
    starts from that snapshot, every later write lost."""
    assert r.node is not None
    total = r.stream.total
    _at_rate(r, 0, total // 2)
    snap = r.node.snapshot()
    _at_rate(r, total // 2, total)
    r.wait_exact(r.args.timeout)
    before, held = r.metrics(), r.held()
    t0 = time.monotonic()
    r.node.restart_from_snapshot(snap)
    t1 = time.monotonic()
    return FaultTimes(t0, t1, before, held, r.held(), {"snapshot_at": total // 2})


def fault_aof_tail(r: ScenarioRun) -> FaultTimes:
    """The whole stream counted; then SIGKILL, ~30 % of the newest AOF file cut off (on a
    command boundary), restart: writes acknowledged but never on disk."""
    assert r.node is not None
    _at_rate(r, 0, r.stream.total)
    r.wait_exact(r.args.timeout)
    before, held = r.metrics(), r.held()
    t0 = time.monotonic()
    cut: AofCut = r.node.restart_losing_aof_tail(0.3)
    t1 = time.monotonic()
    return FaultTimes(
        t0,
        t1,
        before,
        held,
        r.held(),
        {
            "aof_cut": {
                "file_bytes": cut.bytes_before,
                "bytes_lost": cut.bytes_lost,
                "commands": cut.commands_before,
                "commands_lost": cut.commands_lost,
            }
        },
    )


def _outage(r: ScenarioRun, begin: Callable[[], None], finish: Callable[[], None]) -> FaultTimes:
    """The fault from `begin` to `finish`, `seconds` apart, while the rest of the stream is
    produced."""
    seconds = r.sc.seconds
    split = _split(r, seconds)
    _at_rate(r, 0, split)
    before, held = r.metrics(), r.held()
    t0 = time.monotonic()
    begin()
    r.produce(split, r.stream.total, max(0.0, seconds - (time.monotonic() - t0) - 0.5))
    r.sleep_until(t0 + seconds)
    finish()
    t1 = time.monotonic()
    return FaultTimes(t0, t1, before, held, r.held(), {"fault_at": split})


def fault_kill(r: ScenarioRun) -> FaultTimes:
    assert r.node is not None
    node = r.node
    return _outage(r, node.kill, node.start)


def fault_freeze(r: ScenarioRun) -> FaultTimes:
    assert r.node is not None
    node = r.node
    return _outage(r, node.freeze, node.thaw)


def fault_empty(r: ScenarioRun) -> FaultTimes:
    assert r.node is not None
    node = r.node

    def register() -> None:
        for _ in range(50):
            try:
                r.profile, _ = r.store.profiles.save(r.base_profile)
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise BenchmarkError("could not register the model again")

    return _outage(r, node.restart_empty, register)


FAULTS: dict[str, Callable[[ScenarioRun], FaultTimes]] = {
    "none": no_fault,
    "rdb_snapshot": fault_rdb_snapshot,
    "aof_tail": fault_aof_tail,
    "kill": fault_kill,
    "freeze": fault_freeze,
    "empty": fault_empty,
}


# ---- report ----------------------------------------------------------------------------
def _pair(ws: list[dict[str, Any]], key: str, fmt: str = "{:.2f}") -> str:
    return " / ".join("-" if w.get(key) is None else fmt.format(w[key]) for w in ws)


def table(res: dict[str, Any]) -> str:
    scs: list[dict[str, Any]] = res["scenarios"]
    width = 20
    head = (
        f"streamdrift faults — {res['predictions']:,} predictions + {res['labels']:,} "
        f"labels ({res['stream_events']:,} events, {res['stream_mb']:.0f} MB), "
        f"{PARTITIONS}+{PARTITIONS} partitions, {WORKERS} worker processes, "
        f"streamed at {res['rate']:,} events/s, {res['cores']} cores, {res['date']}"
    )
    lines = [head, f"  src {res['src']}", ""]

    def row(label: str, f: Callable[[dict[str, Any]], str]) -> None:
        cells = []
        for s in scs:
            try:
                cells.append(f(s))
            except (KeyError, TypeError, ValueError):
                cells.append("-")
        lines.append(f"  {label:<34}" + "".join(f" {c:>{width - 1}}" for c in cells))

    def d(s: dict[str, Any]) -> dict[str, Any]:
        return s["detail"]

    row("scenario", lambda s: s["name"])
    row("persistence", lambda s: s["persistence"])
    row("exact (counts and joins)", lambda s: "yes" if s["exact"] else "NO")
    row("ok (exact, no exit, no traceback)", lambda s: "yes" if s["ok"] else "NO")
    row(
        "fault lasted (s)",
        lambda s: f"{d(s)['fault_seconds']:.2f}" if s["name"] != "none" else "-",
    )
    row(
        "Redis lost: predictions / joins",
        lambda s: f"{d(s)['redis_lost']['predictions']:,} / {d(s)['redis_lost']['joins']:,}",
    )
    row("re-read: fence-skipped events", lambda s: f"{d(s)['replayed_events']:,}")
    row("read in all / stream", lambda s: f"{d(s)['events_read']:,}/{d(s)['stream_events']:,}")
    row(
        "extra reads (% of stream)",
        lambda s: (
            f"{d(s)['extra_reads']:+,} ({100 * d(s)['extra_reads'] / d(s)['stream_events']:.0f}%)"
        ),
    )
    row(
        "resyncs: fault over / rolled back",
        lambda s: " / ".join(
            str(d(s)["resyncs"].get(k, 0)) for k in ("fault_over", "redis_rolled_back")
        ),
    )
    row("fault end -> exact (s)", lambda s: f"{d(s)['seconds_to_exact']:.2f}")
    row("/readyz 503 after start (s) w0/w1", lambda s: _pair(d(s)["workers"], "ready_503_after_s"))
    row("/readyz 200 after end (s) w0/w1", lambda s: _pair(d(s)["workers"], "ready_200_after_s"))
    row("not-ready spells w0/w1", lambda s: _pair(d(s)["workers"], "not_ready_spells", "{}"))
    row("RSS before fault (MB) w0/w1", lambda s: _pair(d(s)["workers"], "rss_before_mb", "{:.0f}"))
    row("RSS peak (MB) w0/w1", lambda s: _pair(d(s)["workers"], "rss_peak_mb", "{:.0f}"))
    row(
        "RSS pause start (MB) w0/w1",
        lambda s: _pair(d(s)["workers"], "rss_pause_start_mb", "{:.0f}"),
    )
    row("RSS pause end (MB) w0/w1", lambda s: _pair(d(s)["workers"], "rss_pause_end_mb", "{:.0f}"))
    row(
        "WARNING+ log lines w0/w1",
        lambda s: " / ".join(str(x["warning_plus"]) for x in d(s)["logs"]),
    )
    row(
        "  of which monitor alerts",
        lambda s: " / ".join(str(x["alert_lines"]) for x in d(s)["logs"]),
    )
    row(
        "Traceback in logs",
        lambda s: "yes" if any(x["traceback"] for x in d(s)["logs"]) else "none",
    )
    row("dead letters", lambda s: f"{d(s)['dead_letters']:,}")
    for s in scs:
        if s.get("failure"):
            lines.append(f"  FAILED {s['name']}: {s['failure']}")
    lines += ["", "  /readyz reasons while not ready, per scenario and worker:"]
    for s in scs:
        for i, w in enumerate(s.get("detail", {}).get("workers", [])):
            for reason in w.get("not_ready_reasons", []):
                lines.append(f"    {s['name']:<13} w{i} {reason[:110]}")
    lines += ["", "  fault log lines (WARNING+, not monitor alerts), per scenario and worker:"]
    for s in scs:
        for i, lg in enumerate(s.get("detail", {}).get("logs", [])):
            for m in lg["messages"]:
                lines.append(f"    {s['name']:<13} w{i} {m[:110]}")
    lines.append(f"\n  total {res['seconds']:.0f} s")
    return "\n".join(lines)


def src_version() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ---- main ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--events", type=int, default=100_000, help="predictions (100000); labels are 60 %% of them"
    )
    ap.add_argument(
        "--rate",
        type=int,
        default=8000,
        help="events/s the stream is produced at, both topics (8000)",
    )
    ap.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable); default all",
    )
    ap.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for exact counts (180)"
    )
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = ap.parse_args(argv)
    if args.events < 10 or args.rate < 100:
        ap.error("--events must be >= 10 and --rate >= 100")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    t_start = time.monotonic()
    names = args.scenario or list(SCENARIOS)
    root = Path(tempfile.mkdtemp(prefix="sd-faults-"))
    log(f"run directory {root}")
    n_labels = int(args.events * LABEL_SHARE)
    log(f"generating {args.events} predictions and {n_labels} labels ...")
    stream = make_stream(args.events, n_labels)
    profile = build_profile(
        MODEL,
        synthetic.write_reference(root / "reference.csv", rows=20_000),
        prediction_column="score",
        label_column="is_fraud",
        config=MonitorConfig(window_seconds=WINDOW_SECONDS),
    )
    results: list[dict[str, Any]] = []
    failed = False
    try:
        for name in names:
            sc = SCENARIOS[name]
            log(f"[{name}] {sc.title} ({sc.persistence}) ...")
            t0 = time.monotonic()
            run = ScenarioRun(sc, stream, profile, args, root / name)
            try:
                res = run.run()
            except Exception as e:  # a failed scenario: reported, its logs kept
                res = run.res
                res.failure = str(e) if isinstance(e, BenchmarkError) else repr(e)
            entry = {
                "name": name,
                "title": sc.title,
                "persistence": sc.persistence,
                "fault_end": sc.end,
                "ok": res.ok,
                "exact": res.exact,
                "failure": res.failure,
                "detail": res.detail,
                "seconds": round(time.monotonic() - t0, 1),
            }
            results.append(entry)
            if res.ok:
                d = res.detail
                log(
                    f"  exact; {d['seconds_to_exact']:.2f} s to exact after the fault's end, "
                    f"{d['events_read']:,} events read for {d['stream_events']:,} "
                    f"({entry['seconds']:.0f} s)"
                )
            else:
                failed = True
                log(f"  FAILED: {res.failure}")
                for w in run.workers:
                    log(f"  --- worker {w.index} log tail ({w.log_path}):\n{tail(w.log_path)}")
                if run.node is not None:
                    log(f"  --- redis log tail:\n{run.node.log_tail()}")
    finally:
        if failed or args.keep:
            log(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "src": src_version(),
        "predictions": stream.predictions,
        "labels": stream.labels,
        "stream_events": stream.total,
        "stream_mb": stream.bytes / 1e6,
        "rate": args.rate,
        "scenarios": results,
        "ok": not failed,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    text = table(out)
    if args.json:
        log(text)
        print(json.dumps(out, indent=None, default=str))
    else:
        print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
