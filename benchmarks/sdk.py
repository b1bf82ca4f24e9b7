"""The SDK's publish rate against a bare confluent-kafka producer of the same bytes.

Run:  .venv/bin/python benchmarks/sdk.py [--events N] [--rounds R] [--json]

Starts an embedded Tansu broker (throughput.servers; or uses STREAMDRIFT_KAFKA_BOOTSTRAP
and STREAMDRIFT_REDIS_URL when both are set) and a 4-partition topic per run. N
synthetic 22-feature prediction events (synthetic.prediction_events, ~490 bytes) are
made once as Python values (prediction_id, features, prediction, timestamp) and once as
the JSON bytes the SDK writes for them (`Monitor.encode_prediction`), before any timing.

- bare: a confluent-kafka `Producer` sends the bytes: `produce(topic, value, key)` and
  `poll(0)` per event (a full queue is waited out with `poll(0.05)`), then `flush()`.
- sdk: `Monitor.log_prediction(...)` per event (contract check, orjson, produce; a poll
  every `POLL_EVERY`th call), then `flush()`.
- encode only: what any JSON client must do at least, the floor under the SDK: the
  event dict built and `orjson.dumps`ed, `produce`, a poll every `POLL_EVERY`th event, no
  check at all. sdk/encode is what the contract checks and the API cost.

Both use exactly the SDK's producer settings (`producer_settings`: linger.ms 5, acks all,
no compression, only failed deliveries reported, librdkafka's log into Python logging)
and the same topic. The runs alternate (bare, sdk, encode, bare, ...), R rounds; the best
of each kind counts. The rate is events over the time from the first call to the end of
`flush()`; the ratio sdk/bare is the figure (goal >= 0.7). Every message must be
delivered, or the run fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Producer
from throughput import create_topic, delete_topics, log, run_main, servers

from streamdrift import synthetic
from streamdrift.client import Monitor
from streamdrift.client.monitor import POLL_EVERY, producer_settings

QUEUE = {"queue.buffering.max.messages": 500_000, "queue.buffering.max.kbytes": 1024 * 1024}


def events(n: int) -> list[tuple[str, dict[str, Any], Any, float]]:
    start = time.time() - 4 * 3600
    out = []
    for _, value in synthetic.prediction_events("bench", n, start, 4 * 3600, seed=3):
        e = orjson.loads(value)
        out.append((e["prediction_id"], e["features"], e["prediction"], e["timestamp"]))
    return out


def run_bare(bootstrap: str, topic: str, payloads: list[tuple[str, bytes]]) -> float:
    failed = []
    producer = Producer(
        {
            **producer_settings(bootstrap, QUEUE),
            "on_delivery": lambda err, msg: failed.append(err) if err else None,
        }
    )
    producer.list_topics(topic, timeout=10)  # connected and the topic known, as for the SDK
    produce, poll = producer.produce, producer.poll
    t0 = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.05)
        poll(0)
    left = producer.flush(60)
    elapsed = time.perf_counter() - t0
    if left or failed:
        raise SystemExit(f"bare producer: {left} undelivered, {len(failed)} failed")
    return elapsed


def run_sdk(bootstrap: str, topic: str, evs: list[tuple[str, dict[str, Any], Any, float]]) -> float:
    failed: list[Any] = []
    monitor = Monitor(
        bootstrap=bootstrap,
        model_id="bench",
        version="1.0.0",
        predictions_topic=topic,
        on_error=lambda err, key: failed.append(err),
        **QUEUE,
    )
    monitor._producer.list_topics(topic, timeout=10)
    log_prediction = monitor.log_prediction
    t0 = time.perf_counter()
    for pid, features, prediction, ts in evs:
        log_prediction(pid, features, prediction, ts)
    left = monitor.flush(60)
    elapsed = time.perf_counter() - t0
    if left or failed:
        raise SystemExit(f"sdk: {left} undelivered, {len(failed)} failed")
    return elapsed


def run_encode_only(
    bootstrap: str, topic: str, evs: list[tuple[str, dict[str, Any], Any, float]]
) -> float:
    failed = []
    producer = Producer(
        {
            **producer_settings(bootstrap, QUEUE),
            "on_delivery": lambda err, msg: failed.append(err) if err else None,
        }
    )
    producer.list_topics(topic, timeout=10)
    produce, poll, dumps = producer.produce, producer.poll, orjson.dumps
    t0 = time.perf_counter()
    for i, (pid, features, prediction, ts) in enumerate(evs):
        value = dumps(
            {
                "prediction_id": pid,
                "model_id": "bench",
                "model_version": "1.0.0",
                "timestamp": ts,
                "features": features,
                "prediction": prediction,
            }
        )
        while True:
            try:
                produce(topic, value, pid)
                break
            except BufferError:
                poll(0.05)
        if i % POLL_EVERY == 0:
            poll(0)
    left = producer.flush(60)
    elapsed = time.perf_counter() - t0
    if left or failed:
        raise SystemExit(f"encode-only producer: {left} undelivered, {len(failed)} failed")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    evs = events(args.events)
    encoder = Monitor("127.0.0.1:1", "bench", version="1.0.0")  # encodes; never sends
    payloads = [(pid, encoder.encode_prediction(pid, f, p, ts)) for pid, f, p, ts in evs]
    size = sum(len(v) for _, v in payloads) / len(payloads)
    bare: list[float] = []
    sdk: list[float] = []
    floor: list[float] = []
    with servers() as (bootstrap, _redis, _embedded):
        topic = f"sd-bench-sdk-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic)
        try:
            for r in range(args.rounds):
                bare.append(args.events / run_bare(bootstrap, topic, payloads))
                sdk.append(args.events / run_sdk(bootstrap, topic, evs))
                floor.append(args.events / run_encode_only(bootstrap, topic, evs))
                log(
                    f"round {r + 1}: bare {bare[-1]:,.0f}/s, sdk {sdk[-1]:,.0f}/s, "
                    f"encode only {floor[-1]:,.0f}/s"
                )
        finally:
            delete_topics(bootstrap, [topic])
    result = {
        "events": args.events,
        "rounds": args.rounds,
        "event_bytes": round(size),
        "bare_events_per_s": round(max(bare)),
        "sdk_events_per_s": round(max(sdk)),
        "encode_only_events_per_s": round(max(floor)),
        "ratio": round(max(sdk) / max(bare), 3),
        "encode_only_ratio": round(max(floor) / max(bare), 3),
        "sdk_to_encode_only": round(max(sdk) / max(floor), 3),
        "bare_all": [round(x) for x in bare],
        "sdk_all": [round(x) for x in sdk],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    table = (
        f"{args.events:,} events of {size:.0f} bytes, best of {args.rounds} alternating rounds\n"
        f"  bare confluent-kafka producer  {result['bare_events_per_s']:>10,} events/s\n"
        f"  streamdrift.client.Monitor     {result['sdk_events_per_s']:>10,} events/s\n"
        f"  orjson.dumps + produce only    {result['encode_only_events_per_s']:>10,} events/s\n"
        f"  ratio sdk/bare                 {result['ratio']:>10}  (goal >= 0.7)\n"
        f"  ratio encode only/bare         {result['encode_only_ratio']:>10}  (any JSON client)\n"
        f"  ratio sdk/encode only          {result['sdk_to_encode_only']:>10}"
    )
    if args.json:
        log(table)
        print(orjson.dumps(result).decode())
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    run_main(main)
