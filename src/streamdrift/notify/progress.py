"""How far a partition of the alerts topic may be committed.

Alerts of a partition are delivered side by side and finish in any order, but a
committed offset says "everything before it is done". So each partition keeps the
offsets it dispatched, in order, and the commit position is just after the longest
run of finished ones from the oldest: one slow alert holds the commit back (and is
delivered again after a crash, with those after it), never the other way round.
"""

from __future__ import annotations

from collections import deque


class Progress:
    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._finished: set[int] = set()
        #: the offset to commit (the next to read after a restart); None: nothing yet
        self.position: int | None = None
        self.committed: int | None = None

    def add(self, offset: int) -> None:
        """An alert read (offsets arrive in increasing order)."""
        self._order.append(offset)

    def finish(self, offset: int) -> None:
        """The alert at `offset` reached every sink it was routed to, or was given up on
        and recorded in `.undelivered`."""
        self._finished.add(offset)
        while self._order and self._order[0] in self._finished:
            done = self._order.popleft()
            self._finished.discard(done)
            self.position = done + 1

    @property
    def in_flight(self) -> int:
        return len(self._order)

    def to_commit(self) -> int | None:
        """The position, if it moved since the last commit."""
        return self.position if self.position != self.committed else None
