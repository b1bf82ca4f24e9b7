"""Event-time watermarks: how far in event time each partition's events of a model have
been applied, so a window is known to be complete even while partitions are read
unevenly (a backlog after an outage: one partition hours ahead of another).

Each apply raises each partition's mark to the latest event time it applied (`ZADD
GT`: a mark never goes back) and notes when (wall clock), in the same script as the
counts (`watermark_ops`): a mark never runs ahead of what Redis holds, nor lags it after
a crash, and costs no round trip of its own. A window is complete once every partition
still moving has passed its end; a partition that has not moved for a while (no traffic
of this model, a topic created again) no longer holds the others back. The marks are
hints for when to judge a window, not counts."""

from __future__ import annotations

from typing import Any

from streamdrift.store.client import RedisClient, text
from streamdrift.store.keys import ModelKeys
from streamdrift.store.window_fields import KeyList, Op


def watermark_ops(keys: KeyList, k: ModelKeys, marks: dict[str, float], now: float) -> list[Op]:
    """The apply script's operations that raise `marks` (fence field -> event time) and
    note `now` as when each partition last moved."""
    if not marks:
        return []
    raised = [x for f, t in marks.items() for x in (f, float(t))]
    seen = [x for f in marks for x in (f, float(now))]
    return [
        [keys.index(k.watermarks), "zmax", raised, 0],
        [keys.index(k.watermarks_seen), "zset", seen, 0],
    ]


class Watermarks:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client

    def hold(self, unread: dict[str, list[str]], now: float) -> None:
        """`unread`: model -> fence fields of partitions the worker owns but has not
        applied any of the model's events from, one round trip for all models. Each gets
        a mark of -inf, as moving now, unless it has a mark already: until such a
        partition is read (or idle), no window is complete, because its events may still
        be in the unread backlog. Without it, the partitions read first would carry
        windows to "complete" with a fraction of their events counted (a false volume
        drop, a performance drop with its inputs unchecked). The marks themselves go with
        the applies (`watermark_ops`)."""
        if not any(unread.values()):
            return
        pipe = self.redis.pipeline(transaction=False)
        for model, fields in unread.items():
            if fields:
                k = ModelKeys(model)
                pipe.zadd(k.watermarks, dict.fromkeys(fields, float("-inf")), nx=True)
                pipe.zadd(k.watermarks_seen, dict.fromkeys(fields, now), nx=True)
        pipe.execute()

    def low(self, model: str, now: float, idle_after: float) -> tuple[float | None, bool]:
        """(the event time every moving partition has passed, whether any partition is
        moving); (None, False) when no partition has a mark yet."""
        k = ModelKeys(model)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(k.watermarks, 0, -1, withscores=True)
        pipe.zrange(k.watermarks_seen, 0, -1, withscores=True)
        marks_raw, seen_raw = pipe.execute()
        marks: dict[str, float] = {text(f): float(s) for f, s in marks_raw}
        seen: dict[str, Any] = {text(f): float(s) for f, s in seen_raw}
        if not marks:
            return None, False
        moving = [t for f, t in marks.items() if now - seen.get(f, 0.0) < idle_after]
        return (min(moving) if moving else max(marks.values())), bool(moving)
