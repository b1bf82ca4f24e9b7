"""A window's numeric columns and labelled pairs' sums as lists of deltas, each apply's
one blob, that readers add up.

Adding a batch's histogram bins, counts, sums and extremes field by field cost Redis one
`redis.call` per hash field inside the apply script, whatever the number of events, and
that was most of Redis's time per event (`benchmarks/window_writes.py`: ~5 µs per field
from Lua, ~3 µs as packed `BITFIELD` counters, 0.2 µs per field as one pushed blob). So
an apply pushes each window's (and each slice's) numeric columns as one opaque blob onto
the window's `deltas` list, in the same atomic script as its fences, and Redis never
looks inside. A reader adds the blobs up (`fold`), as it adds a hash's fields. The
labelled pairs' sums the join adds to a window go the same way onto its `perf_deltas`
list (but for the fields named by classes and segments, which stay in the perf hash
where the apply caps their number), its correlation sums onto `corr_deltas`, and the
meta hash's score bins (up to 200 fields per window) onto `meta_deltas`.

The list is kept short by folding it: a reader, or the worker after an apply that left a
list `FOLD_AT` long, replaces the blobs it read by their sum, in a script that first
checks the list still starts with them (appends only ever go to its end, so the first
blob's token and the last read's say whether anything changed under the reader; a fold
by someone else, or Redis losing writes, changes the first).

A blob: a 16-character token, then JSON `{column: [n, missing, out of range, sum, sum of
squares, minimum, maximum, [bin counts]]}` (a `NumericSketch`; an extreme is null when
the column had no value). A reader adds blobs with the sketch's own `+`. Windows written
before this layout keep their fields in the `num:<f>` hashes; a reader adds both.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson

from streamdrift.sketch import NumericSketch
from streamdrift.store.client import REDIS_ERRORS, RedisClient, lua
from streamdrift.store.keys import WindowKeys
from streamdrift.store.window_fields import KeyList, Op

log = logging.getLogger(__name__)

TOKEN = 16
#: an apply that leaves a deltas list this long has it folded by its worker right after
FOLD_AT = 8
#: a reader folds a list of at least this many blobs as it reads it
READ_FOLD_AT = 2


def _extreme(v: float) -> float | None:
    return v if math.isfinite(v) else None


def blob(numeric: Mapping[str, NumericSketch]) -> bytes:
    """The columns' sketches as one blob, under a token of its own. Sums must be finite
    (JSON has no NaN; the decode never lets one through)."""
    body = {}
    for column, s in numeric.items():
        if not (math.isfinite(s.total) and math.isfinite(s.total_sq)):
            raise ValueError(f"window delta of {column}: a sum is not finite")
        body[column] = [
            int(s.n),
            int(s.missing),
            int(s.out_of_range),
            float(s.total),
            float(s.total_sq),
            _extreme(s.minimum),
            _extreme(s.maximum),
            s.bins.tolist(),
        ]
    return secrets.token_hex(TOKEN // 2).encode() + orjson.dumps(body)


def _sketch(v: list[Any]) -> NumericSketch:
    n, missing, oor, total, total_sq, lo, hi, bins = v
    return NumericSketch(
        bins=np.asarray(bins, dtype=np.int64),
        missing=int(missing),
        n=int(n),
        total=float(total),
        total_sq=float(total_sq),
        minimum=float("inf") if lo is None else float(lo),
        maximum=float("-inf") if hi is None else float(hi),
        out_of_range=int(oor),
    )


def push_op(
    keys: KeyList,
    window_keys: WindowKeys,
    numeric: Mapping[str, NumericSketch],
    expire_at: int,
    blobs: list[bytes],
) -> list[Op]:
    """The operation that pushes a window's (or a slice's) numeric columns as one blob:
    the blob is appended to `blobs` (the script's ARGV from 2 on) and named by its
    position; none when there is no column with a value or a missing one."""
    touched = {c: s for c, s in numeric.items() if s.n or s.missing}
    if not touched:
        return []
    return _pushed(keys, window_keys.deltas, blob(touched), expire_at, blobs)


def _pushed(keys: KeyList, key: str, data: bytes, expire_at: int, blobs: list[bytes]) -> list[Op]:
    """The `push` op of blob `data` onto list `key`: the blob goes to `blobs` (the
    script's ARGV from 2 on) and the op names it by its position."""
    blobs.append(data)
    return [[keys.index(key), "push", [len(blobs) + 1], expire_at]]


def _malformed(b: bytes, e: Exception) -> RuntimeError:
    """Only a hand-edited list holds one: a loud stop that names it, not a wrong count."""
    return RuntimeError(f"a window deltas blob is malformed ({e}): {b[:60]!r}")


def fold(blobs: Iterable[bytes]) -> dict[str, NumericSketch]:
    """The sum of blobs, per column."""
    out: dict[str, NumericSketch] = {}
    for b in blobs:
        try:
            columns = {c: _sketch(v) for c, v in orjson.loads(b[TOKEN:]).items()}
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
            raise _malformed(b, e) from None
        for column, s in columns.items():
            had = out.get(column)
            if had is None:
                out[column] = s
            elif len(had.bins) == len(s.bins):
                out[column] = had + s
            else:
                raise _malformed(b, ValueError(f"{column} has {len(s.bins)} bins"))
    return out


def add_to(numeric: dict[str, NumericSketch], folded: Mapping[str, NumericSketch]) -> None:
    """Add folded deltas to the columns' sketches (decoded from their hashes); a column
    the sketches do not have, or one of other bins, is left out, as an unknown hash field
    is."""
    for column, s in folded.items():
        had = numeric.get(column)
        if had is not None and len(had.bins) == len(s.bins):
            numeric[column] = had + s


# ---- named fields: the labelled pairs' sums and the correlation sums ------------------
#: A fields blob: the token, then JSON `{"i": {field: int}, "f": {field: float}}`, the
#: fields named as in the hash they add to: the perf hash (store.window_fields
#: PERFORMANCE_FIELDS, "[<slice>]" and "[cc=<version>]" prefixes included; the fields
#: named by classes and segments, `cm:` and `s:`, stay in the hash, where the apply caps
#: their number) or the correlation hash (store.depth_fields.CORRELATION_FIELDS).
FIELD_LISTS = (":pd", ":cd", ":md")


def fields_blob(ints: Mapping[str, int], floats: Mapping[str, float]) -> bytes:
    for name, v in floats.items():
        if not math.isfinite(v):
            raise ValueError(f"window delta {name} is not finite: {v!r}")
    body = {
        "i": {f: int(v) for f, v in ints.items()},
        "f": {f: float(v) for f, v in floats.items()},
    }
    return secrets.token_hex(TOKEN // 2).encode() + orjson.dumps(body)


def fields_push_op(
    keys: KeyList,
    key: str,
    ints: Mapping[str, int],
    floats: Mapping[str, float],
    expire_at: int,
    blobs: list[bytes],
) -> list[Op]:
    """The operation that pushes named fields as one blob onto list `key` (see
    `push_op`)."""
    if not ints and not floats:
        return []
    return _pushed(keys, key, fields_blob(ints, floats), expire_at, blobs)


def fold_fields(blobs: Iterable[bytes]) -> tuple[dict[str, int], dict[str, float]]:
    """The sum of fields blobs: (integer fields, float fields)."""
    ints: dict[str, int] = {}
    floats: dict[str, float] = {}
    for b in blobs:
        try:
            d = orjson.loads(b[TOKEN:])
            for f, v in d.get("i", {}).items():
                ints[f] = ints.get(f, 0) + int(v)
            for f, v in d.get("f", {}).items():
                floats[f] = floats.get(f, 0.0) + float(v)
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
            raise _malformed(b, e) from None
    return ints, floats


def add_fields(h: dict[str, str], blobs: Iterable[bytes]) -> None:
    """Add fields blobs to a hash as read (field -> text), so that the hash's decoders
    (`decode_performance`, `decode_slice_performance`, `decode_comparisons`,
    `decode_correlation`) read the sum of both."""
    ints, floats = fold_fields(blobs)
    for f, i in ints.items():
        h[f] = str(int(h.get(f, 0)) + i)
    for f, x in floats.items():
        h[f] = repr(float(h.get(f, 0.0)) + x)


def _combined(key: str, blobs: list[bytes]) -> bytes:
    """The one blob `blobs` of list `key` fold into (its kind by its name)."""
    if key.endswith(FIELD_LISTS):
        return fields_blob(*fold_fields(blobs))
    return blob(fold(blobs))


class Deltas:
    """Folding the deltas lists: by readers, and by the worker after an apply."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        # sent as EVAL, not EVALSHA: redis-py loads a script for a plain pipeline, not for
        # a cluster pipeline, where an EVALSHA the node never saw fails (NOSCRIPT)
        self._fold_source = lua("fold_deltas")
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
                    _combined(key, blobs),
                ]
                pipe.execute_command("EVAL", self._fold_source, 1, key, *args)
            done = sum(int(r) for r in pipe.execute())
        except REDIS_ERRORS as e:
            log.warning("window deltas not folded (read as they are, longer): %s", e)
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
            log.warning("window deltas not folded (read as they are, longer): %s", e)
            return 0
        return self.fold(dict(zip(keys, read, strict=True)))


__all__ = [
    "FIELD_LISTS",
    "FOLD_AT",
    "READ_FOLD_AT",
    "TOKEN",
    "Deltas",
    "add_fields",
    "add_to",
    "blob",
    "fields_blob",
    "fields_push_op",
    "fold",
    "fold_fields",
    "push_op",
]
