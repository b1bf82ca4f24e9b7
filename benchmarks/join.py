"""The delayed-label join: worker throughput with labels flowing, and Redis bytes per
pending prediction and per waiting label.

Run:  .venv/bin/python benchmarks/join.py [--events N] [--pending M] [--json] [--profile]

Starts an embedded Tansu broker and redis-server like throughput.py (whose helpers it
imports), registers synthetic fraud models (binary, `prediction_column="score"`,
`label_column="is_fraud"`, `window_seconds=3600`) and measures in one run:

1. labels flowing: N predictions (synthetic.labelled_events, which gives them two
   segments) to a 4-partition topic and their N labels (delays of 2 minutes to 6 hours
   of event time, every timestamp within the last day) to a 4-partition labels topic.
   Baseline: a bare consumer subscribed to both topics, consume(5000, 0.5) +
   orjson.loads (throughput.py's baseline consumer), before and after the worker, the
   faster counts. Worker: `Worker` subscribed to both, run as `Worker.run` runs it
   (throughput.drive: its start-up, then `Worker.turn` after turn), timed from the first
   message to the last, its steps and every Lua apply timed by wrapping them at run time
   (src is not modified). Afterwards every
   label must be joined, the windows must count N events and N labelled pairs.
2. predictions only: M predictions of a second model (segments taken out) and no labels,
   in Redis database +1. Its rate is the comparison figure; its Redis state gives the
   bytes per pending prediction in the join's journals (`sd:{m}:jr:<shard>` lists and
   the `sd:{m}:jr` heads): MEMORY USAGE of every journal over the ids they hold, and
   the used_memory delta over the run minus the model's other keys, divided by M.
3. control: the same predictions read again for the model registered WITHOUT a label
   column (database +3): it keeps its ids in a set per window (to count repeated ids),
   not in the join's journals, so 2 minus 3 is what the join costs the prediction path
   (--no-control skips it).
4. labels before predictions: M labels of a third model and no predictions (database
   +2): every label waits; bytes per waiting label, measured as in 2.
5. labels after predictions: the M labels of 2's predictions, read by 2's consumer group
   (which resumes after the predictions): every label joins a pending prediction.
6. live (--live L, 0 skips it), a model at work (database +4): L predictions spread over
   the day as in 1 are read first (not timed: they wait for their labels). Then, paced
   at --live-rate messages/s by another process, while the worker reads at the head of
   both topics: L new predictions, all within the current window, alternating with the
   L labels of the first ones in the order they arrive (by their own time: prediction
   time plus delay). 1 reads a backlog whose every batch spans most of the day's
   windows; here a batch holds what a live model's does: predictions of one window,
   labels whose pairs go to the windows of the last 6 hours. Its figures are Redis's
   per message and the longest apply at that batch shape; its events/s is the pace.

Each phase has a Redis database of its own so that its used_memory delta includes the
growth of hash tables (main and expires dicts) that hold only its keys. See
benchmarks/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import multiprocessing
import os
import platform
import pstats
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
import throughput
from confluent_kafka import KafkaError, Producer
from throughput import (
    CEILING_OVERRIDES,
    PARTITIONS,
    SESSION_TIMEOUT_MS,
    BenchmarkError,
    Timers,
    create_topic,
    db_url,
    delete_topics,
    drive,
    instrumented,
    log,
    report,
    run_main,
    send,
    servers,
    verify,
)

import streamdrift.worker as worker_mod
from streamdrift import synthetic
from streamdrift.config import MonitorConfig, Settings
from streamdrift.reference import build_profile
from streamdrift.store import Store
from streamdrift.store.keys import MODELS
from streamdrift.store.records import Shard

WINDOW_SECONDS = 3600
DAY = 86400
DELAY_SECONDS = (120.0, 6 * 3600.0)  # label delay in event time: 2 minutes to 6 hours
#: predictions over [now - DAY + MARGIN, now - max delay - MARGIN): labels end before now
MARGIN = 60.0
SPAN_SECONDS = DAY - DELAY_SECONDS[1] - 2 * MARGIN
GOAL_BYTES = 150  # per pending prediction
MEMORY_SAMPLE = 5000  # keys whose MEMORY USAGE is read
#: databases, relative to the one in the Redis URL
DB_LABELLED, DB_PREDICTIONS, DB_LABELS, DB_CONTROL, DB_LIVE = 0, 1, 2, 3, 4


# ---- infrastructure --------------------------------------------------------------------
def produce(bootstrap: str, topic: str, pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, float]:
    """Produce (key, value) pairs as they are (a list, or a generator: read once);
    returns seconds and bytes."""
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

    t0 = time.perf_counter()
    total = count = 0
    for key, value in pairs:
        total += len(value)
        count += 1
        send(producer, topic, key, value, on_delivery)
    left = producer.flush(60)
    if left or errors:
        raise BenchmarkError(f"produce to {topic} failed: {left} undelivered, errors {errors}")
    return {
        "seconds": time.perf_counter() - t0,
        "bytes": total,
        "mean_bytes": total / max(count, 1),
    }


def live_order(
    predictions: list[tuple[bytes, bytes]], labels: list[tuple[bytes, bytes]]
) -> list[tuple[int, bytes, bytes]]:
    """(0 for the predictions topic or 1 for the labels topic, key, value): the new
    predictions in their order, alternating with the labels in the order they arrive
    (by their own time)."""
    timed = sorted(labels, key=lambda kv: orjson.loads(kv[1])["timestamp"])
    out: list[tuple[int, bytes, bytes]] = []
    for p, lb in zip(predictions, timed, strict=True):
        out += [(0, *p), (1, *lb)]
    return out


def produce_paced(
    bootstrap: str,
    topics: tuple[str, str],
    items: list[tuple[int, bytes, bytes]],
    rate: float,
    go: Any,
) -> None:
    """Produce `items` in order at `rate` messages/s, once `go` is set (in a process of
    its own, so that its CPU is not the worker's)."""
    go.wait(300)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    t0 = time.perf_counter()
    for i, (t, key, value) in enumerate(items):
        if i % 100 == 0:
            ahead = i / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
        send(producer, topics[t], key, value)
    if producer.flush(60):
        raise SystemExit("undelivered messages")


def settings_for(
    bootstrap: str, redis_url: str, predictions: str, labels: str, group: str
) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        predictions_topic=predictions,
        labels_topic=labels,
        alerts_topic=f"{predictions}-alerts",
        consumer_group=group,
        session_timeout_ms=SESSION_TIMEOUT_MS,
    )


