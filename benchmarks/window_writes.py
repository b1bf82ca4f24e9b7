"""What a window's integer counters cost Redis to add, in three forms, on the counter adds
of real batches: one `HINCRBY` per field (how `apply.lua` adds them), one `BITFIELD ...
INCRBY` per key (packed counters), and one `RPUSH` per key of the batch's deltas as one
opaque blob (a journal of deltas, summed by the reader).

Run:  .venv/bin/python benchmarks/window_writes.py [--events N] [--repeat R] [--json]

Why: the label path's Redis time is mostly the windows' fields (`join.py`: ~0.6 `HINCRBY`
per event and the Lua interpreter around each call). Packing a window's counters into one
string per window and adding them with one `BITFIELD` call was the next step named for
it; this measures whether it pays before the layout is changed. Each form runs in a Lua
script as the apply does (the payload decoded by cjson, the keys in KEYS), on the integer
adds (`incr` ops) of the same batches that `batch_cost.py` builds (the 22-feature fraud
model, 5,000 events per batch, 4-5 hourly windows), R times each, in a Redis of its own.
The three must leave the same counts (the hashes' fields, the strings' slots, the blobs
summed), or the run fails (exit 1). Figures: Redis's own time per call (`INFO
commandstats`, `EVALSHA`), per counter added and per event.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from batch_cost import BATCH, MAX_BYTES, MODEL, _setup

from streamdrift.batch import BatchLogic
from streamdrift.decode import decode_labels, decode_predictions
from streamdrift.embedded import free_port, start_redis, wait_for_port
from streamdrift.store import Applies, ModelHead

HINCRBY = """local p = cjson.decode(ARGV[1])
for _, op in ipairs(p) do
  local k, d = KEYS[op[1]], op[2]
  for j = 1, #d, 2 do redis.call('HINCRBY', k, d[j], d[j + 1]) end
