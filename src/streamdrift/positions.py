"""Where each partition is read from, by what Redis says was applied.

Redis, not Kafka's committed offset, is the truth of what was counted: a partition is
read from the lowest fence of the registered models on it (+1; a model with no fence
there from the progress floor), so events Redis lost are read again and counted, and
events it holds are dropped by the fences. Kafka commits stay, as a hint for lag.

The book also remembers, for the partitions this worker owns, each model's fence as
last seen. A fence never moves back, so one found lower than that is proof that Redis
lost acknowledged writes (a restart from an older snapshot, an AOF tail lost, a replica
promoted): the worker reads from Redis's fences again. And it moves the fences of models
that had no events for a while up to what the worker applied, so one quiet model does
not make every re-read start at its last event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING

from streamdrift.store import Fence

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Regression:
    """A fence found below what this worker saw it at: Redis lost writes."""

    model: str
    field: str
    seen: int
    now: int

    def __str__(self) -> str:
        return f"model {self.model} {self.field}: {self.seen} -> {self.now}"


class StateRolledBack(Exception):
    """Redis holds fences below what was applied: it lost acknowledged writes."""

    def __init__(self, regressions: list[Regression]) -> None:
        super().__init__(", ".join(map(str, regressions[:3])))
        self.regressions = regressions


def resume_offset(
    fence_field: str, fences: dict[str, dict[str, int]], progress: dict[str, int]
) -> int:
    """The offset to read a partition from: after the lowest fence of the registered
    models (`fences`: each one's, by field) on it.

    A model with no fence on the partition has none of its events there applied, so it
    counts as fenced at the progress floor (up to which every event of the partition was
    applied, by a worker's drained batches), or, with no floor, as nothing applied: read
    from the log's beginning. It must count: a batch's applies go model by model, and a
    worker killed between them leaves the first models fenced past events whose first
    apply, for the model after them, never ran; reading from the lowest fence there was
    would skip those events for good."""
    floor = progress.get(fence_field, -1)
    lowest = min((f.get(fence_field, floor) for f in fences.values()), default=floor)
    return lowest + 1 if lowest >= 0 else OFFSET_BEGINNING


@dataclass(slots=True)
class FenceBook:
    """What this worker knows of the fences of the partitions it owns."""

    #: (model, fence field) -> the fence as last seen, consistent with this worker's reads
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    #: fence field -> offset up to which this worker applied every event of the partition
    applied: dict[str, int] = field(default_factory=dict)
    #: the fence field of each owned partition
    owned: dict[TopicPartition, str] = field(default_factory=dict)

    def position(
        self,
        partitions: dict[TopicPartition, str],
        fences: dict[str, dict[str, int]],
        progress: dict[str, int],
    ) -> dict[TopicPartition, int]:
        """Take (or take again) `partitions` (-> their fence fields), given every
        registered model's fences and the progress floors; returns where to read each
        from."""
        out = {}
        for tp, f in partitions.items():
            old = self.owned.get(tp)
            if old is not None:
                self._drop(old)
            self.owned[tp] = f
            start = resume_offset(f, fences, progress)
            for model, offsets in fences.items():
                self.seen[(model, f)] = offsets.get(f, -1)
            if start >= 0:
                self.applied[f] = start - 1
            out[tp] = start
        return out

    def release(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            f = self.owned.pop(tp, None)
            if f is not None:
                self._drop(f)

    def clear(self) -> None:
        self.seen.clear()
        self.applied.clear()
        self.owned.clear()

    def _drop(self, f: str) -> None:
        self.applied.pop(f, None)
        for key in [k for k in self.seen if k[1] == f]:
            del self.seen[key]

    def check(self, model: str, offsets: dict[str, int]) -> list[Regression]:
        """Fences of `model` (as Redis has them now) below what this worker saw."""
        out = []
        for (m, f), seen in self.seen.items():
            if m == model and seen >= 0:
                now = offsets.get(f, -1)
                if now < seen:
                    out.append(Regression(model, f, seen, now))
        return out

    def moved(self, model: str, fences: list[Fence]) -> None:
        """An apply moved these fences."""
        for f in fences:
            if f.field in self.applied or (model, f.field) in self.seen:
                self.seen[(model, f.field)] = f.new

    def drained(self, fields: dict[str, int]) -> None:
        """Every event up to these offsets (fence field -> offset) is applied."""
        for f, offset in fields.items():
            if f in self.applied or f in self.owned.values():
                self.applied[f] = max(self.applied.get(f, -1), offset)

    def idle_moves(self, models: list[str]) -> dict[str, list[Fence]]:
        """Fences to move up to what was applied, model by model: models that had no
        events since, or none at all, on a partition this worker owns."""
        out: dict[str, list[Fence]] = {}
        for model in models:
            moves = [
                Fence(f, self.seen.get((model, f), -1), upto)
                for f, upto in self.applied.items()
                if upto >= 0 and self.seen.get((model, f), -1) < upto
            ]
            if moves:
                out[model] = moves
        return out

    def settle(
        self, moves: dict[str, list[Fence]], refused: dict[str, dict[str, int]]
    ) -> list[Regression]:
        """After `idle_moves` were sent: record the moves that held; a refused one is a
        fence another worker moved (take its value) or one that went back (returned)."""
        out = []
        for model, fences in moves.items():
            left = refused.get(model, {})
            for f in fences:
                if f.field not in left:
                    self.seen[(model, f.field)] = f.new
                    continue
                now = left[f.field]
                if now < f.expected:
                    out.append(Regression(model, f.field, f.expected, now))
                else:
                    self.seen[(model, f.field)] = now
        return out
