"""One worker on a three-master Redis Cluster against one redis-server, in the same run.

Run:  .venv/bin/python benchmarks/cluster.py [--events N] [--rounds R] [--labels] [--json]

Starts a Tansu broker, one redis-server and a three-master Redis Cluster (three more
redis-servers, no replicas, formed with `redis-cli --cluster create`), all on free
loopback ports and with the same settings (no persistence, noeviction). Registers three
synthetic fraud models whose ids (their hash tags) fall on the three masters, produces N
prediction events of the three models, interleaved, to one 8-partition topic (with
`--labels`, each prediction's label to an 8-partition labels topic too), then runs one
`Worker` over the whole topic against each Redis in turn, the order alternating over
`--rounds` rounds (each on emptied servers, the models registered again, a fresh consumer
group). Per run it reports:

- events/s of the worker's own loop (`Worker.turn`, pipelined one batch deep), timed from
  the first non-empty consume to the last batch applied and committed;
- the Redis side per apply: the time from sending a model's apply to its answer
  (`Applies.send` to the end of `Applies.read`), the part of it the worker waited for
  (`Applies.read`), and the server's own time (`INFO commandstats`, EVALSHA usec, summed
  over the cluster's masters) with the applies per master;
- a check that every model's windows hold exactly its events (exit code 1 otherwise).

The faster run of each kind counts; the ratio is cluster events/s over single-server
events/s. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException, Producer
from throughput import BenchmarkError, create_topic, send  # run from benchmarks/, as join.py

import streamdrift.worker as worker_mod
from streamdrift import embedded, synthetic
from streamdrift.config import MonitorConfig, Settings
from streamdrift.reference import build_profile
from streamdrift.store import Store
from streamdrift.store.keys import ModelKeys

PARTITIONS = 8
MODELS = 3
WINDOW_SECONDS = 3600
SPAN_SECONDS = 4 * 3600  # events over the last 4 h: 4-5 hourly windows per model
SESSION_TIMEOUT_MS = 6000  # Tansu's group join waits about half of it
PHASE_TIMEOUT = 180.0
SLOWLOG_US = 100  # an apply takes milliseconds; the evaluator's reads mostly less


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- servers -----------------------------------------------------------------------------
def _wait_ping(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with redis.Redis(port=port, socket_timeout=1) as r:
                r.ping()
                return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"redis-server on port {port} did not start") from None
            time.sleep(0.05)


@contextlib.contextmanager
def cluster(workdir: Path, masters: int = 3) -> Iterator[str]:
    """A Redis Cluster of `masters` masters without replicas; yields its URL."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise BenchmarkError("redis-cli is not on PATH (it comes with the redis-server package)")
    ports = [embedded.free_port() for _ in range(masters)]
    procs = [  # the bus on a port of its own: the default, port + 10000, may be > 65535
        embedded.start_redis(
            p,
            workdir / f"node-{p}",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--cluster-port",
            str(embedded.free_port()),
        )
        for p in ports
    ]
    try:
        for p in ports:
            _wait_ping(p)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise BenchmarkError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port) as r:
        return b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO")


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str, str]]:
    """(kafka bootstrap, single redis url, cluster url), all started here and stopped on
    exit; their logs stay in /tmp/sd-bench-cluster-* when the run failed."""
    workdir = Path(tempfile.mkdtemp(prefix="sd-bench-cluster-"))
    ok = False
    try:
        with embedded.running(workdir / "single") as srv, cluster(workdir / "cluster") as url:
            log(f"servers: kafka {srv.kafka_bootstrap}, redis {srv.redis_url}, cluster {url}")
            yield srv.kafka_bootstrap, srv.redis_url, url
        ok = True
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"servers stopped; their logs are in {workdir}")


def masters(url: str) -> list[redis.Redis]:
    """A plain client per server: the one server, or each master of the cluster."""
    if url.startswith("redis+cluster://"):
        hosts = url.split("://", 1)[1].split(",")
        return [redis.Redis(host=h.rsplit(":", 1)[0], port=int(h.rsplit(":", 1)[1])) for h in hosts]
    return [redis.Redis.from_url(url)]


