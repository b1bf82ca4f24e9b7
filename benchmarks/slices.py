"""What version and segment slices cost a worker: the same events, slices off and on.

One worker over N events of a model with slices off, against the same events of the
model with version and segment slices on.

Run:  .venv/bin/python benchmarks/slices.py [--events N] [--rounds R] [--json] [--profile]

Starts an embedded Tansu broker and redis-server like throughput.py (whose functions it
imports), writes the synthetic fraud model's reference with two more columns, `region`
and `channel` (5 values each), produces N 22-feature prediction events to a 4-partition
topic (versions "1.0" and "2.0" alternating, each event's `segments` naming its region
and channel, timestamps over the last 4 hours: 5 hourly windows), then measures in one
run, on the same servers and the same events:

1. off: a `Worker` over the N events of the model registered with slices off
   (`{"max_versions": 0, "segment_keys": []}`) — the model-only baseline;
2. on: a `Worker` over the same events of the model registered with slices on (version
   slices, default `max_versions`; `segment_keys` `region` and `channel`): 12 slices
   per window (2 versions, 5 + 5 segment values).

The two alternate, off first (off, on, off, on, ...), R rounds (4) each, each run in a Redis
database of its own (the model registered there afresh) and a consumer group of its own.
A run is `throughput.run_worker`: the worker run as `Worker.run` runs it, timed from the
first message to the last, its steps timed by wrapping them (src is not modified), the
process's CPU time and the Redis server's (INFO cpu) over the same span. After each run
the windows are read back with their slices and must count exactly what was produced:
N events in all, each window's count, each window's events per version, and (slices on)
each slice's count per window, in the window's meta and in the slice's own hashes; with
slices off no slice may exist. Then the model's window keys (`sd:{m}:w:*`): MEMORY USAGE
(SAMPLES 0) of each, summed per window. Reported: min/median/max events/s of each kind,
the ratio on/off of the medians (goal >= 0.70), the same with the evaluations' time left
out, CPU per event (process and Redis server), bytes and keys per window.

Last, the sliced path's pieces one by one on 8 batches of the same events (best of 5):
slicing the batch, `sketch._sketch` without and with each dimension, the apply's payload,
and the apply itself against a scratch database. --profile adds one more sliced run under
cProfile (not counted in the rates) and prints its top functions on stderr. See
benchmarks/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
from confluent_kafka import KafkaError, Producer
from throughput import (
    PARTITIONS,
    SESSION_TIMEOUT_MS,
    BenchmarkError,
    baseline,
    consumer_settings,
    create_topic,
    db_url,
    delete_topics,
    log,
    report,
    run_main,
    run_worker,
    send,
    servers,
)

from streamdrift import synthetic
from streamdrift.config import MonitorConfig, Settings, SlicePolicy
from streamdrift.decode import ModelEvents, decode_predictions
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile
from streamdrift.sketch import _sketch, extract_features, prediction_outputs, sketch_batch
from streamdrift.slices import Slicer, segment_slice, version_slice
from streamdrift.store import ApplyRequest, Store
from streamdrift.store.applies import Applied, Applies
from streamdrift.store.keys import MODELS

WINDOW_SECONDS = 3600
SPAN_SECONDS = 4 * 3600  # events over the last 4 h: 5 hourly windows
GOAL_RATIO = 0.70  # slices may cost at most 30 % of the events/s
VERSIONS = ("1.0", "2.0")
SEGMENTS = {
    "region": (("eu", "na", "apac", "latam", "mea"), (0.35, 0.30, 0.20, 0.10, 0.05)),
    "channel": (("web", "app", "pos", "phone", "partner"), (0.40, 0.30, 0.15, 0.10, 0.05)),
}
FEATURES = [*synthetic.NUMERIC, "country", "device"]
REPEAT = 5  # calls of each piece; the fastest counts
MAX_DATABASES = 16  # Redis's default `databases`


def source_commit() -> str | None:
    """The checkout's commit, with "+changes" when src/ has uncommitted changes."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=here, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", str(here.parent / "src"))
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if changed else "")


