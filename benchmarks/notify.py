"""`streamdrift notify`: delivery latency (alert produced -> webhook received) and
throughput (alerts/s) against a local HTTP server.

Run:  .venv/bin/python benchmarks/notify.py [--alerts N] [--rate R] [--backlog M]
          [--models K] [--concurrency C] [--fetch-wait-ms W] [--json]

Starts an embedded Tansu broker on a free loopback port (or uses the one named by
STREAMDRIFT_KAFKA_BOOTSTRAP) and the recording HTTP server of the integration tests
(`tests/integration/notify_receivers.py`: ThreadingHTTPServer, HTTP/1.1 keep-alive,
answers 200 at once), then runs the real command, `python -m streamdrift notify`, as a
subprocess with a routes file naming one webhook sink, in two phases, each on a fresh
3-partition alerts topic (keyed by model id, as the workers publish) and a fresh group:

1. latency: the notifier is started and waited for (a first alert delivered), then N
   alerts of K models are produced one at a time at R alerts/s (a producer with
   linger.ms=0, each flushed); latency is the receiver's arrival time minus the time
   just before `produce()`, per alert, on the one clock of this machine.
2. throughput: M alerts of K models are produced first (a backlog), then the notifier
   is started with `--once`; alerts/s is M over the time from the first request
   received to the last; the wall time from start to exit (group join included) is
   reported beside it.

Every alert must arrive exactly once with its `Idempotency-Key`, each model's in topic
order, or the run fails with exit code 1. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.alert_factory import alert_doc  # noqa: E402
from tests.integration.notify_receivers import Receiver  # noqa: E402

from streamdrift import embedded  # noqa: E402

PARTITIONS = 3


class BenchmarkError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    given = os.environ.get("STREAMDRIFT_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    workdir = Path(tempfile.mkdtemp(prefix="sd-bench-notify-"))
    port = embedded.free_port()
    proc = embedded.start_tansu(port, workdir / "tansu.log")
    try:
        embedded.wait_for_port(port, proc, "Kafka broker (tansu)")
        log(f"embedded broker: 127.0.0.1:{port} (log in {workdir})")
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, PARTITIONS, 1)], operation_timeout=15)
    futures[topic].result(timeout=15)


def alerts_of(models: int, n: int, tag: str) -> list[dict[str, Any]]:
    """n alerts round-robin over the models: open, escalated, resolved episodes."""
    statuses = ("open", "escalated", "resolved")
    return [
        alert_doc(
            model_id=f"m{i % models:03d}-{tag}",
            status=statuses[(i // models) % 3],
            episode=f"{tag}-{i % models}-{i // (3 * models)}",
            seq=i,
            route="ops",
        )
        for i in range(n)
    ]


def environment(bootstrap: str, topic: str, fetch_wait_ms: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
            "STREAMDRIFT_KAFKA_BOOTSTRAP": bootstrap,
            "STREAMDRIFT_ALERTS_TOPIC": topic,
            "STREAMDRIFT_NOTIFY_GROUP": f"bench-{topic}",
            "STREAMDRIFT_NOTIFY_METRICS_PORT": "-1",
            "STREAMDRIFT_SESSION_TIMEOUT_MS": "6000",
            "STREAMDRIFT_LOG_FORMAT": "text",
        }
    )
    if fetch_wait_ms is not None:
        env["STREAMDRIFT_KAFKA_FETCH_WAIT_MAX_MS"] = str(fetch_wait_ms)
    return env


def routes_file(workdir: Path, url: str, concurrency: int) -> Path:
    path = workdir / "routes.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "sinks": {"hook": {"type": "webhook", "url": url, "concurrency": concurrency}},
                "routes": [{"sinks": "hook"}],
            }
        )
    )
    return path


def check(receiver: Receiver, alerts: list[dict[str, Any]], path: str) -> None:
    """Every alert once, with its key, each model's in order."""
    got = receiver.at(path)
    keys = [r.headers.get("Idempotency-Key") for r in got]
    if sorted(k or "" for k in keys) != sorted(a["alert_id"] for a in alerts):
        raise BenchmarkError(f"{path}: {len(got)} requests for {len(alerts)} alerts")
    expected: dict[str, list[str]] = defaultdict(list)
    for a in alerts:
        expected[a["model_id"]].append(a["alert_id"])
    seen: dict[str, list[str]] = defaultdict(list)
    for r in got:
        seen[r.json()["model_id"]].append(r.headers["Idempotency-Key"])
    if seen != expected:
        raise BenchmarkError(f"{path}: a model's alerts arrived out of topic order")


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def latency(
    bootstrap: str, receiver: Receiver, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    topic = f"sd-bench-alerts-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    path = "/latency"
    routes = routes_file(workdir, receiver.url(path), args.concurrency)
    with open(workdir / "latency.log", "wb") as notify_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "notify", "--routes", str(routes)],
            env=environment(bootstrap, topic, args.fetch_wait_ms),
            stdout=subprocess.DEVNULL,
            stderr=notify_log,
        )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    try:
        warm = alerts_of(1, 1, "warm")
        producer.produce(topic, key=b"warm", value=orjson.dumps(warm[0]))
        producer.flush(10)
        deadline = time.monotonic() + 60
        while not receiver.at(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError("the notifier did not deliver the warm-up alert")
            time.sleep(0.05)
        alerts = alerts_of(args.models, args.alerts, "lat")
        produced: dict[str, float] = {}
        interval = 1.0 / args.rate
        start = time.monotonic()
        for i, a in enumerate(alerts):
            time.sleep(max(0.0, start + i * interval - time.monotonic()))
            body = orjson.dumps(a)
            produced[a["alert_id"]] = time.time()
            producer.produce(topic, key=a["model_id"].encode(), value=body)
            producer.flush(10)
        deadline = time.monotonic() + 60
        while len(receiver.at(path)) < len(alerts) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    check(receiver, warm + alerts, path)
    lat = [
        (r.at - produced[r.headers["Idempotency-Key"]]) * 1000
        for r in receiver.at(path)
        if r.headers["Idempotency-Key"] in produced
    ]
    return {
        "alerts": len(lat),
        "rate_per_s": args.rate,
        "p50_ms": quantile(lat, 0.5),
        "p90_ms": quantile(lat, 0.9),
        "p99_ms": quantile(lat, 0.99),
        "max_ms": max(lat),
        "mean_ms": statistics.fmean(lat),
    }


def throughput(
    bootstrap: str, receiver: Receiver, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    topic = f"sd-bench-alerts-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    path = "/backlog"
    alerts = alerts_of(args.models, args.backlog, "tp")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for a in alerts:
        producer.produce(topic, key=a["model_id"].encode(), value=orjson.dumps(a))
        producer.poll(0)
    if producer.flush(30):
        raise BenchmarkError("the backlog was not acknowledged")
    routes = routes_file(workdir, receiver.url(path), args.concurrency)
    started = time.time()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamdrift",
            "notify",
            "--routes",
            str(routes),
            "--once",
            "--max-seconds",
            "600",
        ],
        env=environment(bootstrap, topic, args.fetch_wait_ms),
        capture_output=True,
        text=True,
    )
    ended = time.time()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    (workdir / "throughput.log").write_text(res.stderr)
    if res.returncode != 0:
        raise BenchmarkError(f"notify exited {res.returncode}: {res.stderr[-2000:]}")
    check(receiver, alerts, path)
    times = [r.at for r in receiver.at(path)]
    span = max(times) - min(times)
    return {
        "alerts": len(alerts),
        "alerts_per_s": len(alerts) / span if span > 0 else None,
        "delivery_seconds": span,
        "wall_seconds": ended - started,
        "first_delivery_after_start_s": min(times) - started,
        # the whole process, start-up (~1 s of imports) included
        "notify_cpu_seconds": cpu,
    }


