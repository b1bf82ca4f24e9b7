"""When windows are evaluated: the dirty marks every apply leaves, and the lease that
makes one evaluator at a time per model."""

from __future__ import annotations

from typing import Any

from streamdrift.store.client import RedisClient, lua, text
from streamdrift.store.keys import ModelKeys


class Schedule:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._clear = client.register_script(lua("clear_dirty"))
        self._unlock = client.register_script(lua("unlock"))

    def dirty(self, model: str) -> list[tuple[str, float]]:
        """`("<rev>:<start>", time of the last apply)` of windows awaiting evaluation."""
        marks: Any = self.redis.zrange(ModelKeys(model).dirty, 0, -1, withscores=True)
        return [(text(m), float(s)) for m, s in marks]

    def clear(self, model: str, marks: list[tuple[str, float]]) -> None:
        """Clear the marks read, except where an apply touched the window since."""
        if marks:
            args = [x for m, s in marks for x in (m, repr(s))]
            self._clear(keys=[ModelKeys(model).dirty], args=args)

    def try_lock(self, model: str, owner: str, lease_ms: int = 120_000) -> bool:
        return bool(self.redis.set(ModelKeys(model).eval_lock, owner, nx=True, px=lease_ms))

    def unlock(self, model: str, owner: str) -> None:
        self._unlock(keys=[ModelKeys(model).eval_lock], args=[owner])