# ---- setup -----------------------------------------------------------------------------
def write_reference(path: Path) -> Path:
    """The synthetic fraud reference plus the segment columns, drawn like the events."""
    synthetic.write_reference(path)
    table = pcsv.read_csv(path)
    rng = np.random.default_rng(3)
    for key, (values, p) in SEGMENTS.items():
        picks = rng.choice(len(values), size=table.num_rows, p=p)
        table = table.append_column(key, pa.array(np.asarray(values)[picks]))
    pcsv.write_csv(table, path)
    return path


def profiles(model: str, reference: Path) -> dict[str, ReferenceProfile]:
    """The model's profile with slices off and with slices on, from the same reference."""
    policies = {
        "off": SlicePolicy(max_versions=0, segment_keys=[]),
        "on": SlicePolicy(segment_keys=list(SEGMENTS)),
    }
    return {
        kind: build_profile(
            model,
            reference,
            prediction_column="score",
            features=FEATURES,
            config=MonitorConfig(window_seconds=WINDOW_SECONDS, slices=policy),
        )
        for kind, policy in policies.items()
    }


def produce(bootstrap: str, topic: str, model: str, n: int) -> dict[str, Any]:
    """N events of the synthetic fraud stream, each given a version (alternating) and
    segments (drawn), and the truth: per window, its events and each slice's events."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "compression.type": "none",
            "acks": "all",
        }
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    rng = np.random.default_rng(5)
    picks = {key: rng.choice(len(values), size=n, p=p) for key, (values, p) in SEGMENTS.items()}
    counts: Counter[int] = Counter()
    slices: dict[int, Counter[str]] = defaultdict(Counter)
    start = time.time() - SPAN_SECONDS - 60
    t0 = time.perf_counter()
    total_bytes = 0
    events = synthetic.prediction_events(model, n, start, SPAN_SECONDS, seed=11)
    for i, (key, raw) in enumerate(events):
        event = orjson.loads(raw)
        version = VERSIONS[i % len(VERSIONS)]
        segments = {k: SEGMENTS[k][0][int(picks[k][i])] for k in SEGMENTS}
        event["model_version"] = version
        event["segments"] = segments
        value = orjson.dumps(event)
        window = int(np.floor(event["timestamp"] / WINDOW_SECONDS) * WINDOW_SECONDS)
        counts[window] += 1
        got = slices[window]
        got[version_slice(version)] += 1
        for k, v in segments.items():
            got[segment_slice(k, v)] += 1
        total_bytes += len(value)
        send(producer, topic, key, value, on_delivery)
    left = producer.flush(60)
    elapsed = time.perf_counter() - t0
    if left or errors:
        raise BenchmarkError(f"produce failed: {left} undelivered, errors {errors}")
    return {
        "seconds": elapsed,
        "mean_event_bytes": total_bytes / n,
        "truth": {w: {"count": counts[w], "slices": dict(slices[w])} for w in sorted(counts)},
    }


# ---- checks and memory -----------------------------------------------------------------
def verify(
    store: Store, model: str, n: int, truth: dict[int, dict[str, Any]], sliced: bool
) -> dict[str, Any]:
    """The windows as Redis has them, against the truth: N events in all, each window's
    count and events per version, and each slice's count (in the window's meta and in
    the slice's own hashes); with slices off, no slice at all."""
    profile = store.profiles.load(model)
    if profile is None:
        raise BenchmarkError(f"profile of {model} vanished")
    starts = store.windows.starts(model, profile.revision)
    windows = store.windows.read(profile, starts, slices=True)
    total = sum(w.count for w in windows)
    if total != n:
        raise BenchmarkError(f"Redis windows hold {total} events, expected {n}")
    if sorted(w.start for w in windows) != sorted(truth):
        raise BenchmarkError(f"windows {[w.start for w in windows]}, expected {sorted(truth)}")
    problems: list[str] = []
    slices_checked = 0
    for w in windows:
        want = truth[w.start]
        if w.count != want["count"]:
            problems.append(f"window {w.start}: {w.count} events, expected {want['count']}")
        versions = {f"v={v}": c for v, c in w.versions.items()}
        want_versions = {k: c for k, c in want["slices"].items() if k.startswith("v=")}
        if versions != want_versions:
            problems.append(f"window {w.start}: versions {versions}, expected {want_versions}")
        if not sliced:
            if w.slice_counts or w.slices:
                problems.append(
                    f"window {w.start}: slices {sorted(w.slice_counts)} with slices off"
                )
            continue
        if dict(w.slice_counts) != want["slices"]:
            problems.append(
                f"window {w.start}: slice counts {dict(w.slice_counts)}, expected {want['slices']}"
            )
        for name, c in want["slices"].items():
            sk = w.slices.get(name)
            if sk is None or sk.count != c:
                problems.append(
                    f"window {w.start}: slice {name} holds "
                    f"{None if sk is None else sk.count}, expected {c}"
                )
            slices_checked += 1
    if problems:
        raise BenchmarkError("; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    return {
        "windows": len(windows),
        "total": total,
        "slices_checked": slices_checked,
        "slices_per_window": max(len(w.slice_counts) for w in windows),
    }


