"""The window state of multivariate drift and categorical depth in Redis: what it is,
its encoder (apply-script operations) and its reads.

Keys of one window beside those of `window_fields` (see `store.keys`):

    cd         per pair "<a>|<b>" of the profile's correlation features:
               n:<a>|<b> (events with both values), and the float sums of the
               standardised values x:, y:, xx:, yy:, xy:<a>|<b>, one fields blob per
               apply (store.window_deltas); the hash `corr` holds the same fields for
               windows written before the deltas lists
    hll:<f>    a HyperLogLog of categorical feature f's values (PFADD of each batch's
               distinct values; PFCOUNT reads it, over several windows at once when
               pooled)
    nd         (store.window_fields) also holds the reconstruction error, column
               __reconstruction_error__, a numeric column like any feature's (the hash
               `num:__reconstruction_error__` for windows written before the lists)

Field names carry the pair's names and are looked up, never parsed, so a feature name
may hold ':'; names holding '|' are never chosen for pairs (`correlation`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from streamdrift.correlation import CorrelationModel, CorrelationSketch
from streamdrift.profile import RECONSTRUCTION, ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store.keys import WindowKeys
from streamdrift.store.window_deltas import add_fields, fields_push_op
from streamdrift.store.window_fields import Field, KeyList, Merge, Op, decode_numeric

M = Merge

#: the corr hash: CorrelationSketch attributes, keyed by pair name
CORRELATION_FIELDS: tuple[Field, ...] = (
    Field("n", "n", M.SUM, keyed=True),
    Field("sx", "x", M.FSUM, keyed=True),
    Field("sy", "y", M.FSUM, keyed=True),
    Field("sxx", "xx", M.FSUM, keyed=True),
    Field("syy", "yy", M.FSUM, keyed=True),
    Field("sxy", "xy", M.FSUM, keyed=True),
)

#: the apply-script op that adds values to a HyperLogLog
PFADD = "pfadd"


def distinct_features(profile: ReferenceProfile) -> list[str]:
    """The categorical features whose distinct values are counted (none when the
    cardinality check is off)."""
    if profile.config.quality.cardinality_factor is None:
        return []
    return profile.categorical_features()


def depth_ops(
    keys: KeyList,
    window_keys: WindowKeys,
    sketch: WindowSketch,
    profile: ReferenceProfile,
    expire_at: int,
    blobs: list[bytes],
) -> list[Op]:
    """Operations that add the sketch's correlation sums (one blob pushed onto the
    window's correlation deltas, see store.window_deltas) and distinct values to the
    stored window."""
    ops: list[Op] = []
    sums, model = sketch.correlation, _correlation_model(profile)
    if sums is not None and model is not None:
        names = model.pair_names()
        ints: dict[str, int] = {}
        floats: dict[str, float] = {}
        for f in CORRELATION_FIELDS:
            values = getattr(sums, f.attr)
            for q in np.flatnonzero(values).tolist():
                if f.merge is M.SUM:
                    ints[f"{f.name}:{names[q]}"] = int(values[q])
                else:
                    floats[f"{f.name}:{names[q]}"] = float(values[q])
        ops += fields_push_op(keys, window_keys.corr_deltas, ints, floats, expire_at, blobs)
    for name in distinct_features(profile):
        column = sketch.categorical.get(name)
        if column is not None and column.counts:
            ops.append([keys.index(window_keys.hll(name)), PFADD, list(column.counts), expire_at])
    return ops


def _correlation_model(profile: ReferenceProfile) -> CorrelationModel | None:
    mv = profile.multivariate
    return mv.correlation if mv is not None else None


@lru_cache(maxsize=256)
def _correlation_table(features: tuple[str, ...]) -> dict[str, tuple[str, int, Merge]]:
    """Hash field name -> (sketch attribute, pair position, merge), for decoding."""
    model = CorrelationModel(
        features=list(features), means=[], scales=[], reference=[], counts=[], chosen_by=""
    )
    return {
        f"{f.name}:{pair}": (f.attr, q, f.merge)
        for f in CORRELATION_FIELDS
        for q, pair in enumerate(model.pair_names())
    }


def decode_correlation(h: Mapping[str, str], model: CorrelationModel) -> CorrelationSketch:
    """The correlation sums of a window's corr hash; fields of no current pair are
    ignored."""
    k = len(model.features)
    sums = CorrelationSketch.zero(k * (k - 1) // 2)
    table = _correlation_table(tuple(model.features))
    for name, text in h.items():
        found = table.get(name)
        if found is not None:
            attr, q, merge = found
            getattr(sums, attr)[q] += int(text) if merge is M.SUM else float(text)
    return sums


# ---- reads: queued on the window reader's pipeline, decoded in the same order ------------
#: PFCOUNT through a script: redis-py refuses PFCOUNT in a cluster pipeline (several
#: keys could be on several nodes), but a model's keys share one slot
_PFCOUNT = "return redis.call('PFCOUNT', unpack(KEYS))"


def pfcount(pipe: Any, keys: list[str]) -> None:
    """Queue the distinct count of the union of HyperLogLogs `keys` (one model's)."""
    pipe.execute_command("EVAL", _PFCOUNT, len(keys), *keys)


def queue_reads(pipe: Any, window_keys: WindowKeys, profile: ReferenceProfile) -> None:
    """Queue the reads of one window's depth state on `pipe` (see `decode_reads`)."""
    if _correlation_model(profile) is not None:
        pipe.hgetall(window_keys.corr)  # written before the deltas lists
        pipe.lrange(window_keys.corr_deltas, 0, -1)
    for name in profile.derived_columns():
        pipe.hgetall(window_keys.num(name))
    for name in distinct_features(profile):
        pfcount(pipe, [window_keys.hll(name)])


def decode_reads(
    window: WindowSketch, profile: ReferenceProfile, replies: Iterator[Any]
) -> list[bytes]:
    """Set the window's depth state from the replies of `queue_reads`. Returns the
    correlation deltas read (for the reader to fold)."""
    model = _correlation_model(profile)
    blobs: list[bytes] = []
    if model is not None:
        h = _text(next(replies))
        blobs = next(replies)
        add_fields(h, blobs)
        window.correlation = decode_correlation(h, model) if h else None
    for name, column in profile.derived_columns().items():
        window.numeric[name] = decode_numeric(_text(next(replies)), column)
    for name in distinct_features(profile):
        window.distinct[name] = int(next(replies))
    return blobs


def _text(h: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in h.items()}


__all__ = [
    "CORRELATION_FIELDS",
    "PFADD",
    "RECONSTRUCTION",
    "decode_correlation",
    "decode_reads",
    "depth_ops",
    "distinct_features",
    "queue_reads",
]
