"""Topic incarnations: which life of a topic the fences belong to.

A topic deleted and created again (or a broker that lost its log) starts at offset 0.
Fences of the old topic would then drop the new events as re-deliveries, silently. So
every fence names the topic's incarnation: the broker's topic id where it has one
(Kafka 2.8+, and Tansu), else an id of streamdrift's own, renewed when a partition's
fence lies beyond the end of its log (the log was reset under it).

The incarnation in force is recorded in Redis (`sd:{#}:topics`); the worker that records
a change is the one that raises the ops alert, so a fleet raises it once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from streamdrift.store import Store, fence_field

log = logging.getLogger("streamdrift.topics")

#: the id a broker without topic ids reports (base64 of sixteen zero bytes)
_NO_ID = {"", "AAAAAAAAAAAAAAAAAAAAAA", "None"}


@dataclass(frozen=True, slots=True)
class Recreated:
    """A topic found under a new incarnation."""

    topic: str
    old: str
    new: str
    why: str


def broker_ids(admin: AdminClient, topics: list[str], timeout: float = 10.0) -> dict[str, str]:
    """The broker's topic id of each topic that has one; topics it does not know (or a
    broker without ids) are left out. Raises KafkaException when the broker is away."""
    out: dict[str, str] = {}
    futures = admin.describe_topics(TopicCollection(topics), request_timeout=timeout)
    for topic, fut in futures.items():
        try:
            desc = fut.result(timeout=timeout)
        except KafkaException as e:
            if "UNKNOWN_TOPIC" in str(e):
                continue
            raise
        tid = str(desc.topic_id) if desc.topic_id is not None else ""
        if tid not in _NO_ID:
            out[topic] = tid
    return out


class Incarnations:
    """The incarnation of each of a worker's topics, kept in step with the broker."""

    def __init__(self, store: Store, admin: AdminClient, topics: list[str]) -> None:
        self.store = store
        self.admin = admin
        self.topics = topics
        self.current: dict[str, str] = {}

    def field(self, topic: str, partition: int) -> str:
        return fence_field(topic, self.current[topic], partition)

    def refresh(self) -> list[Recreated]:
        """Read the broker's ids and Redis's record; returns the topics whose
        incarnation changed since Redis last recorded it (each recorded now)."""
        ids = broker_ids(self.admin, self.topics)
        recorded = self.store.fences.incarnations()
        changes = []
        for topic in self.topics:
            old = recorded.get(topic)
            new = ids.get(topic) or old or _own_id()
            if old == new:
                self.current[topic] = new
                continue
            if self.store.fences.record_incarnation(topic, old, new):
                if old is None:
                    self.store.fences.adopt_legacy(self.store.profiles.models(), topic, new)
                else:
                    why = "the broker reports a new topic id"
                    changes.append(Recreated(topic, old, new, why))
            self.current[topic] = self.store.fences.incarnations().get(topic, new)
        if changes:
            self.store.fences.forget(self.store.profiles.models(), dict(self.current))
        return changes

    def reset(self, topic: str, why: str) -> Recreated | None:
        """A topic without broker ids whose log was reset under its fences: a new
        incarnation of our own. None when another worker renewed it first."""
        old = self.current.get(topic)
        new = _own_id()
        if not self.store.fences.record_incarnation(topic, old, new):
            self.current[topic] = self.store.fences.incarnations().get(topic, new)
            return None
        self.current[topic] = new
        self.store.fences.forget(self.store.profiles.models(), dict(self.current))
        return Recreated(topic, old or "", new, why)

    def has_broker_ids(self, topic: str) -> bool:
        return not self.current.get(topic, OWN).startswith(OWN)


#: the prefix of incarnation ids of streamdrift's own (a broker's are base64 topic ids)
OWN = "own-"


def _own_id() -> str:
    """An incarnation id of our own, for a broker without topic ids."""
    return OWN + uuid.uuid4().hex[:12]
