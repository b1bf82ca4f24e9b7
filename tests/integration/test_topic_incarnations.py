"""Topic incarnations in a real Redis, with the broker's answer given by a plain object:
a broker with topic ids (a new id is a new topic), and one without (streamdrift's own ids,
renewed when a log was reset under its fences)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

import pytest

from streamdrift.store import Fence
from streamdrift.store.keys import ModelKeys
from streamdrift.topics import OWN, Incarnations

pytestmark = pytest.mark.integration


@dataclass
class _Description:
    topic_id: str | None


class Broker:
    """What `AdminClient.describe_topics` answers, set by the test."""

    def __init__(self, ids: dict[str, str | None]) -> None:
        self.ids = ids

    def describe_topics(self, topics, request_timeout: float = 0) -> dict[str, Future]:
        out = {}
        for t in topics.topic_names:
            f: Future = Future()
            f.set_result(_Description(self.ids.get(t)))
            out[t] = f
        return out


def _fences(store, model: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in store.redis.hgetall(ModelKeys(model).offsets).items()}


def test_a_new_topic_id_is_a_new_incarnation_and_the_old_fences_go(store, model_id):
    topic = f"preds-{model_id}"
    store.redis.sadd("sd:{#}:models", model_id)
    store.redis.set(ModelKeys(model_id).revision, 1)
    store.redis.hset(ModelKeys(model_id).offsets, f"{topic}:0", 41)  # from before incarnations
    broker = Broker({topic: "AaIrmDtdcdCJZlvhGVfhRQ"})
    inc = Incarnations(store, broker, [topic])  # type: ignore[arg-type]
    assert inc.refresh() == []
    assert inc.field(topic, 0) == f"{topic}@AaIrmDtdcdCJZlvhGVfhRQ:0"
    assert _fences(store, model_id) == {f"{topic}@AaIrmDtdcdCJZlvhGVfhRQ:0": 41}  # adopted
    assert inc.has_broker_ids(topic)

    broker.ids[topic] = "AaIrmD9Ye0OBF1nteP7czA"  # deleted and created again
    (change,) = inc.refresh()
    assert (change.topic, change.old, change.new) == (
        topic,
        "AaIrmDtdcdCJZlvhGVfhRQ",
        "AaIrmD9Ye0OBF1nteP7czA",
    )
    assert _fences(store, model_id) == {}
    # a second worker sees it recorded already: no second alert
    other = Incarnations(store, broker, [topic])  # type: ignore[arg-type]
    assert other.refresh() == []
    assert other.field(topic, 3) == f"{topic}@AaIrmD9Ye0OBF1nteP7czA:3"


def test_a_broker_without_ids_gets_ids_of_our_own_renewed_on_a_reset(store, model_id):
    topic = f"preds-{model_id}"
    store.redis.sadd("sd:{#}:models", model_id)
    store.redis.set(ModelKeys(model_id).revision, 1)
    broker = Broker({topic: None})
    inc = Incarnations(store, broker, [topic])  # type: ignore[arg-type]
    assert inc.refresh() == []
    first = inc.field(topic, 0)
    assert first.startswith(f"{topic}@{OWN}") and not inc.has_broker_ids(topic)
    assert Incarnations(store, broker, [topic]).refresh() == []  # kept, not renewed
    store.fences.advance({model_id: [Fence(first, -1, 500)]})
    change = inc.reset(topic, "fence 500 beyond the log's end 20")
    assert change is not None and change.old == first.split("@")[1].split(":")[0]
    assert inc.field(topic, 0) != first
    assert _fences(store, model_id) == {}
    # another worker noticing the same reset a moment later renews nothing more
    late = Incarnations(store, broker, [topic])  # type: ignore[arg-type]
    late.current[topic] = change.old
    assert late.reset(topic, "the same reset") is None
    assert late.field(topic, 0) == inc.field(topic, 0)