def topics_of(s: Settings) -> list[str]:
    return [
        s.predictions_topic,
        s.labels_topic,
        s.alerts_topic,
        s.dlq_topic(s.predictions_topic),
        s.dlq_topic(s.labels_topic),
    ]


# ---- 1. baseline -----------------------------------------------------------------------
def baseline(settings: Settings, n: int) -> dict[str, Any]:
    """throughput.py's baseline (consume + orjson.loads, nothing else) on both topics."""
    return throughput.baseline(
        settings, n, None, [settings.predictions_topic, settings.labels_topic], **CEILING_OVERRIDES
    )


# ---- 2. worker -------------------------------------------------------------------------
def commandstats(r: redis.Redis) -> dict[str, dict[str, float]]:
    return {
        k.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
        for k, v in r.info("commandstats").items()
    }


def commandstats_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], events: int
) -> dict[str, dict[str, float]]:
    """Redis commands run during a phase (every client: Lua's calls count under their own
    name, and EVALSHA's time includes them), per event."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {"calls": 0.0, "usec": 0.0})
        calls, usec = a["calls"] - b["calls"], a["usec"] - b["usec"]
        if calls > 0:
            out[name] = {
                "calls": int(calls),
                "usec": usec,
                "calls_per_event": calls / events,
                "us_per_event": usec / events,
            }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["usec"]))


def lua_fit(applies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Least squares of the Lua time per apply: b * predictions + c * labels (µs). No
    intercept: full batches hold 5000 messages, so an intercept would be collinear."""
    if len(applies) < 4:
        return None
    x = np.array([[a["predictions"], a["labels"]] for a in applies], dtype=np.float64)
    y = np.array([a["lua_seconds"] * 1e6 for a in applies])
    if np.linalg.matrix_rank(x) < 2:
        return None
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    r2 = 1 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum() or 1.0)
    return {
        "us_per_prediction": float(coef[0]),
        "us_per_label": float(coef[1]),
        "r2": r2,
        "applies": len(applies),
    }