end
return 1"""

BITFIELD = """local p = cjson.decode(ARGV[1])
for _, op in ipairs(p) do
  local d, args = op[2], {}
  for j = 1, #d, 2 do
    args[#args + 1] = 'INCRBY'; args[#args + 1] = 'i64'
    args[#args + 1] = '#' .. d[j]; args[#args + 1] = d[j + 1]
  end
  redis.call('BITFIELD', KEYS[op[1]], unpack(args))
end
return 1"""

RPUSH = """for i = 1, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[i]) end
return 1"""

FORMS = {"HINCRBY per field": HINCRBY, "BITFIELD per key": BITFIELD, "RPUSH a blob per key": RPUSH}


def batches_of_adds(events: int, tmp: Path) -> tuple[list[list[tuple[str, dict[str, int]]]], int]:
    """Each batch's integer adds as (key, {field: delta}), from the apply's own payload."""
    profile, batches = _setup(events, tmp)
    logic = BatchLogic("predictions", "labels", lambda t, p: f"{t}:{p}")
    payload = Applies.__new__(Applies)  # only its request(): no script, no Redis
    no_labels = decode_labels([], MAX_BYTES)
    head = ModelHead(profile.revision, {})
    out = []
    for b in batches:
        d = decode_predictions(b, MAX_BYTES)
        share = logic.share(d, no_labels, MODEL, head, profile, [], d.last_offsets)
        keys, args, _ = payload.request(share.request)
        adds: dict[str, dict[str, int]] = {}
        for op in orjson.loads(args[0])["ops"]:
            if op[1] == "incr":
                data = op[2]
                target = adds.setdefault(keys[op[0] - 1], {})
                for j in range(0, len(data), 2):
                    target[data[j]] = target.get(data[j], 0) + data[j + 1]
        out.append(list(adds.items()))
    return out, sum(map(len, batches))


def run(events: int, repeat: int, tmp: Path) -> dict[str, Any]:
    batches, n = batches_of_adds(events, tmp)
    # the packed layout: each key's fields in a fixed order, as a profile would fix them
    slots: dict[str, dict[str, int]] = {}
    for batch in batches:
        for key, adds in batch:
            for f in adds:
                slots.setdefault(key, {}).setdefault(f, len(slots[key]))
    adds_per_pass = sum(len(a) for batch in batches for _, a in batch)
    port = free_port()
    proc = start_redis(port, tmp / "redis")
    try:
        wait_for_port(port, proc, "redis-server")
        r = redis.Redis(port=port)
        per_form: dict[str, dict[str, float]] = {}
        for db, (name, src) in enumerate(FORMS.items()):
            r.execute_command("SELECT", db)  # the connection pool's only connection
            sha = r.script_load(src)
            calls = []
            for batch in batches:
                keys = [k for k, _ in batch]
                if name.startswith("RPUSH"):
                    blobs = []
                    for k, a in batch:
                        v = np.zeros(len(slots[k]), dtype=np.int64)
                        v[[slots[k][f] for f in a]] = list(a.values())
                        blobs.append(v.tobytes())
                    calls.append((keys, blobs))
                else:
                    named = name.startswith("HINCRBY")  # else the slot numbers
                    ops = [
                        [i + 1, [x for f, d in a.items() for x in (f if named else slots[k][f], d)]]
                        for i, (k, a) in enumerate(batch)
                    ]
                    calls.append((keys, [json.dumps(ops)]))
            r.config_resetstat()
            for _ in range(repeat):
                for keys, argv in calls:
                    r.evalsha(sha, len(keys), *keys, *argv)
            us = r.info("commandstats")["cmdstat_evalsha"]["usec"]
            per_form[name] = {
                "ms_per_apply": us / (repeat * len(calls)) / 1000,
                "ns_per_counter": us / (repeat * adds_per_pass) * 1000,
                "us_per_event": us / (repeat * n),
            }
        same = _same_counts(r, slots, repeat)
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "events": n,
        "batches": len(batches),
        "counter_adds_per_event": adds_per_pass / n,
        "keys_per_batch": sum(map(len, batches)) / len(batches),
        "forms": per_form,
        "same_counts": same,
    }


def _same_counts(r: redis.Redis, slots: dict[str, dict[str, int]], repeat: int) -> bool:
    for key, layout in slots.items():
        r.execute_command("SELECT", 0)
        fields = {k.decode(): int(v) for k, v in r.hgetall(key).items()}
        want = np.zeros(len(layout), dtype=np.int64)
        want[[layout[f] for f in fields]] = list(fields.values())
        r.execute_command("SELECT", 1)
        packed = np.frombuffer(r.get(key) or b"", dtype=">i8")
        r.execute_command("SELECT", 2)
        blobs = [np.frombuffer(b, dtype=np.int64) for b in r.lrange(key, 0, -1)]
        folded = np.sum(blobs, axis=0) if blobs else np.zeros(0, dtype=np.int64)
        if not (
            np.array_equal(np.pad(packed, (0, len(want) - len(packed))), want)
            and np.array_equal(folded, want)
            and want.sum() > 0
        ):
            return False
    return bool(slots)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events (100000)")
    ap.add_argument("--repeat", type=int, default=5, help="passes over the batches (5)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    if args.events < BATCH or args.repeat < 1:
        ap.error(f"--events must be at least {BATCH}, --repeat at least 1")
    with tempfile.TemporaryDirectory(prefix="sd-bench-writes-") as tmp:
        res = run(args.events, args.repeat, Path(tmp))
    if args.json:
        print(json.dumps(res))
    else:
        print(
            f"window counter adds of {res['events']} events in {res['batches']} batches: "
            f"{res['counter_adds_per_event']:.3f} adds per event, "
            f"{res['keys_per_batch']:.0f} keys per batch"
        )
        for name, v in res["forms"].items():
            print(
                f"  {name:24s} {v['ms_per_apply']:7.2f} ms per batch  "
                f"{v['ns_per_counter']:6.0f} ns per counter  {v['us_per_event']:6.3f} µs per event"
            )
        print(f"  same counts in all three: {res['same_counts']}")
    return 0 if res["same_counts"] else 1


if __name__ == "__main__":
    sys.exit(main())
