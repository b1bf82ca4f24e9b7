"""`streamdrift dlq replay`: dead letters sent back to the topic they came from, once
their cause is fixed (a model registered, a profile restored, a bug fixed).

Each dead letter is replayed exactly once, however often the command runs: the ledger
in Redis (`store.replays`) marks it pending before it is produced and done once the
broker acknowledged it. A run that died in between leaves pending marks; the next run
first looks for those dead letters in the source topics (every replayed message carries
the dead letter's coordinates in the header `streamdrift.replay_of`) and produces only
the ones it does not find. The workers count a replayed event like any other."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaException, Producer

from streamdrift import kafka_io
from streamdrift.config import Settings
from streamdrift.errors import ConnectionProblem
from streamdrift.store import Store
from streamdrift.topic_reader import read_messages

REPLAY_OF = "streamdrift.replay_of"


@dataclass
class ReplayReport:
    """What a replay found and did."""

    matched: int = 0
    replayed: int = 0
    already: int = 0
    #: dead letters kept only in part (too large for the producer): cannot be replayed
    truncated: int = 0
    #: pending marks of an interrupted replay found in the source topics
    recovered: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def _headers(msg: object) -> dict[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}  # type: ignore[attr-defined]


def _coordinates(msg: object) -> str:
    return f"{msg.topic()}:{msg.partition()}:{msg.offset()}"  # type: ignore[attr-defined]


def _source_topic(headers: dict[str, str], settings: Settings, dlq_topic: str) -> str:
    source = headers.get("streamdrift.source", "")
    topic = source.rsplit(":", 2)[0] if source.count(":") >= 2 else ""
    if topic in (settings.predictions_topic, settings.labels_topic):
        return topic
    return dlq_topic.removesuffix(".dlq")


def _recover(settings: Settings, store: Store) -> int:
    """Settle the pending marks an interrupted replay left: those found in the source
    topics are done; the others are forgotten, to be produced again."""
    pending = store.replays.pending()
    if not pending:
        return 0
    found: dict[str, str] = {}
    topics = [settings.predictions_topic, settings.labels_topic]
    for msg in read_messages(settings, topics):
        coord = _headers(msg).get(REPLAY_OF)
        if coord in pending:
            found[coord] = _coordinates(msg)
    store.replays.mark_done(found)
    store.replays.forget([c for c in pending if c not in found])
    return len(found)


def replay_dead_letters(
    settings: Settings,
    store: Store,
    reason: str | None = None,
    model: str | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Produce the matching dead letters to their source topics, each once."""
    report = ReplayReport()
    if not dry_run:
        report.recovered = _recover(settings, store)
    done = store.replays.states()
    topics = [
        settings.dlq_topic(settings.predictions_topic),
        settings.dlq_topic(settings.labels_topic),
    ]
    chosen: list[tuple[str, str, object]] = []
    for msg in read_messages(settings, topics):
        headers = _headers(msg)
        if reason is not None and headers.get("streamdrift.reason") != reason:
            continue
        if model is not None and headers.get("streamdrift.model_id") != model:
            continue
        report.matched += 1
        coord = _coordinates(msg)
        if coord in done:
            report.already += 1
            continue
        if "streamdrift.truncated_from" in headers:
            report.truncated += 1
            continue
        chosen.append((coord, _source_topic(headers, settings, msg.topic()), msg))
    if dry_run:
        report.replayed = len(chosen)
        return report
    producer = kafka_io.producer(settings)
    for i in range(0, len(chosen), 1000):
        chunk = chosen[i : i + 1000]
        store.replays.mark_pending([c for c, _, _ in chunk], time.time())
        landed, failed = _produce(producer, chunk, report)
        store.replays.mark_done(landed)
        report.replayed += len(landed)
        if failed or len(landed) < len(chunk):
            raise ConnectionProblem(
                f"{len(chunk) - len(landed)} dead letter(s) not acknowledged by the broker "
                f"({failed[:1]})",
                "run the replay again once the broker is back: nothing is produced twice",
            )
    return report


def _produce(
    producer: Producer, chunk: list[tuple[str, str, Any]], report: ReplayReport
) -> tuple[dict[str, str], list[str]]:
    """Produce one chunk and wait for the broker: where each landed, and the failures."""
    landed: dict[str, str] = {}
    failed: list[str] = []

    def on_delivery(coord: str, err: object, msg: object) -> None:
        if err is None:
            landed[coord] = _coordinates(msg)
        else:
            failed.append(str(err))

    for coord, topic, msg in chunk:
        while True:
            try:
                producer.produce(
                    topic,
                    key=msg.key(),
                    value=msg.value(),
                    headers=[(REPLAY_OF, coord.encode())],
                    on_delivery=partial(on_delivery, coord),
                )
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as e:
                raise ConnectionProblem(
                    f"cannot produce to {topic}: {e}", "check the broker"
                ) from None
        report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
    producer.flush(30)
    return landed, failed
