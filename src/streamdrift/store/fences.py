"""Offset fences: what Redis says was applied, per model and partition.

A fence is the last offset of a (topic incarnation, partition) whose events a model's
apply counted; the apply moves it in the same script as the deltas. Fences are what make
a batch count once: a re-delivered event at or below its model's fence is dropped. They
are also where a worker resumes reading: Redis can lose acknowledged writes (a restart
from an RDB snapshot, an AOF tail lost in a host crash, a replica promoted after
asynchronous replication), and Kafka's committed offset would then skip what Redis lost.

A model with no events on a partition for a while would hold every other model's resume
point back; workers move such fences forward (`advance`) to the offset they applied up
to, and a per-partition progress floor covers partitions no model has a fence on.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamdrift.store.client import RedisClient, int_hash, lua, text, text_hash
from streamdrift.store.keys import EPOCH, PROGRESS, TOPICS, ModelKeys, parse_fence_field


@dataclass(slots=True)
class Fence:
    """The offset guard of one (topic incarnation, partition) in one model's apply."""

    field: str
    expected: int
    new: int


@dataclass(slots=True)
class ModelHead:
    """What a worker reads once per batch per model before computing deltas."""

    revision: int | None
    offsets: dict[str, int]


class Fences:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._advance = client.register_script(lua("advance_fences"))
        self._progress = client.register_script(lua("advance_progress"))
        self._incarnation = client.register_script(lua("set_incarnation"))

    def heads(self, models: list[str]) -> tuple[str | None, dict[str, ModelHead]]:
        """The state marker, and the revision and fences of each model, in one round trip
        (one per node on a cluster)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(EPOCH)
        for m in models:
            k = ModelKeys(m)
            pipe.get(k.revision)
            pipe.hgetall(k.offsets)
        res = pipe.execute()
        epoch = res[0].decode() if res[0] is not None else None
        out = {}
        for i, m in enumerate(models):
            rev, offs = res[1 + 2 * i], res[2 + 2 * i]
            out[m] = ModelHead(int(rev) if rev is not None else None, int_hash(offs))
        return epoch, out

    def all(self, models: list[str]) -> dict[str, dict[str, int]]:
        """Every fence of these models: model -> field -> offset."""
        pipe = self.redis.pipeline(transaction=False)
        for m in models:
            pipe.hgetall(ModelKeys(m).offsets)
        return {m: int_hash(r) for m, r in zip(models, pipe.execute(), strict=True)}

    def advance(self, moves: dict[str, list[Fence]]) -> tuple[dict[str, dict[str, int]], list[str]]:
        """Move fences from `expected` to `new`, model by model, where they still are at
        `expected`; returns the fields left alone with their current offsets, and the
        models that have no revision any more (their state is gone: nothing written)."""
        out: dict[str, dict[str, int]] = {}
        gone: list[str] = []
        for m, fences in moves.items():
            if not fences:
                continue
            k = ModelKeys(m)
            args = [x for f in fences for x in (f.field, f.expected, f.new)]
            res = self._advance(keys=[k.offsets, k.revision], args=args)
            if res == 0:
                gone.append(m)
            elif res:
                out[m] = {text(res[i]): int(res[i + 1]) for i in range(0, len(res), 2)}
        return out, gone

    def progress(self) -> dict[str, int]:
        return int_hash(self.redis.hgetall(PROGRESS))

    def advance_progress(self, marks: dict[str, int], epoch: str) -> bool:
        """Raise the progress floors, if the state marker is still `epoch`."""
        if not marks:
            return True
        args = [epoch, *(x for f, o in marks.items() for x in (f, o))]
        return bool(self._progress(keys=[PROGRESS, EPOCH], args=args))

    def adopt_legacy(self, models: list[str], topic: str, incarnation: str) -> None:
        """Fences written before fences named their topic's incarnation
        (`<topic>:<partition>`) become the current incarnation's: the first time a topic's
        incarnation is recorded, it is the topic those fences were counted on."""
        for m, fields in self.all(models).items():
            # (the version registry shares the hash: `__versions__`, `__version__:<v>`)
            old = {
                f: o
                for f, o in fields.items()
                if parse_fence_field(f) is None and not f.startswith("__version")
            }
            moved = {}
            for name, offset in old.items():
                t, _, p = name.rpartition(":")
                if t == topic and p.isdigit():
                    moved[name] = offset
            if moved:
                k = ModelKeys(m).offsets
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(
                    k,
                    mapping={
                        f"{topic}@{incarnation}:{n.rpartition(':')[2]}": o for n, o in moved.items()
                    },
                )
                pipe.hdel(k, *moved)
                pipe.execute()

    def forget(self, models: list[str], keep: dict[str, str]) -> None:
        """Drop fences and progress marks of topic incarnations other than `keep`'s
        (topic -> incarnation): a recreated topic's old fences mean nothing any more."""
        pipe = self.redis.pipeline(transaction=False)
        for key, fields in [(PROGRESS, self.progress())] + [
            (ModelKeys(m).offsets, f) for m, f in self.all(models).items()
        ]:
            stale = []
            for name in fields:
                parsed = parse_fence_field(name)
                if parsed is not None and parsed[0] in keep and parsed[1] != keep[parsed[0]]:
                    stale.append(name)
            if stale:
                pipe.hdel(key, *stale)
        pipe.execute()

    # ---- topic incarnations -------------------------------------------------------------
    def incarnations(self) -> dict[str, str]:
        return text_hash(self.redis.hgetall(TOPICS))

    def record_incarnation(self, topic: str, expected: str | None, new: str) -> bool:
        """Record `topic`'s incarnation if Redis still has `expected` for it."""
        return bool(self._incarnation(keys=[TOPICS], args=[topic, expected or "", new]))