def run_worker(
    settings: Settings,
    n: int,
    profile_run: bool | str = False,
    started: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """A Worker subscribed to both topics, run as `Worker.run` runs it (throughput.drive)
    until it read n messages; its steps and every Lua apply (with the join's size) timed
    while it runs. `started`: called once, when the worker polls with its partitions
    assigned."""
    w = worker_mod.Worker(settings)
    if started is not None:
        start = w._start

        def _start() -> None:
            start()
            poll = w.consumer.consume
            told = False

            def consume(num_messages: int, timeout: float) -> list[Any]:
                nonlocal told
                if not told and w.consumer.assignment():
                    told = True
                    started()
                return poll(num_messages, timeout)  # type: ignore[no-any-return]

            w.consumer.consume = consume  # type: ignore[method-assign]

        w._start = _start  # type: ignore[method-assign]
    timers = Timers()
    missing: list[str] = []
    applies: list[dict[str, Any]] = []
    prof = cProfile.Profile() if profile_run else None
    # beyond what throughput.instrumented wraps
    extra = (
        ("streamdrift.worker", "decode_labels", "decode_labels", ()),
        ("streamdrift.batch", "join_delta", "join_delta", ()),
        # the join worked out before the apply: its records read, the meeting, the sums
        ("store.applies", "prepare", "apply_prepare", ()),
        ("store.applies.records", "read", "records_read", ()),
        ("streamdrift.store.applies", "meet", "pair_meet", ()),
        ("streamdrift.store.applies", "window_sums", "pair_sums", ()),
    )
    stats_before = commandstats(w.store.redis)
    with instrumented(w, timers, missing, extra):
        record_applies(w.store, applies, missing)
        try:
            d = drive(w, n, timers, prof, on_first=applies.clear)
            s, calls = dict(timers.seconds), dict(timers.calls)
            t0 = time.perf_counter()
            w.evaluate_due(idle=True, force=True)
            final_eval = time.perf_counter() - t0
        finally:
            with contextlib.suppress(Exception):
                w.consumer.close()
            with contextlib.suppress(Exception):
                w.producer.flush(10)
    stats_after = commandstats(w.store.redis)
    # the worker's Redis connections go now: their buffers would count in used_memory
    w.store.redis.connection_pool.disconnect()
    seen, secs = d.seen, d.t_last - d.t_first
    s = defaultdict(float, s)
    s["process"] = s["turn_decode"] + s["turn_plan"] + s["turn_drain"] + s["turn_launch"]
    in_share = s["fence_filter"] + s["late_check"] + s["sketch"] + s["join_delta"]
    parts = {
        "consume": s["consume"],
        "decode predictions": s["decode"],
        "decode labels": s["decode_labels"],
        "fence filter + late check": s["fence_filter"] + s["late_check"],
        "validate + sketch": s["sketch"],
        "join_delta (records)": s["join_delta"],
        "rest of BatchLogic.share": max(s["share"] - in_share, 0.0),
        "Redis heads": s["redis_heads"],
        "apply: read the join's records (Redis)": s["records_read"],
        "apply: meet + pair sums (pairing)": s["pair_meet"] + s["pair_sums"],
        "apply: build the call": max(
            s["apply_prepare"] - s["records_read"] - s["pair_meet"] - s["pair_sums"], 0.0
        ),
        "apply: send": s["apply_send"],
        "apply: wait for Redis": s["apply_wait"],
        "commit": s["commit"],
        "dead letters": s["dead_letters"] + s["count_unrouted"],
        "evaluate_due": s["evaluate"],
        "tick": s["tick"],
    }
    outside = ("consume", "evaluate_due", "tick")
    listed = sum(v for k, v in parts.items() if k not in outside)
    parts["rest of process"] = max(s["process"] - listed, 0.0)
    parts["loop"] = max(secs - s["consume"] - s["process"] - s["evaluate"] - s["tick"], 0.0)
    result: dict[str, Any] = {
        "events": seen,
        "seconds": secs,
        "events_per_s": seen / secs,
        "batches": len(d.batch_sizes),
        "mean_batch": seen / len(d.batch_sizes),
        "stalls": d.stalls,
        "ticks": d.ticks,
        "cpu_us_per_event": {
            "process": d.cpu_process / seen * 1e6,
            "redis": d.cpu_redis / seen * 1e6,
        },
        "calls": {
            k: calls.get(k, 0)
            for k in ("turn_launch", "share", "apply_send", "redis_heads", "evaluate")
        },
        "breakdown_seconds": parts,
        "us_per_event": {k: v / seen * 1e6 for k, v in parts.items()},
        "final_evaluation_seconds": final_eval,
        "applies": applies,
        "lua_fit": lua_fit(applies),
        "redis_commands": commandstats_delta(stats_before, stats_after, seen),
        "not_instrumented": missing,
        "stats": {
            "messages": w.stats.messages,
            "counted": w.stats.counted,
            "labels_joined": w.stats.labels_joined,
            "dead": dict(w.stats.dead),
            "skipped_replays": w.stats.skipped_replays,
            "fence_conflicts": w.stats.fence_conflicts,
            "alerts": w.stats.alerts,
            "columnar_batches": w.stats.columnar_batches,
            # shares worked out while Redis applied the batch before (Worker.plan)
            "shares_ahead": w.stats.shares_ahead,
            "shares_redone": w.stats.shares_redone,
            # shares worked out again: a shard's journal moved between replay and apply
            "record_rounds": w.store.applies.record_rounds,
            # journal shards read whole, and compacted, by the worker
            "journal_full_reads": w.store.applies.records.full_reads,
            "journal_compactions": w.store.applies.records.compactions,
            "records_held": w.store.applies.records.held_ids(),
        },
    }
    if prof:
        out = io.StringIO()
        st = pstats.Stats(prof, stream=out)
        st.sort_stats("tottime").print_stats(20)
        st.sort_stats("cumulative").print_stats(30)
        result["profile_text"] = out.getvalue()
        if isinstance(profile_run, str):
            prof.dump_stats(profile_run)
    return result


def record_applies(store: Store, applies: list[dict[str, Any]], missing: list[str]) -> None:
    """Record each apply's join size, payload bytes, result, and the time from sending it
    to reading its answer (on top of the timers throughput.instrumented puts on
    `Applies.send` and `Applies.read`). The worker decodes its next batch meanwhile, so
    that time bounds the script's run time from above."""
    target = getattr(store, "applies", None)
    if not (hasattr(target, "send") and hasattr(target, "read")):
        missing.append("Applies.send/read (per-apply records)")
        return
    send, read = target.send, target.read
    records: dict[int, dict[str, Any]] = {}

    def send_apply(request: Any) -> Any:
        # an ApplyRequest, or one prepared (its join's records read)
        join = getattr(request, "request", request).join
        t0 = time.perf_counter()
        pending = send(request)
        records[id(pending)] = dict(
            predictions=len(join.predictions) if join is not None else 0,
            labels=len(join.labels) if join is not None else 0,
            windows=len(getattr(request, "request", request).windows),
            sent=t0,
            payload_bytes=sum(
                len(a) if isinstance(a, (bytes, str)) else len(str(a)) for a in pending.args
            ),
        )
        return pending

    def read_apply(pending: Any) -> Any:
        res = read(pending)
        rec = records.pop(id(pending), None)
        if rec is not None:
            rec["lua_seconds"] = time.perf_counter() - rec.pop("sent")
            # the script's own run time by Redis's clock (Applied only)
            rec["script_seconds"] = getattr(res, "script_us", 0) / 1e6
            stats = getattr(res, "stats", None)  # Applied(JoinStats), or FenceMoved
            rec["ok"] = stats is not None
            for f in ("joined", "duplicate_predictions", "duplicate_labels"):
                rec[f] = getattr(stats, f, 0)
            rec["labels_waiting"] = getattr(stats, "labels_before_prediction", 0)
            applies.append(rec)
        return res

    target.send = send_apply
    target.read = read_apply


def lua_summary(applies: list[dict[str, Any]], events: int) -> dict[str, Any]:
    preds = sum(a["predictions"] for a in applies)
    labels = sum(a["labels"] for a in applies)
    secs = sum(a["lua_seconds"] for a in applies)
    with_labels = [a for a in applies if a["labels"]]
    without = [a for a in applies if not a["labels"]]

    def per_apply(xs: list[dict[str, Any]]) -> float | None:
        return sum(a["lua_seconds"] for a in xs) / len(xs) * 1e3 if xs else None

    return {
        "applies": len(applies),
        "predictions": preds,
        "labels": labels,
        "lua_seconds": secs,
        "us_per_event": secs / events * 1e6,
        "ms_per_apply_with_labels": per_apply(with_labels),
        "ms_per_apply_without_labels": per_apply(without),
        "ms_per_apply_max": max((a["lua_seconds"] for a in applies), default=0.0) * 1e3,
        "script_ms_max": max((a["script_seconds"] for a in applies), default=0.0) * 1e3,
        "script_ms_p99": float(np.percentile([a["script_seconds"] for a in applies], 99)) * 1e3
        if applies
        else 0.0,
        "script_us_per_event": sum(a["script_seconds"] for a in applies) / events * 1e6,
        "payload_bytes_per_event": sum(a["payload_bytes"] for a in applies) / events,
        "joined": sum(a["joined"] for a in applies),
        "labels_waiting": sum(a["labels_waiting"] for a in applies),
    }


def without_segments(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The events with their `segments` taken out (the memory figure is for a model
    without segments, whose pending value is `time|version|class|score`)."""
    out = []
    for k, v in pairs:
        e = orjson.loads(v)
        e.pop("segments", None)
        out.append((k, orjson.dumps(e)))
    return out


# ---- verification ----------------------------------------------------------------------
def waiting_count(js: dict[str, int]) -> int:
    """Labels that arrived before their prediction (the counter's name changed once)."""
    return js.get("labels_before_prediction", js.get("labels_waiting", 0))


def verify_labelled(store: Store, model: str, n: int, wres: dict[str, Any]) -> dict[str, Any]:
    js = store.counters.join_stats(model)
    if js.get("joined", 0) != n:
        raise BenchmarkError(
            f"join stats of {model}: joined {js.get('joined', 0)}, expected {n}: {js}"
        )
    if js.get("duplicate_predictions", 0) or js.get("duplicate_labels", 0):
        raise BenchmarkError(f"duplicates reported where there are none: {js}")
    ver = verify(store, model, n)  # window counts sum to n
    profile = store.profiles.load(model)
    assert profile is not None
    windows = store.windows.read(profile, store.windows.starts(model, profile.revision))
    labelled = sum(w.performance.labelled for w in windows if w.performance is not None)
    if labelled != n:
        raise BenchmarkError(f"performance sketches hold {labelled} labelled pairs, expected {n}")
    st = wres["stats"]
    if st["dead"] or st["messages"] != 2 * n:
        raise BenchmarkError(
            f"worker read {st['messages']} of {2 * n} messages, dead letters {st['dead']}"
        )
    left = id_kinds(store.redis, model)["waiting"]
    if left:
        raise BenchmarkError(f"{left} labels still waiting after the join")
    return {**ver, "join_stats": js, "labelled_pairs": labelled, "labels_left_waiting": left}


def verify_live(store: Store, model: str, n: int, wres: dict[str, Any]) -> dict[str, Any]:
    """The live run: 2n predictions counted once, the n labels joined, none waiting."""
    js = store.counters.join_stats(model)
    if js.get("joined", 0) != n or waiting_count(js):
        raise BenchmarkError(f"join stats of {model}: {js}, expected {n} joined, none waiting")
    ver = verify(store, model, 2 * n)
    st = wres["stats"]
    if st["dead"] or st["messages"] != 2 * n:
        raise BenchmarkError(
            f"live worker read {st['messages']} of {2 * n} messages, dead letters {st['dead']}"
        )
    return {**ver, "join_stats": js}


# ---- Redis memory ----------------------------------------------------------------------
def snapshot(r: redis.Redis, model: str, kind: str) -> dict[str, Any]:
    """used_memory, the database's dict overhead, and MEMORY USAGE of every key of the
    model that is not of `kind` (the window state and bookkeeping)."""
    time.sleep(0.3)  # let serverCron finish an incremental rehash of the dicts
    info = r.info("memory")
    stats = r.memory_stats()
    db = r.connection_pool.connection_kwargs.get("db", 0)
    dbstats = stats.get(f"db.{db}", {}) or {}
    other = window = 0
    for k in r.scan_iter(match=f"sd:{{{model}}}:*", count=5000):
        if k.startswith(f"sd:{{{model}}}:{kind}".encode()):
            continue
        b = int(r.memory_usage(k, samples=0) or 0)
        other += b
        if k.startswith(f"sd:{{{model}}}:w:".encode()):
            window += b
    return {
        "used_memory": int(info["used_memory"]),
        "dataset": int(stats.get("dataset.bytes", 0)),
        "clients_normal": int(stats.get("clients.normal", 0)),
        "hashtable_main": int(dbstats.get("overhead.hashtable.main", 0)),
        "hashtable_expires": int(dbstats.get("overhead.hashtable.expires", 0)),
        "other_keys_bytes": other,
        "window_keys_bytes": window,
        "keys": int(r.dbsize()),
    }


def journals(r: redis.Redis, model: str) -> dict[bytes, Shard]:
    """The model's join journals, each replayed."""
    out = {}
    for k in r.scan_iter(match=f"sd:{{{model}}}:jr:*", count=5000):
        shard = out[k] = Shard()
        if not shard.replay(r.lrange(k, 0, -1)):
            raise BenchmarkError(f"{k!r}: the journal does not chain")
    return out


def id_kinds(r: redis.Redis, model: str) -> dict[str, int]:
    """The model's ids in the join's journals by what they are: a pending prediction, a
    joined mark, or a waiting label."""
    out = {"pending": 0, "joined": 0, "waiting": 0}
    for shard in journals(r, model).values():
        for v in shard.records.values():
            out[{"J": "joined", "L": "waiting"}.get(v[:1], "pending")] += 1
    return out


def id_memory(
    r: redis.Redis, model: str, kind: str, expected: int, before: dict[str, Any] | None
) -> dict[str, Any]:
    """Bytes per id of `kind` in the model's journals (`sd:{model}:jr:*` and the heads):
    MEMORY USAGE of every journal over the ids they hold, and (with `before`) the
    used_memory delta minus the model's other keys, per id."""
    replayed = journals(r, model)
    names = list(replayed)
    kinds = id_kinds(r, model)
    if kinds[kind] != expected:
        raise BenchmarkError(f"{kinds[kind]} ids of kind {kind}, expected {expected}: {kinds}")
    ids = sum(kinds.values())
    pipe = r.pipeline(transaction=False)
    for k in names:
        pipe.memory_usage(k, samples=0)
        pipe.llen(k)
        pipe.object("encoding", k)
    pipe.memory_usage(f"sd:{{{model}}}:jr", samples=0)
    res = pipe.execute()
    heads = int(res[-1] or 0)
    res = res[:-1]
    usage = np.array(res[0::3], dtype=np.float64)
    blobs = np.array(res[1::3], dtype=np.float64)
    lens = np.array([len(replayed[k].records) for k in names], dtype=np.float64)
    encodings = Counter(e.decode() for e in res[2::3])
    field, value = next(iter(replayed[names[0]].records.items()))
    out: dict[str, Any] = {
        "kind": kind,
        "keys": ids,
        "buckets": len(names),
        "ids_per_bucket_mean": float(lens.mean()),
        "ids_per_bucket_max": int(lens.max()),
        "blobs_per_shard_mean": float(blobs.mean()),
        "memory_usage_mean": float((usage.sum() + heads) / ids),
        "memory_usage_min": int(usage.min()),
        "memory_usage_max": int(usage.max()),
        "key_length_mean": float(np.mean([len(k) for k in names])),
        "value_length_mean": float(len(value)),
        "encoding": ", ".join(f"{e} {c}" for e, c in encodings.most_common()),
        "example_key": f"{names[0].decode()} {field}",
        "example_value": value,
    }
    if before is not None:
        after = snapshot(r, model, "jr")
        delta = after["used_memory"] - before["used_memory"]
        other = after["other_keys_bytes"] - before["other_keys_bytes"]
        out.update(
            {
                "used_memory_before": before["used_memory"],
                "used_memory_after": after["used_memory"],
                "used_memory_delta": delta,
                "other_keys_delta": other,
                "window_keys_delta": after["window_keys_bytes"] - before["window_keys_bytes"],
                "used_memory_per_key": (delta - other) / expected,
                "hashtable_main_per_key": (after["hashtable_main"] - before["hashtable_main"])
                / expected,
                "clients_normal_delta": after["clients_normal"] - before["clients_normal"],
                "keys_added": after["keys"] - before["keys"],
            }
        )
    return out


def src_digest() -> dict[str, str]:
    """Short digests of the source files the figures depend on (src changes often)."""
    import hashlib

    import streamdrift

    root = Path(streamdrift.__file__).parent
    return {
        f: hashlib.sha256((root / f).read_bytes()).hexdigest()[:10]
        for f in (
            "store/applies.py",
            "store/lua/apply.lua",
            "batch.py",
            "join.py",
            "worker.py",
            "decode.py",
            "sketch.py",
        )
        if (root / f).exists()
    }


# ---- report ----------------------------------------------------------------------------
#: the worker runs, as table columns
RUNS = (
    ("worker_labelled", "flowing"),
    ("worker_predictions_only", "preds only"),
    ("worker_control", "no join"),
    ("worker_labels_only", "labels 1st"),
    ("worker_labels_after", "labels 2nd"),
    ("worker_live", "live"),
)
#: the key kinds, as table columns
KEYS = (
    ("memory_pending", "pending pred"),
    ("memory_waiting_label", "waiting label"),
    ("memory_joined", "joined pred"),
    ("memory_joined_segments", "joined+segs"),
)


#: labels flowing against the same worker on predictions only (issue goal: >= 0.5)
GOAL_LABEL_RATIO = 0.5


def net_rate(w: dict[str, Any]) -> float:
    """Events/s over the phase's time outside `evaluate_due`. An evaluation runs per
    model and interval, not per event: in a phase of a few seconds, whether one or three
    of them land in it moves the rate by a quarter, whatever the events cost."""
    busy = w["seconds"] - w["breakdown_seconds"]["evaluate_due"]
    return float(w["events"] / busy) if busy > 0 else float("nan")


def label_ratios(workers: dict[str, Any]) -> dict[str, tuple[float, float, float | None]]:
    """Labels flowing (predictions + labels, every prediction labelled) against the
    worker on predictions only: the model with its label column (its predictions wait
    in the join's journals) and, unless skipped, the model without one (no join at
    all: the stricter comparison, where the goal applies). (ratio, ratio net of
    evaluation, goal or None)."""
    w = workers["worker_labelled"]
    out: dict[str, tuple[float, float, float | None]] = {}
    for key, name, goal in (
        ("worker_control", "no join", GOAL_LABEL_RATIO),
        ("worker_predictions_only", "preds, join on", None),
    ):
        if key in workers:
            base = workers[key]
            out[name] = (
                w["events_per_s"] / base["events_per_s"],
                net_rate(w) / net_rate(base),
                goal,
            )
    return out


def table(res: dict[str, Any]) -> str:
    b, w = res["baseline"], res["worker_labelled"]
    n, m = res["events"], res["pending"]
    runs = " and ".join(f"{x['events_per_s']:,.0f}" for x in res["baseline_runs"])
    v = res["verify"]
    cols = [(k, name) for k, name in RUNS if k in res]
    lines = [
        f"streamdrift join — {n} predictions + {n} labels; {m} pending; {PARTITIONS} "
        f"partitions, {res['cores']} cores, {res['date']}",
        f"  event times {res['event_age_hours'][1]:.1f} h to {res['event_age_hours'][0]:.2f} h "
        f"ago; label delays {DELAY_SECONDS[0] / 60:.0f} min to {DELAY_SECONDS[1] / 3600:.0f} h; "
        f"labels-flowing events {'carry' if res['labelled_run_has_segments'] else 'have no'} "
        "segments, the other runs none",
        "  src " + " ".join(f"{k}:{v}" for k, v in res["src_digest"].items()),
        "",
        "  throughput (events = messages of both topics)",
        f"    baseline consume+loads, both topics  {b['events_per_s']:>9,.0f} ev/s  "
        f"(faster of {runs})",
        f"    worker, labels flowing               {w['events_per_s']:>9,.0f} ev/s  "
        f"({w['seconds']:.2f} s, {w['batches']} batches, mean {w['mean_batch']:.0f}, "
        f"{w['stalls']} stalls, {w['stats']['columnar_batches']} prediction batches read in "
        f"columns, {w['stats']['shares_ahead']} shares worked out ahead, "
        f"{w['stats']['shares_redone']} again)",
        f"      CPU per event                      {w['cpu_us_per_event']['process']:>9.2f} µs "
        f"worker process + {w['cpu_us_per_event']['redis']:.2f} µs Redis server",
        f"    ratio worker/baseline                {res['ratio']:>9.3f}",
        f"    worker, predictions only (join on)   "
        f"{res['worker_predictions_only']['events_per_s']:>9,.0f} ev/s  "
        f"({res['worker_predictions_only']['stats']['columnar_batches']} of "
        f"{res['worker_predictions_only']['batches']} batches read in columns)",
    ]
    if "worker_control" in res:
        lines.append(
            f"    worker, predictions only, no join    "
            f"{res['worker_control']['events_per_s']:>9,.0f} ev/s  "
            "(same events, model without a label column)"
        )
    for name, (r, net, goal) in res["label_ratios"].items():
        mark = "" if goal is None else f"  (goal >= {goal}: {'met' if r >= goal else 'NOT met'})"
        lines.append(f"    ratio labels flowing / {name:<15}{r:>9.3f}{mark}")
        lines.append(f"      net of evaluation                  {net:>9.3f}")
    lines += [
        f"    worker, labels before predictions    "
        f"{res['worker_labels_only']['events_per_s']:>9,.0f} ev/s  (all wait)",
        f"    worker, labels after predictions     "
        f"{res['worker_labels_after']['events_per_s']:>9,.0f} ev/s  (all join a pending one)",
    ]
    if "worker_live" in res:
        lv = res["worker_live"]
        lines.append(
            f"    worker, live (arrival order)         {lv['events_per_s']:>9,.0f} ev/s  "
            f"(paced at {res['live_rate']:,.0f} msg/s: {res['live']} predictions + labels, "
            f"{lv['batches']} batches, mean {lv['mean_batch']:.0f}; "
            f"{lv['cpu_us_per_event']['redis']:.2f} µs Redis per event)"
        )
    lines.append(
        "    journal shards read whole / compacted / shares worked out again / records held: "
        + ", ".join(
            f"{name} {res[c]['stats'].get('journal_full_reads', 0):,}/"
            f"{res[c]['stats'].get('journal_compactions', 0):,}/"
            f"{res[c]['stats'].get('record_rounds', 0)}/"
            f"{res[c]['stats'].get('records_held', 0):,}"
            for c, name in cols
        )
    )
    lines += [
        f"    verified: joined {v['join_stats'].get('joined', 0)}, of which "
        f"{waiting_count(v['join_stats'])} labels came before their prediction; "
        f"{v['total']} events in {v['windows']} windows, {v['labelled_pairs']} labelled pairs",
        "",
        "  worker time, µs per event      " + "".join(f"{name:>11}" for _, name in cols),
    ]
    for k in w["us_per_event"]:
        lines.append(
            f"    {k:<28}" + "".join(f"{res[c]['us_per_event'][k]:>11.2f}" for c, _ in cols)
        )
    lines.append(
        f"    {'total (wall)':<28}"
        + "".join(f"{1e6 / res[c]['events_per_s']:>11.2f}" for c, _ in cols)
    )
    for k, name in (("process", "CPU: worker process"), ("redis", "CPU: Redis server")):
        lines.append(
            f"    {name:<28}" + "".join(f"{res[c]['cpu_us_per_event'][k]:>11.2f}" for c, _ in cols)
        )
    lines += ["", "  Lua apply (send to answer; the next batch is decoded meanwhile)"]
    for c, name in cols:
        s = res["lua"][c]
        lines.append(
            f"    {name:<11} {s['applies']:>3} applies {s['lua_seconds']:6.3f} s "
            f"{s['us_per_event']:6.2f} µs/event, max {s['ms_per_apply_max']:5.1f} ms per apply, "
            f"payload {s['payload_bytes_per_event']:.0f} B/event; script by Redis's clock "
            f"{s['script_us_per_event']:.2f} µs/event, longest {s['script_ms_max']:.1f} ms "
            f"(p99 {s['script_ms_p99']:.1f})"
        )
    fit = w["lua_fit"]
    if fit:
        lines.append(
            f"    fit over the labels-flowing applies: {fit['us_per_prediction']:.2f} "
            f"µs/prediction + {fit['us_per_label']:.2f} µs/label "
            f"(R² {fit['r2']:.2f}, {fit['applies']} applies)"
        )
    lines += ["", "  Redis commands during the labels-flowing run (all clients)"]
    for name, st in list(w["redis_commands"].items())[:10]:
        lines.append(
            f"    {name:<14} {st['calls']:>9,} calls {st['calls_per_event']:7.3f}/event "
            f"{st['us_per_event']:6.2f} µs/event"
        )
    inner = sum(st["usec"] for k, st in w["redis_commands"].items() if k not in ("evalsha", "eval"))
    lua_usec = w["redis_commands"].get("evalsha", {}).get("usec", 0.0)
    lines.append(
        f"    EVALSHA time minus every other command's: "
        f"{max(lua_usec - inner, 0) / w['events']:.2f} µs/event in the Lua interpreter, "
        "cjson and redis.call (a lower bound)"
    )
    lines += [
        "",
        "  Redis bytes per id             "
        + "".join(f"{name:>15}" for k, name in KEYS if k in res),
    ]

    keys = [(k, name) for k, name in KEYS if k in res]

    def row(label: str, f: Callable[[dict[str, Any]], str]) -> str:
        return f"    {label:<28}" + "".join(f"{f(res[k]):>15}" for k, _ in keys)

    def opt(key: str, fmt: str) -> Callable[[dict[str, Any]], str]:
        return lambda d: format(d[key], fmt) if key in d else "-"

    lines += [
        row("ids", lambda d: f"{d['keys']:,}"),
        row("journal shards", lambda d: f"{d['buckets']:,}"),
        row(
            "ids per shard mean, max",
            lambda d: f"{d['ids_per_bucket_mean']:.0f}, {d['ids_per_bucket_max']}",
        ),
        row("blobs per shard mean", opt("blobs_per_shard_mean", ".1f")),
        row("MEMORY USAGE per id", opt("memory_usage_mean", ".1f")),
        row("used_memory delta per id", opt("used_memory_per_key", ".1f")),
        row("  MEMORY STATS main dict", opt("hashtable_main_per_key", ".1f")),
        row("example value length", opt("value_length_mean", ".0f")),
    ]
    lines += [f"    encodings, {name}: {res[k]['encoding']}" for k, name in keys]
    pm = res["memory_pending"]
    per = pm["used_memory_per_key"]
    lines += [
        f"    goal <= {GOAL_BYTES} B per pending prediction: "
        f"{'met' if per <= GOAL_BYTES else 'NOT met'} ({per:.0f} B by used_memory, "
        f"{pm['memory_usage_mean']:.0f} B by MEMORY USAGE)",
        f"    used_memory {pm['used_memory_before']:,} -> {pm['used_memory_after']:,} B, "
        f"minus {pm['other_keys_delta']:,} B of the model's other keys "
        f"({pm['window_keys_delta']:,} B of windows), over {pm['keys']:,} ids",
        "    (joined pred: used_memory delta from pending to joined, per id)",
    ]
    for k, _ in keys:
        lines.append(f"    {res[k]['example_key']} = {res[k]['example_value']!r}")
    missing = sorted({x for c, _ in cols for x in res[c]["not_instrumented"]})
    if missing:
        lines.append(f"  NOT instrumented (src changed): {', '.join(missing)}")
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------
def register(store: Store, model: str, ref: Path, labels: bool = True) -> None:
    """The synthetic fraud model; without `labels`, the label column is left out of the
    features too (build_profile would otherwise monitor it as a feature)."""
    features = [*synthetic.NUMERIC, "country", "device"]
    profile = build_profile(
        model,
        ref,
        prediction_column="score",
        label_column="is_fraud" if labels else None,
        features=features,
        config=MonitorConfig(window_seconds=WINDOW_SECONDS),
    )
    store.profiles.save(profile)


@contextlib.contextmanager
def cleanup(
    bootstrap: str, stores: list[tuple[Store, str]], topics: list[str], is_embedded: bool
) -> Iterator[None]:
    try:
        yield
    finally:
        if not is_embedded:  # leave a shared broker and Redis as they were
            delete_topics(bootstrap, topics)
            for store, model in stores:
                with contextlib.suppress(Exception):
                    batch = []
                    for k in store.redis.scan_iter(match=f"sd:{{{model}}}:*", count=5000):
                        batch.append(k)
                        if len(batch) >= 5000:
                            store.redis.delete(*batch)
                            batch = []
                    if batch:
                        store.redis.delete(*batch)
                    store.redis.srem(MODELS, model)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise BenchmarkError(what)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="predictions, and as many labels, with labels flowing (100000)",
    )
    ap.add_argument(
        "--pending",
        type=int,
        default=100_000,
        help="predictions without labels, and labels without predictions (100000)",
    )
    ap.add_argument(
        "--no-control",
        action="store_true",
        help="skip the predictions-only run of a model without a label column",
    )
    ap.add_argument(
        "--live",
        type=int,
        default=30_000,
        help="predictions, and as many labels, in arrival order at --live-rate (0 skips)",
    )
    ap.add_argument(
        "--live-rate",
        type=float,
        default=20_000.0,
        help="messages/s of the live run (20000)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument(
        "--profile-out",
        metavar="PATH",
        help="with --profile: also save the cProfile statistics there (pstats, snakeviz)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="run the labels-flowing worker under cProfile (slower)",
    )
    args = ap.parse_args(argv)
    if args.events < 1 or args.pending < 1:
        ap.error("--events and --pending must be positive")
    if args.live < 0 or args.live_rate <= 0:
        ap.error("--live must be 0 or more and --live-rate positive")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    run = uuid.uuid4().hex[:10]
    n, m = args.events, args.pending
    t_start = time.perf_counter()
    workers: dict[str, dict[str, Any]] = {}
    with (
        servers() as (bootstrap, redis_url, is_embedded),
        tempfile.TemporaryDirectory(prefix="sd-bench-join-") as tmp,
    ):
        s1 = settings_for(
            bootstrap,
            db_url(redis_url, DB_LABELLED),
            f"sd-join-{run}",
            f"sd-join-{run}-labels",
            f"bench-join-worker-{run}",
        )
        s2 = settings_for(
            bootstrap,
            db_url(redis_url, DB_PREDICTIONS),
            f"sd-pend-{run}",
            f"sd-pend-{run}-labels",
            f"bench-pend-worker-{run}",
        )
        s3 = settings_for(
            bootstrap,
            db_url(redis_url, DB_LABELS),
            f"sd-wait-{run}",
            f"sd-wait-{run}-labels",
            f"bench-wait-worker-{run}",
        )
        s4 = s2.model_copy(
            update={
                "redis_url": db_url(redis_url, DB_CONTROL),
                "consumer_group": f"bench-ctl-worker-{run}",
            }
        )
        s5 = settings_for(
            bootstrap,
            db_url(redis_url, DB_LIVE),
            f"sd-live-{run}",
            f"sd-live-{run}-labels",
            f"bench-live-worker-{run}",
        )
        m1, m2, m3, m5 = f"bench_{run}", f"bpend_{run}", f"bwait_{run}", f"blive_{run}"
        st1, st2, st3, st4, st5 = (Store(s.redis_url) for s in (s1, s2, s3, s4, s5))
        for st in (st1, st2, st3, st4, st5):
            st.ping()
        topics = sorted({t for s in (s1, s2, s3, s5) for t in topics_of(s)})
        stores = [(st1, m1), (st2, m2), (st3, m3), (st4, m2), (st5, m5)]
        live_verified: dict[str, Any] | None = None
        with cleanup(bootstrap, stores, topics, is_embedded):
            for t in (
                s1.predictions_topic,
                s1.labels_topic,
                s2.predictions_topic,
                s2.labels_topic,
                s3.predictions_topic,
                s3.labels_topic,
            ):
                create_topic(bootstrap, t)
            ref = synthetic.write_reference(Path(tmp) / "reference.csv")
            register(st1, m1, ref)
            register(st2, m2, ref)
            register(st3, m3, ref)
            if not args.no_control:
                register(st4, m2, ref, labels=False)

            # ---- set-up: every timestamp within the last day
            start = time.time() - DAY + MARGIN
            log(
                f"generating and producing {n} predictions + labels, {m} predictions "
                f"(their labels later), {m} labels ..."
            )
            preds, labels = synthetic.labelled_events(
                m1, n, start, SPAN_SECONDS, seed=11, delay_seconds=DELAY_SECONDS
            )
            now = time.time()
            ages = [
                (now - orjson.loads(v)["timestamp"]) / 3600
                for pairs in (preds, labels)
                for _, v in pairs[:: max(n // 1000, 1)] + pairs[-1:]
            ]
            segmented = b'"segments"' in preds[0][1]
            p1 = produce(bootstrap, s1.predictions_topic, preds)
            l1 = produce(bootstrap, s1.labels_topic, labels)
            del preds, labels
            preds2, labels2 = synthetic.labelled_events(
                m2, m, start, SPAN_SECONDS, seed=12, delay_seconds=DELAY_SECONDS
            )
            p2 = produce(bootstrap, s2.predictions_topic, without_segments(preds2))
            del preds2
            _, labels3 = synthetic.labelled_events(
                m3, m, start, SPAN_SECONDS, seed=13, delay_seconds=DELAY_SECONDS
            )
            l3 = produce(bootstrap, s3.labels_topic, labels3)
            del _, labels3
            log(f"  predictions {p1['mean_bytes']:.0f} B, labels {l1['mean_bytes']:.0f} B")

            # ---- 1. labels flowing
            log("baseline: bare consumer of both topics + orjson.loads ...")
            b1 = baseline(s1.model_copy(update={"consumer_group": f"bench-join-b1-{run}"}), 2 * n)
            log(f"  {b1['events_per_s']:,.0f} events/s")
            log("worker, labels flowing" + (" (under cProfile)" if args.profile else "") + " ...")
            w1 = workers["worker_labelled"] = run_worker(
                s1, 2 * n, args.profile_out or args.profile
            )
            log(f"  {w1['events_per_s']:,.0f} events/s")
            ver = verify_labelled(st1, m1, n, w1)
            log("baseline again ...")
            b2 = baseline(s1.model_copy(update={"consumer_group": f"bench-join-b2-{run}"}), 2 * n)
            log(f"  {b2['events_per_s']:,.0f} events/s")
            joined_segments = id_memory(st1.redis, m1, "joined", n, None)

            # ---- 2. pending predictions
            log(f"worker, predictions only ({m}, database +{DB_PREDICTIONS}) ...")
            before = snapshot(st2.redis, m2, "jr")
            w2 = workers["worker_predictions_only"] = run_worker(s2, m)
            log(f"  {w2['events_per_s']:,.0f} events/s")
            pending = id_memory(st2.redis, m2, "pending", m, before)
            verify(st2, m2, m)
            check(
                not w2["stats"]["dead"] and w2["stats"]["counted"] == m,
                f"predictions-only worker: {w2['stats']}",
            )

            # ---- 3. control: the same predictions, no join
            if not args.no_control:
                log(
                    f"worker, the same predictions, model without a label column (database "
                    f"+{DB_CONTROL}) ..."
                )
                w4 = workers["worker_control"] = run_worker(s4, m)
                log(f"  {w4['events_per_s']:,.0f} events/s")
                verify(st4, m2, m)
                check(
                    not any(True for _ in st4.redis.scan_iter(match=f"sd:{{{m2}}}:jr*")),
                    "the control model stored predictions for a join",
                )

            # ---- 4. waiting labels
            log(f"worker, labels without predictions ({m}, database +{DB_LABELS}) ...")
            before = snapshot(st3.redis, m3, "jr")
            w3 = workers["worker_labels_only"] = run_worker(s3, m)
            log(f"  {w3['events_per_s']:,.0f} events/s")
            waiting = id_memory(st3.redis, m3, "waiting", m, before)
            js3 = st3.counters.join_stats(m3)
            check(
                waiting_count(js3) == m and not w3["stats"]["dead"],
                f"labels-only worker: join stats {js3}, {w3['stats']}",
            )

            # ---- 5. the labels of the pending predictions of 2 (the worker of 2's group
            # resumes after the predictions it committed: it reads the labels alone)
            log(f"worker, the {m} labels of the pending predictions ...")
            l2 = produce(bootstrap, s2.labels_topic, labels2)
            del labels2
            before = snapshot(st2.redis, m2, "jr")
            w5 = workers["worker_labels_after"] = run_worker(s2, m)
            log(f"  {w5['events_per_s']:,.0f} events/s")
            joined = id_memory(st2.redis, m2, "joined", m, before)
            js2 = st2.counters.join_stats(m2)
            check(
                js2.get("joined", 0) == m
                and waiting_count(js2) == 0
                and not w5["stats"]["dead"]
                and w5["stats"]["messages"] == m,
                f"labels-after worker: join stats {js2}, {w5['stats']}",
            )

            # ---- 6. live: a model at work, the worker at the head of both topics
            if args.live:
                k = args.live
                for t in (s5.predictions_topic, s5.labels_topic):
                    create_topic(bootstrap, t)
                register(st5, m5, ref)
                old5, labels5 = synthetic.labelled_events(
                    m5, k, start, SPAN_SECONDS, seed=14, delay_seconds=DELAY_SECONDS
                )
                window_now = time.time() // WINDOW_SECONDS * WINDOW_SECONDS
                new5, _ = synthetic.labelled_events(
                    m5, k, window_now, min(time.time() - window_now, 600.0), seed=15
                )
                log(f"worker, live: {k} predictions of the day first ...")
                produce(bootstrap, s5.predictions_topic, old5)
                del old5
                run_worker(s5, k)
                items = live_order(new5, labels5)
                del new5, labels5, _
                log(f"  then {k} new predictions and {k} labels at {args.live_rate:,.0f} msg/s ...")
                ctx = multiprocessing.get_context("fork")
                go = ctx.Event()
                producer = ctx.Process(
                    target=produce_paced,
                    args=(
                        bootstrap,
                        (s5.predictions_topic, s5.labels_topic),
                        items,
                        args.live_rate,
                        go,
                    ),
                )
                producer.start()
                try:
                    w6 = workers["worker_live"] = run_worker(s5, 2 * k, started=go.set)
                finally:
                    producer.join(120)
                    if producer.is_alive():
                        producer.kill()
                del items
                check(producer.exitcode == 0, f"the live producer exited {producer.exitcode}")
                log(f"  {w6['events_per_s']:,.0f} events/s, mean batch {w6['mean_batch']:.0f}")
                live_verified = verify_live(st5, m5, k, w6)

    profile_text = w1.pop("profile_text", None)
    b = max((b1, b2), key=lambda x: x["events_per_s"])
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "events": n,
        "pending": m,
        "partitions": PARTITIONS,
        "window_seconds": WINDOW_SECONDS,
        "delay_seconds": list(DELAY_SECONDS),
        "event_age_hours": [min(ages), max(ages)],
        "labelled_run_has_segments": segmented,
        "embedded_servers": is_embedded,
        "profiled": args.profile,
        "produce": {
            "predictions": p1,
            "labels": l1,
            "pending_predictions": p2,
            "waiting_labels": l3,
            "labels_after": l2,
        },
        "baseline": b,
        "baseline_runs": [b1, b2],
        **workers,
        "ratio": w1["events_per_s"] / b["events_per_s"],
        "label_ratios": label_ratios(workers),
        "lua": {k: lua_summary(x["applies"], x["events"]) for k, x in workers.items()},
        "verify": ver,
        "live": args.live,
        "live_rate": args.live_rate,
        "verify_live": live_verified,
        "memory_pending": pending,
        "memory_waiting_label": waiting,
        "memory_joined": joined,
        "memory_joined_segments": joined_segments,
        "goal_bytes_per_pending": GOAL_BYTES,
        "src_digest": src_digest(),
        "total_seconds": time.perf_counter() - t_start,
    }
    return report(res, args.json, table, profile_text)


if __name__ == "__main__":
    run_main(main)
