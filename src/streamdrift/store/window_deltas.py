"""A window's numeric columns as a list of deltas, each apply's one blob, that readers
add up.

Adding a batch's histogram bins, counts, sums and extremes field by field cost Redis one
`redis.call` per hash field inside the apply script, whatever the number of events, and
that was most of Redis's time per event (`benchmarks/window_writes.py`: ~5 µs per field
from Lua, ~3 µs as packed `BITFIELD` counters, 0.2 µs per field as one pushed blob). So
an apply pushes each window's (and each slice's) numeric columns as one opaque blob onto
the window's `deltas` list, in the same atomic script as its fences, and Redis never
looks inside. A reader adds the blobs up (`fold`), as it adds a hash's fields.

The list is kept short by folding it: a reader, or the worker after an apply that left a
list `FOLD_AT` long, replaces the blobs it read by their sum, in a script that first
checks the list still starts with them (appends only ever go to its end, so the first
blob's token and the last read's say whether anything changed under the reader; a fold
by someone else, or Redis losing writes, changes the first).

A blob: a 16-character token, then JSON `{merge kind: {column: {field: value}}}` with
the merge kinds of `store.window_fields.Merge` (incr, incrf, min, max) and the fields of
`NUMERIC_FIELDS` (bin:<i>, n, missing, oor, sum, sumsq, min, max). Windows written
before this layout keep their fields in the `num:<f>` hashes; a reader adds both.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streamdrift.sketch import NumericSketch
from streamdrift.store.client import REDIS_ERRORS, RedisClient, lua
from streamdrift.store.keys import WindowKeys
from streamdrift.store.window_fields import (
    NUMERIC_FIELDS,
    KeyList,
    Merge,
    Op,
    encode_fields,
)

log = logging.getLogger(__name__)

TOKEN = 16
#: an apply that leaves a deltas list this long has it folded by its worker right after
FOLD_AT = 8
#: a reader folds a list of at least this many blobs as it reads it
READ_FOLD_AT = 2

_MERGES = (Merge.SUM, Merge.FSUM, Merge.MIN, Merge.MAX)
_FIELDS = {f.name: f for f in NUMERIC_FIELDS}

#: merge kind -> column -> field -> value
Folded = dict[str, dict[str, dict[str, Any]]]


def blob(folded: Folded) -> bytes:
    """A blob of `folded`, under a token of its own. Floats must be finite (JSON has no
    NaN; the decode never lets one through)."""
    for kind in (Merge.FSUM, Merge.MIN, Merge.MAX):
        for column, fields in folded.get(kind, {}).items():
            for name, v in fields.items():
                if not math.isfinite(v):
                    raise ValueError(f"window delta {column} {name} is not finite: {v!r}")
    body = {k: v for k, v in folded.items() if v}
    return secrets.token_hex(TOKEN // 2).encode() + orjson.dumps(body)


def push_op(
    keys: KeyList,
    window_keys: WindowKeys,
    numeric: Mapping[str, NumericSketch],
    expire_at: int,
    blobs: list[bytes],
) -> list[Op]:
    """The operation that pushes a window's (or a slice's) numeric columns as one blob:
    the blob is appended to `blobs` (the script's ARGV from 2 on) and named by its
    position; none when every column is empty."""
    content: Folded = {}
    for column, s in numeric.items():
        for kind, flat in encode_fields(NUMERIC_FIELDS, s).items():
            number = int if kind is Merge.SUM else float  # the hash spelling is text
            content.setdefault(kind.value, {})[column] = {
                flat[i]: number(flat[i + 1]) for i in range(0, len(flat), 2)
            }
    if not content:
        return []
    blobs.append(blob(content))
    return [[keys.index(window_keys.deltas), "push", [len(blobs) + 1], expire_at]]


def fold(blobs: Iterable[bytes]) -> Folded:
    """The sum of blobs: integer and float fields added, extremes kept."""
    out: Folded = {k.value: {} for k in _MERGES}
    for b in blobs:
        d = orjson.loads(b[TOKEN:])
        for kind in _MERGES:
            into = out[kind.value]
            for column, fields in d.get(kind.value, {}).items():
                target = into.setdefault(column, {})
                if kind is Merge.MIN:
                    for name, v in fields.items():
                        if name not in target or v < target[name]:
                            target[name] = v
                elif kind is Merge.MAX:
                    for name, v in fields.items():
                        if name not in target or v > target[name]:
                            target[name] = v
                else:
                    for name, v in fields.items():
                        target[name] = target.get(name, 0) + v
    return out


def add_to(numeric: Mapping[str, NumericSketch], folded: Folded) -> None:
    """Add folded deltas to the columns' sketches (decoded from their hashes); a column
    the sketches do not have is left out, as an unknown hash field is."""
    for kind in _MERGES:
        for column, fields in folded.get(kind.value, {}).items():
            s = numeric.get(column)
            if s is None:
                continue
            for name, v in fields.items():
                head, _, key = name.partition(":")
                f = _FIELDS.get(head)
                if f is None:
                    continue
                if f.keyed:
                    b = int(key)
                    if 0 <= b < len(s.bins):
                        s.bins[b] += v
                elif kind is Merge.MIN:
                    s.minimum = min(s.minimum, float(v))
                elif kind is Merge.MAX:
                    s.maximum = max(s.maximum, float(v))
                else:
                    setattr(s, f.attr, getattr(s, f.attr) + v)


class Deltas:
    """Folding the deltas lists: by readers, and by the worker after an apply."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._fold = client.register_script(lua("fold_deltas"))
        self.folds = 0

    def fold(self, lists: Mapping[str, list[bytes]]) -> int:
        """Replace each list's blobs as read (`lists`: key -> its blobs) by their sum,
        where the list still starts with them; lists of one blob or none are left be.
        Returns how many were folded. A Redis error leaves the lists as they are (they
        are read right folded or not)."""
        due = {k: v for k, v in lists.items() if len(v) >= READ_FOLD_AT}
        if not due:
            return 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, blobs in due.items():
                args: list[bytes | int] = [
                    len(blobs),
                    blobs[0][:TOKEN],
                    blobs[-1][:TOKEN],
                    blob(fold(blobs)),
                ]
                self._fold(keys=[key], args=args, client=pipe)
            done = sum(int(r) for r in pipe.execute())
        except REDIS_ERRORS as e:
            log.info("window deltas not folded (read as they are): %s", e)
            return 0
        self.folds += done
        return done

    def fold_keys(self, keys: list[str]) -> int:
        """Fold lists named by an apply (which left them `FOLD_AT` long)."""
        if not keys:
            return 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.lrange(key, 0, -1)
            read = pipe.execute()
        except REDIS_ERRORS as e:
            log.info("window deltas not folded (read as they are): %s", e)
            return 0
        return self.fold(dict(zip(keys, read, strict=True)))


__all__ = ["FOLD_AT", "READ_FOLD_AT", "TOKEN", "Deltas", "add_to", "blob", "fold", "push_op"]