def table(res: dict[str, Any]) -> str:
    lat, tp = res["latency"], res["throughput"]
    return "\n".join(
        [
            f"streamdrift notify, one webhook sink (concurrency {res['concurrency']}), "
            f"{res['models']} models, {PARTITIONS} partitions, fetch.wait.max.ms "
            f"{res['fetch_wait_ms'] or 'default (100)'}",
            f"latency, {lat['alerts']} alerts at {lat['rate_per_s']:g}/s (produced -> received):",
            f"  p50 {lat['p50_ms']:.1f} ms   p90 {lat['p90_ms']:.1f} ms   "
            f"p99 {lat['p99_ms']:.1f} ms   max {lat['max_ms']:.1f} ms   "
            f"mean {lat['mean_ms']:.1f} ms",
            f"throughput, a backlog of {tp['alerts']:,} alerts:",
            f"  {tp['alerts_per_s']:,.0f} alerts/s ({tp['delivery_seconds']:.2f} s first to last "
            f"delivery; {tp['wall_seconds']:.1f} s from start to exit, first delivery after "
            f"{tp['first_delivery_after_start_s']:.1f} s)",
            f"  the notifier's CPU: {tp['notify_cpu_seconds']:.1f} s in all, start-up included",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=500, help="latency phase: alerts produced")
    ap.add_argument("--rate", type=float, default=50.0, help="latency phase: alerts per second")
    ap.add_argument("--backlog", type=int, default=5000, help="throughput phase: alerts")
    ap.add_argument("--models", type=int, default=20, help="models the alerts are spread over")
    ap.add_argument("--concurrency", type=int, default=4, help="the webhook sink's threads")
    ap.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=None,
        help="the notifier's fetch.wait.max.ms (default: its own, 100)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sd-bench-notify-run-"))
    receiver = Receiver()
    try:
        with broker() as bootstrap:
            res = {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_before": os.getloadavg()[0],
                },
                "models": args.models,
                "concurrency": args.concurrency,
                "fetch_wait_ms": args.fetch_wait_ms,
                "latency": latency(bootstrap, receiver, workdir, args),
                "throughput": throughput(bootstrap, receiver, workdir, args),
            }
    except BenchmarkError as e:
        log(f"FAILED: {e} (logs in {workdir})")
        return 1
    finally:
        receiver.close()
    log(table(res))
    if args.json:
        print(orjson.dumps(res).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