def window_memory(store: Store, model: str) -> dict[str, Any]:
    """MEMORY USAGE (SAMPLES 0) of every key `sd:{m}:w:*`, per window: all of it, without
    the id sets (the repeated-id check), and the slices' share."""
    r = store.redis
    tag = f"sd:{{{model}}}:w:"
    keys = sorted(k.decode() for k in r.scan_iter(match=f"{tag}*", count=1000))
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
    sizes = pipe.execute()
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for k, size in zip(keys, sizes, strict=True):
        rest = k[len(tag) :].split(":", 1)[1]  # after "<rev>:"
        head = rest.split(":", 1)[0]  # "<start>" or "<start>|<slice>"
        start, is_slice, _ = head.partition("|")
        w = per[start]
        w["keys"] += 1
        w["bytes"] += int(size or 0)
        if k.endswith(":ids"):
            w["ids_bytes"] += int(size or 0)
        if is_slice:
            w["slice_keys"] += 1
            w["slice_bytes"] += int(size or 0)
    n = len(per)
    if not n:
        raise BenchmarkError(f"no window keys of {model}")
    total = sum(w["bytes"] for w in per.values())
    ids = sum(w["ids_bytes"] for w in per.values())
    fullest = max(per, key=lambda s: (per[s]["keys"], per[s]["bytes"]))
    return {
        "windows": n,
        "keys": len(keys),
        "bytes_per_window": total / n,
        "bytes_per_window_without_ids": (total - ids) / n,
        "keys_per_window": len(keys) / n,
        "slice_bytes_per_window": sum(w["slice_bytes"] for w in per.values()) / n,
        "fullest_window": {"start": int(fullest), **per[fullest]},
        "per_window": {s: dict(w) for s, w in sorted(per.items())},
    }


