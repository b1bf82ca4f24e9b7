"""Which alerts were raised and which reached the broker: each alert once, never lost.

An alert is claimed in Redis (by its deterministic id) before it is published and
marked published once the broker acknowledged it; a claim left unpublished by a worker
that died is re-sent by the next evaluation under the same id."""

from __future__ import annotations

from typing import Any

import orjson

from streamdrift.store.client import RedisClient, lua, text, text_hash
from streamdrift.store.keys import ModelKeys


class AlertLedger:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._claim = client.register_script(lua("claim_alert"))

    def claim(self, model: str, alert_id: str, alert_json: bytes, now: float) -> bool:
        """Record an alert once; False when this alert_id was raised before (by anyone)."""
        k = ModelKeys(model)
        keys = [k.alerts, k.alert_state]
        return bool(self._claim(keys=keys, args=[alert_id, alert_json, f"claimed:{now!r}"]))

    def mark_published(self, model: str, alert_ids: list[str], now: float) -> None:
        if alert_ids:
            self.redis.hset(
                ModelKeys(model).alert_state,
                mapping={a: f"published:{now!r}" for a in alert_ids},
            )

    def prune(self, model: str, older_than: float, now: float) -> int:
        """Forget alerts published before `older_than`, at most once an hour: the windows
        they were raised for are gone, so nothing can raise them again, and the alert
        hashes would otherwise grow for ever. Returns how many went."""
        k = ModelKeys(model)
        last = self.redis.hget(k.sweep, "alerts_pruned_at")
        if last is not None and now - float(last) < 3600:
            return 0
        self.redis.hset(k.sweep, "alerts_pruned_at", repr(now))
        old = []
        for aid, state in self.redis.hscan_iter(k.alert_state, count=1000):
            kind, _, at = text(state).partition(":")
            if kind == "published" and float(at) < older_than:
                old.append(aid)
        pipe = self.redis.pipeline(transaction=False)
        for i in range(0, len(old), 1000):
            pipe.hdel(k.alerts, *old[i : i + 1000])
            pipe.hdel(k.alert_state, *old[i : i + 1000])
        pipe.execute()
        return len(old)

    def unpublished(self, model: str, older_than: float) -> list[bytes]:
        """Alerts claimed by a worker that died before publishing them."""
        k = ModelKeys(model)
        stale = []
        for aid, state in text_hash(self.redis.hgetall(k.alert_state)).items():
            kind, _, at = state.partition(":")
            if kind == "claimed" and float(at) < older_than:
                stale.append(aid)
        if not stale:
            return []
        found: list[Any] = self.redis.hmget(k.alerts, stale)
        return [a if isinstance(a, bytes) else text(a).encode() for a in found if a is not None]

    def all(self, model: str) -> list[dict[str, Any]]:
        raw = self.redis.hvals(ModelKeys(model).alerts)
        return sorted((orjson.loads(a) for a in raw), key=lambda a: a["created_at"])
