"""Workers against one Redis: events/s and CPU per event for 1, 2 and 4 worker processes
on an 8-partition topic, and each worker's peak memory, at 200,000 and 2,000,000 events.

Run:  .venv/bin/python benchmarks/scaling.py [--events N] [--workers 1,2,4]
                                             [--memory-events M] [--json]

For each worker count the script starts a fresh redis-server (no persistence) and uses one
Tansu broker (memory storage), registers the synthetic fraud model, produces N 22-feature
prediction events to a fresh 8-partition topic (the model, as `make bench`'s, has no label
column unless --join), then starts that many real `streamdrift
worker` processes (the CLI) at once and measures:

- events/s: from the moment every worker is ready (/readyz: it holds partitions, so the
  group has formed) to the last event counted (the sum of the workers'
  `streamdrift_predictions_counted_total`, polled every 250 ms), over the events counted
  in that span;
- CPU per event: the workers' user+system time (/proc/<pid>/stat, summed) and the Redis
  server's (`INFO cpu`), over the same span;
- each worker's peak resident memory (VmHWM of /proc/<pid>/status);
- that Redis holds exactly N counted events in the model's windows (exit code 1 if not).

Then one worker alone reads M events (--memory-events, 2,000,000 by default; 0 skips
it), for the peak memory of a long run against a short one: a worker's memory must not
grow with the events it has read.

On a machine with fewer cores than workers + Redis + broker the curve flattens where the
cores run out; the CPU per event says what a larger machine would see (see
benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import join as join_bench  # noqa: E402
from faults import BenchmarkError, Tansu, WorkerProc, worker_env  # noqa: E402
from tests.integration.redis_control import RedisNode  # noqa: E402

from streamdrift import kafka_io, synthetic  # noqa: E402
from streamdrift.config import MonitorConfig, Settings  # noqa: E402
from streamdrift.reference import build_profile  # noqa: E402
from streamdrift.store import Store  # noqa: E402

MODEL = "scalebench"
PARTITIONS = 8
WINDOW_SECONDS = 3600
SPAN_SECONDS = 4 * 3600
POLL = 0.25
TIMEOUT = 600.0
COUNTED = "streamdrift_predictions_counted_total"
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def produce(bootstrap: str, topic: str, n: int) -> float:
    """N synthetic events to `topic`, keyed by prediction id (join.py's producer, fed
    from the generator: 2M events are not held in memory); seconds taken."""
    start = time.time() - SPAN_SECONDS
    events = synthetic.prediction_events(MODEL, n, start, SPAN_SECONDS, chunk=20_000)
    return float(join_bench.produce(bootstrap, topic, events)["seconds"])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def redis_cpu(r: Any) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def counted_in_redis(store: Store) -> int:
    profile = store.profiles.load(MODEL)
    starts = store.windows.starts(MODEL, profile.revision)
    return sum(w.count for w in store.windows.read(profile, starts))


def run(
    tansu: Tansu, workdir: Path, reference: Path, n: int, workers: int, join: bool = False
) -> dict[str, Any]:
    """One run: a fresh Redis and topic, N events, `workers` worker processes."""
    uid = uuid.uuid4().hex[:8]
    node = RedisNode(workdir / f"redis-{uid}", persistence="none").start()
    procs: list[WorkerProc] = []
    try:
        settings = Settings(
            kafka_bootstrap=tansu.bootstrap,
            redis_url=node.url,
            predictions_topic=f"scale-{uid}",
            labels_topic=f"scale-labels-{uid}",
            alerts_topic=f"scale-alerts-{uid}",
            consumer_group=f"scale-{uid}",
            session_timeout_ms=6000,
        )
        kafka_io.create_topics(
            settings,
            {settings.predictions_topic: PARTITIONS, settings.labels_topic: PARTITIONS},
        )
        kafka_io.ensure_topics(settings)
        store = Store(node.url)
        store.profiles.save(
            build_profile(
                MODEL,
                reference,
                prediction_column="score",
                label_column="is_fraud" if join else None,
                config=MonitorConfig(window_seconds=WINDOW_SECONDS),
            )
        )
        log(f"  {workers} worker(s), {n:,} events: producing")
        produced = produce(tansu.bootstrap, settings.predictions_topic, n)
        env = worker_env(settings)
        procs = [WorkerProc(i, env, workdir) for i in range(workers)]
        r = store.redis
        # the span starts once every worker is ready (holds partitions: the group has
        # formed), with what was counted by then
        base: tuple[float, dict[int, float], float, int] | None = None
        deadline = time.monotonic() + TIMEOUT
        while True:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"not all {n:,} events counted in {TIMEOUT:.0f} s")
            for w in procs:
                if w.proc.poll() is not None:
                    tail = "\n".join(w.log_lines()[-15:])
                    raise BenchmarkError(f"worker {w.index} exited:\n{tail}")
            total = 0
            for w in procs:
                with contextlib.suppress(BenchmarkError):
                    total += int(w.metrics().get(COUNTED, 0))
            if base is None and all(w.get("/readyz")[0] == 200 for w in procs):
                cpu = {w.pid: cpu_seconds(w.pid) for w in procs}
                base = (time.perf_counter(), cpu, redis_cpu(r), total)
            if total >= n:
                break
            time.sleep(POLL)
        end = time.perf_counter()
        if base is None:
            raise BenchmarkError("every event was counted before all workers were ready")
        first, cpu0, redis0, before = base
        span = n - before
        worker_cpu = sum(cpu_seconds(w.pid) - cpu0[w.pid] for w in procs)
        redis_cpu_s = redis_cpu(r) - redis0
        peaks = [round(peak_rss_mb(w.pid), 1) for w in procs]
        exit_codes = [w.stop() for w in procs]
        exact = counted_in_redis(store)
        if exact != n:
            raise BenchmarkError(f"Redis holds {exact:,} counted events, not {n:,}")
        seconds = end - first
        return {
            "workers": workers,
            "events": n,
            "produce_seconds": round(produced, 2),
            "seconds": round(seconds, 3),
            "counted_before_ready": before,
            "events_per_s": span / seconds,
            "worker_cpu_us_per_event": worker_cpu / span * 1e6,
            "redis_cpu_us_per_event": redis_cpu_s / span * 1e6,
            "peak_rss_mb": peaks,
            "exit_codes": exit_codes,
            "verified": exact,
        }
    finally:
        for w in procs:
            with contextlib.suppress(Exception):
                w.stop(10)
        node.stop()


def table(res: dict[str, Any]) -> str:
    lines = [
        f"streamdrift scaling — {PARTITIONS}-partition topic, one Redis, "
        f"{res['cores']} cores, {res['date']}",
        "",
        "  workers   events     ev/s   vs 1   worker CPU µs/ev   Redis CPU µs/ev   "
        "peak RSS MB (each)",
    ]
    one = res["runs"][0]["events_per_s"]
    for r in res["runs"]:
        lines.append(
            f"  {r['workers']:>7} {r['events']:>8,} {r['events_per_s']:>8,.0f}  "
            f"{r['events_per_s'] / one:5.2f}   {r['worker_cpu_us_per_event']:16.2f}   "
            f"{r['redis_cpu_us_per_event']:15.2f}   {', '.join(map(str, r['peak_rss_mb']))}"
        )
    redis_us = min(r["redis_cpu_us_per_event"] for r in res["runs"])
    lines += [
        "",
        f"  Redis-bound ceiling of one Redis (one core): 1e6 / {redis_us:.2f} µs "
        f"= {1e6 / redis_us:,.0f} events/s",
    ]
    if res.get("memory"):
        m = res["memory"]
        lines.append(
            f"  one worker, {m['events']:,} events: peak RSS {m['peak_rss_mb'][0]} MB "
            f"({m['events_per_s']:,.0f} ev/s); at {res['runs'][0]['events']:,}: "
            f"{res['runs'][0]['peak_rss_mb'][0]} MB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--memory-events", type=int, default=2_000_000)
    ap.add_argument(
        "--join",
        action="store_true",
        help="register the model with its label column: each prediction also leaves a "
        "record for its label in Redis (make bench's model has none)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="sd-scale-") as tmp:
        workdir = Path(tmp)
        reference = synthetic.write_reference(workdir / "reference.csv")
        tansu = Tansu(workdir)
        try:
            runs = []
            for k in counts:
                runs.append(run(tansu, workdir, reference, args.events, k, args.join))
                log(f"    {runs[-1]['events_per_s']:,.0f} ev/s")
            memory = None
            if args.memory_events:
                memory = run(tansu, workdir, reference, args.memory_events, 1, args.join)
        finally:
            tansu.stop()
    res = {
        "join": args.join,
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "runs": runs,
        "memory": memory,
    }
    print(json.dumps(res, default=str) if args.json else table(res))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as e:
        print(f"benchmark FAILED: {e}", file=sys.stderr)
        sys.exit(1)
