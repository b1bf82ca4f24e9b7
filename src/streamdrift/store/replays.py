"""The ledger of dead letters sent back to their topics (`streamdrift dlq replay`).

A dead letter is marked pending before it is produced again and done once the broker
acknowledged it, with where it landed. A replay that died in between leaves pending
marks; the next one looks for them in the source topics (each replayed message carries
the dead letter's coordinates in a header) before producing anything, so a dead letter
is replayed exactly once however often the command runs."""

from __future__ import annotations

from streamdrift.store.client import RedisClient, text_hash
from streamdrift.store.keys import REPLAYS

#: marks are written in chunks of this many
CHUNK = 1000


class ReplayLedger:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client

    def states(self) -> dict[str, str]:
        """Every dead letter replayed or being replayed: coordinates -> state."""
        return text_hash(self.redis.hgetall(REPLAYS))

    def pending(self) -> dict[str, float]:
        """Dead letters marked pending: coordinates -> when."""
        out = {}
        for coord, state in self.states().items():
            kind, _, at = state.partition(":")
            if kind == "pending":
                out[coord] = float(at)
        return out

    def mark_pending(self, coords: list[str], now: float) -> None:
        self._set({c: f"pending:{now!r}" for c in coords})

    def mark_done(self, landed: dict[str, str]) -> None:
        """`landed`: coordinates -> "<topic>:<partition>:<offset>" it was produced at."""
        self._set({c: f"done:{where}" for c, where in landed.items()})

    def forget(self, coords: list[str]) -> None:
        for i in range(0, len(coords), CHUNK):
            self.redis.hdel(REPLAYS, *coords[i : i + CHUNK])

    def _set(self, mapping: dict[str, str]) -> None:
        items = list(mapping.items())
        for i in range(0, len(items), CHUNK):
            self.redis.hset(REPLAYS, mapping=dict(items[i : i + CHUNK]))