# ---- the stream ----------------------------------------------------------------------------
def model_ids(cluster_url: str, run: str) -> list[str]:
    """Three model ids whose hash tags fall on the cluster's three masters."""
    store = Store(cluster_url)
    rc = store.redis
    assert isinstance(rc, redis.cluster.RedisCluster)
    chosen: dict[str, str] = {}
    for i in range(10_000):
        m = f"bench_{run}_{i}"
        node = rc.get_node_from_key(ModelKeys(m).profile).name
        chosen.setdefault(node, m)
        if len(chosen) == MODELS:
            return sorted(chosen.values())
    raise BenchmarkError("no model ids found for three masters")


def produce(bootstrap: str, pairs_by_topic: dict[str, list[tuple[bytes, bytes]]]) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "acks": "all",
        }
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    t0 = time.perf_counter()
    for topic, pairs in pairs_by_topic.items():
        for key, value in pairs:
            send(producer, topic, key, value, on_delivery)
    left = producer.flush(60)
    if left or errors:
        raise BenchmarkError(f"produce failed: {left} undelivered, errors {errors}")
    return time.perf_counter() - t0


def stream(models: list[str], n: int, labels: bool) -> tuple[list, list, dict[str, int]]:
    """The three models' predictions (and labels), interleaved; events per model."""
    start = time.time() - SPAN_SECONDS - 60
    per = {m: n // MODELS + (1 if i < n % MODELS else 0) for i, m in enumerate(models)}
    preds, labs = {}, {}
    for i, m in enumerate(models):
        preds[m], labs[m] = synthetic.labelled_events(
            m, per[m], start, SPAN_SECONDS, seed=11 + i, delay_seconds=(120, 6 * 3600)
        )
    predictions = [preds[m][j] for j in range(max(per.values())) for m in models if j < per[m]]
    label_events = (
        [labs[m][j] for j in range(max(per.values())) for m in models if j < per[m]]
        if labels
        else []
    )
    return predictions, label_events, per


# ---- one run -------------------------------------------------------------------------------
def commandstats(url: str) -> dict[str, tuple[int, int]]:
    """EVALSHA (calls, usec) per server."""
    out = {}
    for r in masters(url):
        name = f"{r.connection_pool.connection_kwargs['port']}"
        stat = r.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        out[name] = (int(stat["calls"]), int(stat["usec"]))
        r.close()
    return out


def reset(url: str, models: list[str], reference: Path) -> None:
    """Empty every server and register the models again (fresh state for the run); every
    command slower than SLOWLOG_US is logged from now on, to time the applies."""
    for r in masters(url):
        r.flushall()
        r.config_resetstat()
        r.slowlog_reset()
        r.config_set("slowlog-log-slower-than", SLOWLOG_US)
        r.config_set("slowlog-max-len", 100_000)
        r.close()
    store = Store(url)
    for m in models:
        store.profiles.save(
            build_profile(
                m,
                reference,
                prediction_column="score",
                label_column="is_fraud",
                features=[*synthetic.NUMERIC, "country", "device"],
                config=MonitorConfig(window_seconds=WINDOW_SECONDS),
            )
        )


def apply_times(url: str, sha: str) -> dict[str, list[float]]:
    """Server time (ms) of each apply (EVALSHA of apply.lua), per server, from SLOWLOG;
    logging back to Redis's default."""
    out = {}
    for r in masters(url):
        entries = r.slowlog_get(-1)
        out[str(r.connection_pool.connection_kwargs["port"])] = [
            e["duration"] / 1e3
            for e in entries
            if e["command"].startswith(f"EVALSHA {sha}".encode())
        ]
        r.config_set("slowlog-log-slower-than", 10_000)
        r.slowlog_reset()
        r.close()
    return out


def run_worker(settings: Settings, n: int) -> dict[str, Any]:
    """One Worker over the whole stream, through its own loop turn."""
    w = worker_mod.Worker(settings)
    applies = w.store.applies
    send, read = applies.send, applies.read
    sent_at: dict[int, float] = {}
    redis_side = defaultdict(float)

    def timed_send(request: Any) -> Any:
        t0 = time.perf_counter()
        pending = send(request)
        t1 = time.perf_counter()
        redis_side["send_s"] += t1 - t0
        redis_side["applies"] += 1
        sent_at[id(pending)] = t0
        return pending

    def timed_read(pending: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return read(pending)
        finally:
            t1 = time.perf_counter()
            redis_side["wait_s"] += t1 - t0
            redis_side["send_to_answer_s"] += t1 - sent_at.pop(id(pending), t0)

    applies.send = timed_send  # type: ignore[method-assign]
    applies.read = timed_read  # type: ignore[method-assign]
    consume = w.consumer.consume
    first: list[float] = []

    def timed_consume(*args: Any, **kwargs: Any) -> Any:
        msgs = consume(*args, **kwargs)
        if msgs and not first:
            first.append(time.perf_counter())
        return msgs

    started = time.monotonic()
    try:
        w._start()
        w.consumer = _Consume(w.consumer, timed_consume)  # type: ignore[assignment]
        while w.stats.messages < n:
            if time.monotonic() - started > PHASE_TIMEOUT:
                raise BenchmarkError(f"worker stalled at {w.stats.messages}/{n} messages")
            w.turn()
        t_last = time.perf_counter()
    finally:
        with contextlib.suppress(Exception):
            w.consumer.close()
        with contextlib.suppress(Exception):
            w.producer.flush(10)
    secs = t_last - first[0]
    k = redis_side["applies"] or 1
    return {
        "events": w.stats.messages,
        "counted": w.stats.counted,
        "batches": w.stats.batches,
        "seconds": secs,
        "events_per_s": w.stats.messages / secs,
        "applies": int(redis_side["applies"]),
        "ms_send_per_apply": redis_side["send_s"] / k * 1e3,
        "ms_wait_per_apply": redis_side["wait_s"] / k * 1e3,
        "ms_send_to_read_per_apply": redis_side["send_to_answer_s"] / k * 1e3,
        "apply_sha": applies._script.sha,
        "fence_conflicts": w.stats.fence_conflicts,
        "dead": dict(w.stats.dead),
    }


class _Consume:
    """The worker's consumer with consume() timed."""

    def __init__(self, inner: Any, consume: Any) -> None:
        self._inner = inner
        self.consume = consume

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def verify(url: str, per_model: dict[str, int], labelled: bool) -> None:
    store = Store(url)
    for m, want in per_model.items():
        profile = store.profiles.load(m)
        if profile is None:
            raise BenchmarkError(f"profile of {m} vanished")
        windows = store.windows.read(profile, store.windows.starts(m, profile.revision))
        got = sum(w.count for w in windows)
        joined = store.counters.join_stats(m).get("joined", 0)
        if got != want or (labelled and joined != want):
            raise BenchmarkError(f"{m}: windows hold {got} events, {joined} joined; want {want}")


def one_run(
    kind: str,
    url: str,
    base: Settings,
    group: str,
    n_messages: int,
    models: list[str],
    per_model: dict[str, int],
    reference: Path,
    labels: bool,
) -> dict[str, Any]:
    reset(url, models, reference)
    before = commandstats(url)
    res = run_worker(
        base.model_copy(update={"redis_url": url, "consumer_group": group}), n_messages
    )
    after = commandstats(url)
    times = apply_times(url, res.pop("apply_sha"))
    verify(url, per_model, labels)
    usec = sum(after[node][1] - before[node][1] for node in after)
    # a call refused for label windows it lacked runs again with them: more runs than sends
    every = sorted(t for ts in times.values() for t in ts)
    if len(every) < res["applies"]:
        raise BenchmarkError(f"{len(every)} applies in SLOWLOG, {res['applies']} sent")
    res.update(
        kind=kind,
        applies_per_server=sorted(len(ts) for ts in times.values()),
        server_ms_per_apply=sum(every) / len(every),
        server_ms_p50=every[len(every) // 2],
        server_ms_max=every[-1],
        evalsha_seconds=usec / 1e6,
        server_seconds_per_server=sorted(round(sum(ts) / 1e3, 3) for ts in times.values()),
    )
    log(
        f"  {kind:7}: {res['events_per_s']:>9,.0f} events/s; per apply: "
        f"{res['server_ms_per_apply']:.2f} ms in Redis, {res['ms_wait_per_apply']:.2f} ms "
        f"waited; applies per server {res['applies_per_server']}"
    )
    return res


def table(res: dict[str, Any]) -> str:
    s, c = res["single"], res["cluster"]
    rows = [
        ("events/s (faster run)", f"{s['events_per_s']:,.0f}", f"{c['events_per_s']:,.0f}"),
        (
            "all runs, events/s",
            ", ".join(f"{x:,.0f}" for x in res["single_runs"]),
            ", ".join(f"{x:,.0f}" for x in res["cluster_runs"]),
        ),
        ("applies sent (one per model per batch)", str(s["applies"]), str(c["applies"])),
        (
            "apply script runs per server",
            str(s["applies_per_server"]),
            str(c["applies_per_server"]),
        ),
        (
            "apply run in Redis, ms: mean",
            f"{s['server_ms_per_apply']:.2f}",
            f"{c['server_ms_per_apply']:.2f}",
        ),
        (
            "apply run in Redis, ms: median / max",
            f"{s['server_ms_p50']:.1f} / {s['server_ms_max']:.1f}",
            f"{c['server_ms_p50']:.1f} / {c['server_ms_max']:.1f}",
        ),
        (
            "apply, ms the worker waited (mean)",
            f"{s['ms_wait_per_apply']:.2f}",
            f"{c['ms_wait_per_apply']:.2f}",
        ),
        (
            "apply, ms from send to read (mean)",
            f"{s['ms_send_to_read_per_apply']:.1f}",
            f"{c['ms_send_to_read_per_apply']:.1f}",
        ),
        (
            "applies' Redis seconds per server",
            str(s["server_seconds_per_server"]),
            str(c["server_seconds_per_server"]),
        ),
        (
            "EVALSHA seconds, every script",
            f"{s['evalsha_seconds']:.2f}",
            f"{c['evalsha_seconds']:.2f}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"streamdrift on a 3-master Redis Cluster vs one redis-server — {res['date']}, "
        f"{res['cores']} cores, Python {res['python']}",
        f"{res['events']:,} predictions of {MODELS} models (one per master), "
        f"{res['label_events']:,} labels, {PARTITIONS} partitions, batch "
        f"{res['batch_size']}, {res['rounds']} rounds",
        "",
        f"{'':{width}}  {'single':>12}  {'cluster':>12}",
    ]
    lines += [f"{a:{width}}  {b:>12}  {d:>12}" for a, b, d in rows]
    lines += [
        "",
        f"ratio cluster / single: {res['ratio']:.2f}   (load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in res['load_average'])})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="predictions (100000)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each kind (2)")
    ap.add_argument("--labels", action="store_true", help="a label for every prediction too")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    logging.getLogger("streamdrift").setLevel(logging.ERROR)  # alerts are not the point here
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = uuid.uuid4().hex[:8]
    topic = f"sd-bench-cluster-{run}"
    t_start = time.perf_counter()
    with (
        servers() as (bootstrap, single_url, cluster_url),
        tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp,
    ):
        models = model_ids(cluster_url, run)
        reference = synthetic.write_reference(Path(tmp) / "reference.csv")
        base = Settings(
            kafka_bootstrap=bootstrap,
            predictions_topic=topic,
            labels_topic=f"{topic}-labels",
            alerts_topic=f"{topic}-alerts",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            metrics_port=-1,
        )
        create_topic(bootstrap, topic, PARTITIONS)
        create_topic(bootstrap, base.labels_topic, PARTITIONS)
        predictions, label_events, per_model = stream(models, args.events, args.labels)
        log(f"producing {len(predictions)} predictions and {len(label_events)} labels ...")
        secs = produce(bootstrap, {topic: predictions, base.labels_topic: label_events})
        log(f"  {secs:.1f} s")
        n_messages = len(predictions) + len(label_events)
        runs: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
        for r in range(args.rounds):
            order = [("single", single_url), ("cluster", cluster_url)]
            for kind, url in order if r % 2 == 0 else order[::-1]:
                runs[kind].append(
                    one_run(
                        kind,
                        url,
                        base,
                        f"bench-{kind}-{r}-{run}",
                        n_messages,
                        models,
                        per_model,
                        reference,
                        args.labels,
                    )
                )
        load = os.getloadavg()
    best = {k: max(v, key=lambda x: x["events_per_s"]) for k, v in runs.items()}
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "events": len(predictions),
        "label_events": len(label_events),
        "batch_size": base.batch_size,
        "rounds": args.rounds,
        "models": models,
        "single": best["single"],
        "cluster": best["cluster"],
        "single_runs": [x["events_per_s"] for x in runs["single"]],
        "cluster_runs": [x["events_per_s"] for x in runs["cluster"]],
        "load_average": load,
        "ratio": best["cluster"]["events_per_s"] / best["single"]["events_per_s"],
        "total_seconds": time.perf_counter() - t_start,
    }
    if args.json:
        print(json.dumps(res, default=str))
        log(table(res))
    else:
        print(table(res))
    log(f"total run time {res['total_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchmarkError, KafkaException) as e:
        print(f"benchmark FAILED: {e}", file=sys.stderr)
        sys.exit(1)
