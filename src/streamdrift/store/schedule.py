"""When windows are evaluated: the dirty marks every apply leaves, and the lease that
makes one evaluator at a time per model.

The lease is short (`LEASE_MS`) and renewed while its evaluation runs: a worker killed
mid-evaluation holds every other evaluation of the model back only that long, while an
evaluation of many windows keeps its lease however long it takes. An evaluator whose
lease lapsed anyway commits nothing (`commit_episodes.lua`)."""

from __future__ import annotations

from typing import Any

from streamdrift.store.client import RedisClient, lua, text
from streamdrift.store.keys import ModelKeys

#: the evaluation lease, renewed every `RENEW_SECONDS` of an evaluation
LEASE_MS = 20_000
RENEW_SECONDS = 2.0


class Schedule:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._clear = client.register_script(lua("clear_dirty"))
        self._unlock = client.register_script(lua("unlock"))
        self._renew = client.register_script(lua("renew_lease"))

    def dirty(self, model: str) -> list[tuple[str, float]]:
        """`("<rev>:<start>", time of the last apply)` of windows awaiting evaluation."""
        marks: Any = self.redis.zrange(ModelKeys(model).dirty, 0, -1, withscores=True)
        return [(text(m), float(s)) for m, s in marks]

    def clear(self, model: str, marks: list[tuple[str, float]]) -> None:
        """Clear the marks read, except where an apply touched the window since."""
        if marks:
            args = [x for m, s in marks for x in (m, repr(s))]
            self._clear(keys=[ModelKeys(model).dirty], args=args)

    def try_lock(self, model: str, owner: str, lease_ms: int = LEASE_MS) -> bool:
        return bool(self.redis.set(ModelKeys(model).eval_lock, owner, nx=True, px=lease_ms))

    def renew(self, model: str, owner: str, lease_ms: int = LEASE_MS) -> bool:
        """Extend the lease if `owner` still holds it; False if it lapsed."""
        return bool(self._renew(keys=[ModelKeys(model).eval_lock], args=[owner, lease_ms]))

    def unlock(self, model: str, owner: str) -> None:
        self._unlock(keys=[ModelKeys(model).eval_lock], args=[owner])