# ---- the pieces one by one -------------------------------------------------------------
def best_of(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The fastest of `repeat` calls of each case, seconds. The cases take turns (one call
    of each per repetition), so that a change of load on the machine reaches them all
    alike; the cyclic GC is off while they run (as timeit does)."""
    best = dict.fromkeys(cases, float("inf"))
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        gc.enable()
    return best


def pieces(
    batches: list[list[Any]],
    off: ReferenceProfile,
    on: ReferenceProfile,
    max_event_bytes: int,
    scratch: dict[str, Store],
) -> dict[str, Any]:
    """The sliced path's pieces on batches of the same events, µs per event (best of
    REPEAT): sketching, slicing, `_sketch` with each dimension alone, the payload, the
    apply (in a scratch database per kind)."""
    model = on.model_id
    events: list[ModelEvents] = [
        decode_predictions(b, max_event_bytes).by_model[model] for b in batches
    ]
    n = sum(len(e) for e in events)
    known = {v: i for i, v in enumerate(VERSIONS)}  # as after the first batch

    def slicing(ev: ModelEvents) -> Any:
        slicer = Slicer(
            on.config.slices.max_versions, {k: on.segment_values(k) for k in on.segments}, known
        )
        return slicer(ev.versions, ev.segments)

    columns = [extract_features(e, on) for e in events]
    outputs = [prediction_outputs(e, on) for e in events]
    dims = [slicing(e) for e in events]
    names = [d.names[0].partition("=")[0] for d in dims[0]]
    together = list(zip(events, columns, outputs, dims, strict=True))
    cases: dict[str, Callable[[], object]] = {
        "sketch_batch, slices off": lambda: [sketch_batch(e, off) for e in events],
        "sketch_batch, slices on": lambda: [sketch_batch(e, on, slicing) for e in events],
        "  slicing the batch (Slicer: codes of 3 dimensions)": lambda: [slicing(e) for e in events],
        "  _sketch, no dimension": lambda: [_sketch(e, on, c, o) for e, c, o, _ in together],
        **{
            f"  _sketch, dimension {name} alone": (
                lambda j=j: [_sketch(e, on, c, o, [d[j]]) for e, c, o, d in together]
            )
            for j, name in enumerate(names)
        },
        "  _sketch, all 3 dimensions": lambda: [_sketch(e, on, c, o, d) for e, c, o, d in together],
    }
    payload_bytes = {}
    for kind, profile in (("off", off), ("on", on)):
        saved, _ = scratch[kind].profiles.save(profile)
        applies = Applies(scratch[kind].redis)
        requests = [
            ApplyRequest(
                saved,
                [],
                sketch_batch(e, saved, slicing if kind == "on" else None)[0],
                now=time.time(),
            )
            for e in events
        ]
        payload_bytes[kind] = sum(len(applies.request(r)[1][0]) for r in requests) / n

        def apply_all(a: Applies = applies, rs: list[ApplyRequest] = requests) -> None:
            for r in rs:
                res = a.apply(r)
                if not isinstance(res, Applied):
                    raise BenchmarkError(f"scratch apply answered {res}")

        cases[f"apply payload (Applies.request), slices {kind}"] = lambda a=applies, rs=requests: [
            a.request(r) for r in rs
        ]
        cases[f"apply (payload, EVALSHA, answer), slices {kind}"] = apply_all
    gc.collect()
    gc.freeze()  # the batches, their events and sketches: not rescanned by the timed calls
    try:
        us = {k: v / n * 1e6 for k, v in best_of(cases, REPEAT).items()}
    finally:
        gc.unfreeze()
    for name in names:  # the increments over no dimension
        us[f"  of which dimension {name}"] = (
            us[f"  _sketch, dimension {name} alone"] - us["  _sketch, no dimension"]
        )
    ordered = {k: v for k, v in us.items() if not k.startswith("apply")}
    for kind in ("off", "on"):
        whole = us[f"apply (payload, EVALSHA, answer), slices {kind}"]
        payload = us[f"apply payload (Applies.request), slices {kind}"]
        ordered[f"apply payload (Applies.request), slices {kind}"] = payload
        ordered[f"apply (payload, EVALSHA, answer), slices {kind}"] = whole
        ordered[f"  of which Redis (EVALSHA and its answer), slices {kind}"] = whole - payload
        ordered[f"  payload bytes per event, slices {kind}"] = payload_bytes[kind]
    return {
        "events": n,
        "batches": len(events),
        "dimensions": names,
        "repeat": REPEAT,
        "us_per_event": ordered,
    }


def window_reads(
    store_off: Store, store_on: Store, off: ReferenceProfile, on: ReferenceProfile
) -> dict[str, float]:
    """Milliseconds to read all windows back as the evaluation does (with slices), best
    of REPEAT, for the first run of each kind."""
    cases: dict[str, Callable[[], object]] = {}
    for kind, store, profile in (("off", store_off, off), ("on", store_on, on)):
        starts = store.windows.starts(profile.model_id, profile.revision)
        cases[kind] = lambda s=store, p=profile, st=starts: s.windows.read(p, st, slices=True)
    return {k: v * 1e3 for k, v in best_of(cases, REPEAT).items()}


# ---- report ----------------------------------------------------------------------------
def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["events_per_s"] for r in runs]
    # the evaluation runs every evaluation_interval_seconds whatever the rate: the rate of
    # the rest of the loop is the ingestion path's own
    ingest = [r["events"] / (r["seconds"] - r["breakdown_seconds"]["evaluate"]) for r in runs]
    cpu = [r["cpu_us_per_event"]["process"] for r in runs]
    rcpu = [r["cpu_us_per_event"]["redis"] for r in runs]
    steps = {
        k: statistics.median(r["us_per_event"][k] for r in runs) for k in runs[0]["us_per_event"]
    }
    return {
        "events_per_s": rates,
        "events_per_s_min": min(rates),
        "events_per_s_median": statistics.median(rates),
        "events_per_s_max": max(rates),
        "events_per_s_without_evaluation": ingest,
        "events_per_s_without_evaluation_median": statistics.median(ingest),
        "cpu_us_per_event_process": cpu,
        "cpu_us_per_event_process_median": statistics.median(cpu),
        "cpu_us_per_event_redis": rcpu,
        "cpu_us_per_event_redis_median": statistics.median(rcpu),
        "us_per_event_median": steps,
        "final_evaluation_seconds_median": statistics.median(
            r["final_evaluation_seconds"] for r in runs
        ),
    }


STEP_NAMES = {
    "consume": "consume",
    "decode": "decode",
    "validate+sketch": "validate + sketch (slicing inside)",
    "share_other": "rest of BatchLogic.share",
    "fence_filter": "offset fence filter",
    "late_check": "late check",
    "redis_heads": "Redis: heads read",
    "apply_send": "apply: payload and send",
    "apply_wait": "apply: wait for Redis",
    "commit": "commit",
    "dead_letters": "dead letters",
    "evaluate": "evaluation (rate-limited)",
    "tick": "the 5 s tick",
    "process_other": "rest of the batch",
    "loop_other": "loop",
}


def table(res: dict[str, Any]) -> str:
    off, on = res["off"], res["on"]
    mo, mn = res["memory"]["off"], res["memory"]["on"]
    ratio = res["ratio"]

    def rates(s: dict[str, Any]) -> str:
        return ", ".join(f"{x:,.0f}" for x in s["events_per_s"])

    lines = [
        f"streamdrift slices — {res['events']} events of {res['mean_event_bytes']:.0f} B, "
        f"{res['windows']} windows, {PARTITIONS} partitions, {res['cores']} cores, "
        f"{res['date']}, {res['commit']}; {res['rounds']} rounds (off, on, off, on, ...)",
        f"  slices on: {res['slices_per_window']} per window (versions "
        f"{', '.join(VERSIONS)} alternating; segment keys "
        + ", ".join(f"{k} ({len(v[0])} values)" for k, v in SEGMENTS.items())
        + ")",
        "",
        f"  produce {res['produce_seconds']:.1f} s (setup); consume + orjson.loads "
        f"{res['baseline']['events_per_s']:,.0f} ev/s (context, before the workers)",
        "",
        "                                   slices off      slices on",
        f"  events/s, min                 {off['events_per_s_min']:>12,.0f} "
        f"{on['events_per_s_min']:>14,.0f}",
        f"  events/s, median              {off['events_per_s_median']:>12,.0f} "
        f"{on['events_per_s_median']:>14,.0f}",
        f"  events/s, max                 {off['events_per_s_max']:>12,.0f} "
        f"{on['events_per_s_max']:>14,.0f}",
        f"  CPU µs/event, worker process  {off['cpu_us_per_event_process_median']:>12.2f} "
        f"{on['cpu_us_per_event_process_median']:>14.2f}   (median)",
        f"  CPU µs/event, Redis server    {off['cpu_us_per_event_redis_median']:>12.2f} "
        f"{on['cpu_us_per_event_redis_median']:>14.2f}   (median)",
        f"  Redis bytes per window        {mo['bytes_per_window']:>12,.0f} "
        f"{mn['bytes_per_window']:>14,.0f}   (all keys sd:{{m}}:w:*)",
        f"    without the id sets         {mo['bytes_per_window_without_ids']:>12,.0f} "
        f"{mn['bytes_per_window_without_ids']:>14,.0f}   "
        f"(of which slices: {mn['slice_bytes_per_window']:,.0f})",
        f"  Redis keys per window         {mo['keys_per_window']:>12.1f} "
        f"{mn['keys_per_window']:>14.1f}   "
        f"(fullest window: {mo['fullest_window']['keys']} and {mn['fullest_window']['keys']})",
        f"  final forced evaluation       {off['final_evaluation_seconds_median'] * 1e3:>10.0f} ms "
        f"{on['final_evaluation_seconds_median'] * 1e3:>12.0f} ms   (median, not in the rates)",
        f"  reading all windows back     {res['windows_read_ms']['off']:>10.0f} ms "
        f"{res['windows_read_ms']['on']:>12.0f} ms   (all {res['windows']}, with their slices; "
        f"best of {REPEAT})",
        "",
        f"  runs off: {rates(off)} ev/s",
        f"  runs on:  {rates(on)} ev/s",
        f"  ratio on/off, medians         {ratio:8.3f}   (cost {1 - ratio:.1%}; goal >= "
        f"{GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'NOT met'})",
        "  ratio on/off, each round      " + ", ".join(f"{x:.3f}" for x in res["ratio_per_round"]),
        f"  ratio on/off, fastest runs    {res['ratio_best']:8.3f}",
        f"  ratio on/off, no evaluation   {res['ratio_without_evaluation']:8.3f}   (medians of "
        "the rates with the evaluations' time left out: the ingestion path alone)",
        f"  CPU per event off/on          {res['cpu_ratio']:8.3f}   (worker process + Redis, "
        "medians: less sensitive to other load)",
        f"  verified in Redis             every run: {res['events']} events, each window's "
        f"count and versions; slices on: {res['verify_slices_checked']} slice counts "
        "per run; slices off: no slice",
        "",
        "  worker time, median µs/event   slices off   slices on   difference",
    ]
    for k, label in STEP_NAMES.items():
        a, b = off["us_per_event_median"].get(k, 0.0), on["us_per_event_median"].get(k, 0.0)
        lines.append(f"    {label:<34} {a:8.2f} {b:11.2f} {b - a:+12.2f}")
    ta = 1e6 / off["events_per_s_median"]
    tb = 1e6 / on["events_per_s_median"]
    lines.append(f"    {'total (wall, median rate)':<34} {ta:8.2f} {tb:11.2f} {tb - ta:+12.2f}")
    p = res["pieces"]
    lines += [
        "",
        f"  the sliced path piece by piece on {p['events']} of the same events "
        f"({p['batches']} batches, best of {p['repeat']})      µs/event",
    ]
    for k, v in p["us_per_event"].items():
        unit = " B" if "bytes" in k else ""
        lines.append(f"    {k:<62} {v:8.2f}{unit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="events to produce (200000)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="runs of each kind, alternating off and on (4; 2 to 6)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="one more sliced run under cProfile (not counted); top functions on stderr",
    )
    args = ap.parse_args(argv)
    if args.events < 1:
        ap.error("--events must be positive")
    if not 2 <= args.rounds <= 6:
        ap.error("--rounds must be 2 to 6")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    commit = source_commit()
    run = uuid.uuid4().hex[:10]
    topic, model = f"sd-slices-{run}", f"slices_{run}"
    n = args.events
    # databases: one per run, two scratch ones for the pieces, one for --profile
    n_db = 2 * args.rounds + 2 + int(args.profile)
    assert n_db <= MAX_DATABASES
    t_start = time.perf_counter()
    with (
        servers() as (bootstrap, redis_url, is_embedded),
        tempfile.TemporaryDirectory(prefix="sd-slices-") as tmp,
    ):
        base = Settings(
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,
            predictions_topic=topic,
            labels_topic=f"{topic}-labels",
            alerts_topic=f"{topic}-alerts",
            session_timeout_ms=SESSION_TIMEOUT_MS,
        )
        stores = [Store(db_url(redis_url, db)) for db in range(n_db)]
        stores[0].ping()
        topics = [
            topic,
            f"{topic}-labels",
            f"{topic}-alerts",
            base.dlq_topic(topic),
            base.dlq_topic(f"{topic}-labels"),
        ]
        try:
            create_topic(bootstrap, topic)
            log("reference and profiles ...")
            prof = profiles(model, write_reference(Path(tmp) / "reference.csv"))
            log(f"producing {n} events to {topic} ...")
            prod = produce(bootstrap, topic, model, n)
            truth = prod.pop("truth")
            log(
                f"  {prod['seconds']:.1f} s, mean {prod['mean_event_bytes']:.0f} B/event, "
                f"{len(truth)} windows"
            )
            log("reading the topic once (warms the broker; batches kept for the pieces) ...")
            sample: list[list[Any]] = []
            b = baseline(consumer_settings(base, f"sd-slices-read-{run}"), n, keep=sample)
            log(f"  {b['events_per_s']:,.0f} events/s")

            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            memory: dict[str, dict[str, Any]] = {}
            checked = 0
            for i in range(2 * args.rounds):
                kind = ("off", "on")[i % 2]
                store = stores[i]
                store.profiles.save(prof[kind])
                log(f"worker, slices {kind} (round {i // 2 + 1}, Redis database +{i}) ...")
                settings = consumer_settings(
                    base.model_copy(update={"redis_url": db_url(redis_url, i)}),
                    f"sd-slices-worker-{i}-{run}",
                )
                res = run_worker(settings, n, False)
                if res["stats"]["counted"] != n or res["stats"]["dead"]:
                    raise BenchmarkError(
                        f"worker counted {res['stats']['counted']} of {n}, "
                        f"dead letters {res['stats']['dead']}"
                    )
                ver = verify(store, model, n, truth, kind == "on")
                res["verify"] = ver
                memory[kind] = window_memory(store, model)  # the last run of each kind
                res["memory"] = {k: v for k, v in memory[kind].items() if k != "per_window"}
                if kind == "on":
                    checked = ver["slices_checked"]
                log(
                    f"  {res['events_per_s']:,.0f} events/s, CPU "
                    f"{res['cpu_us_per_event']['process']:.2f} + "
                    f"{res['cpu_us_per_event']['redis']:.2f} µs/event; verified "
                    f"{ver['total']} events in {ver['windows']} windows"
                    + (f", {ver['slices_checked']} slice counts" if kind == "on" else "")
                )
                runs[kind].append(res)

            log("the sliced path piece by piece ...")
            loaded = {"off": stores[0].profiles.load(model), "on": stores[1].profiles.load(model)}
            assert loaded["off"] is not None and loaded["on"] is not None
            scratch = {"off": stores[2 * args.rounds], "on": stores[2 * args.rounds + 1]}
            piece = pieces(sample, loaded["off"], loaded["on"], base.max_event_bytes, scratch)
            reads = window_reads(stores[0], stores[1], loaded["off"], loaded["on"])
            del sample

            profile_text = None
            if args.profile:
                db = n_db - 1
                log(f"worker, slices on, under cProfile (Redis database +{db}) ...")
                stores[db].profiles.save(prof["on"])
                settings = consumer_settings(
                    base.model_copy(update={"redis_url": db_url(redis_url, db)}),
                    f"sd-slices-profile-{run}",
                )
                pres = run_worker(settings, n, True)
                verify(stores[db], model, n, truth, True)
                profile_text = pres.pop("profile_text", None)
        finally:
            # the workers froze the heap (worker.tune_gc): let their clients go now, while
            # the broker still answers them
            gc.unfreeze()
            gc.collect()
            if not is_embedded:  # leave a shared broker and Redis as they were
                delete_topics(bootstrap, topics)
                for store in stores:
                    keys = list(store.redis.scan_iter(match=f"sd:{{{model}}}:*", count=1000))
                    for j in range(0, len(keys), 1000):
                        store.redis.delete(*keys[j : j + 1000])
                    store.redis.srem(MODELS, model)

    for rs in runs.values():
        for r in rs:
            r.pop("profile_text", None)
    off, on = summary(runs["off"]), summary(runs["on"])
    cpu = {
        k: s["cpu_us_per_event_process_median"] + s["cpu_us_per_event_redis_median"]
        for k, s in (("off", off), ("on", on))
    }
    res_all: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
        "events": n,
        "rounds": args.rounds,
        "partitions": PARTITIONS,
        "window_seconds": WINDOW_SECONDS,
        "windows": len(truth),
        "embedded_servers": is_embedded,
        "mean_event_bytes": prod["mean_event_bytes"],
        "produce_seconds": prod["seconds"],
        "baseline": b,
        "slices_per_window": max(r["verify"]["slices_per_window"] for r in runs["on"]),
        "segments": {k: list(v[0]) for k, v in SEGMENTS.items()},
        "versions": list(VERSIONS),
        "off": off,
        "on": on,
        "ratio": on["events_per_s_median"] / off["events_per_s_median"],
        "ratio_best": on["events_per_s_max"] / off["events_per_s_max"],
        "ratio_without_evaluation": on["events_per_s_without_evaluation_median"]
        / off["events_per_s_without_evaluation_median"],
        "ratio_per_round": [
            b_["events_per_s"] / a_["events_per_s"]
            for a_, b_ in zip(runs["off"], runs["on"], strict=True)
        ],
        "cpu_ratio": cpu["off"] / cpu["on"],
        "goal_ratio": GOAL_RATIO,
        "memory": memory,
        "verify_slices_checked": checked,
        "pieces": piece,
        "windows_read_ms": reads,
        "runs": runs,
        "total_seconds": time.perf_counter() - t_start,
    }
    return report(res_all, args.json, table, profile_text)


if __name__ == "__main__":
    run_main(main)
