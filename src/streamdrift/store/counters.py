"""Counters that are not window state: dead letters by reason (per model, and for events
that name no registered model), and the join's counters."""

from __future__ import annotations

from collections import Counter

from streamdrift.store.client import RedisClient, int_hash
from streamdrift.store.keys import UNROUTED_DLQ, ModelKeys


class Counters:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client

    def count_unrouted(self, reasons: Counter[str]) -> None:
        """Bad events with no registered model: counted globally (at least once)."""
        if reasons:
            pipe = self.redis.pipeline(transaction=False)
            for r, c in reasons.items():
                pipe.hincrby(UNROUTED_DLQ, r, c)
            pipe.execute()

    def unrouted_dlq(self) -> dict[str, int]:
        return int_hash(self.redis.hgetall(UNROUTED_DLQ))

    def model_dlq(self, model: str) -> dict[str, int]:
        return int_hash(self.redis.hgetall(ModelKeys(model).dlq))

    def join_stats(self, model: str) -> dict[str, int]:
        return int_hash(self.redis.hgetall(ModelKeys(model).join))
