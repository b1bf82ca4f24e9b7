"""What a window *is* in Redis: its fields, defined once, and the encoder and decoder
derived from that definition.

Each piece of window state is a `Field`: the sketch attribute it comes from, the hash
field it is stored under, and how two values merge (`Merge`). The apply script knows
one branch per merge kind and nothing about features or metrics; the encoder turns a
sketch into those generic operations, and the decoder reads a hash back by the same
table. `tests/integration/test_store_windows.py` holds the three together through a
real Redis: reading what `apply(a)` then `apply(b)` left equals `a + b`.

Hashes of one window (see `store.keys`):

    meta       count, outliers, duplicates, duplicate_example, version:<v>,
               invalid:<reason>[:<feature>], extra:<f>, extra_numbers:<f>,
               extra_sum:<f>, cat_missing:<column>, cat_other:<column>,
               slice:<slice>  (events in each slice: which slice hashes exist),
               sc:<bin> (scored predictions per calibration score bin: pushed as
               deltas onto the window's `meta_deltas` list, store.window_deltas; a
               window written before that keeps them here, and readers add both)
    num:<f>    bin:<i>, n, missing, oor, sum, sumsq, min, max (a slice: all its
               numeric columns in one hash `num`, fields "<f>\x1f<field>")
    cat:<f>    <category> -> count: user values only, so a category literally named
               "__missing__" is a category; missing values and the categories beyond
               the cap are counted in meta
    perf       n, dsum, d:<log2 delay>, cm:<actual>|<predicted>, cm_other, ns,
               pos:<bin>, neg:<bin>, cs:<calibration bin> (score sums), ll, ll2, nll2, brier,
               ae, se, err, y, y2, ape, nape,
               s:<segment>=<value>:<n|ok|ae|se>  (written by the join, pair by pair);
               q:<part>:<en|e|ln|l|l2|an|a|a2>  (the sequential scan's sums per part
               of the window, see streamdrift.sequential);
               each slice's labelled pairs under the same names, "[<slice>]<field>";
               each challenger's pairs with the champion, "[cc=<version>]<field>"
               (see streamdrift.champion)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import orjson

from streamdrift.champion import PREFIX as CC_PREFIX
from streamdrift.performance import SCORE_BINS, PerformanceSketch
from streamdrift.profile import ColumnProfile, ReferenceProfile
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch
from streamdrift.store.keys import WindowKeys


class Merge(StrEnum):
    """How a stored value and a delta combine; each is one branch of `apply.lua`."""

    SUM = "incr"  #: integer sum (HINCRBY)
    FSUM = "incrf"  #: float sum (HINCRBYFLOAT)
    MIN = "min"
    MAX = "max"
    FIRST = "first"  #: the first value written stays (HSETNX)


@dataclass(frozen=True, slots=True)
class Field:
    """One piece of stored state: sketch attribute `attr` under hash field `name`.

    A keyed field is a mapping (a Counter, or a histogram array indexed by bin), stored
    as one hash field per key, `<name>:<key>`."""

    attr: str
    name: str
    merge: Merge
    keyed: bool = False


M = Merge

#: the window's meta hash: WindowSketch attributes
META_FIELDS: tuple[Field, ...] = (
    Field("count", "count", M.SUM),
    Field("outliers", "outliers", M.SUM),
    Field("duplicates", "duplicates", M.SUM),
    Field("duplicate_example", "duplicate_example", M.FIRST),
    Field("versions", "version", M.SUM, keyed=True),
    Field("invalid", "invalid", M.SUM, keyed=True),
    Field("extra", "extra", M.SUM, keyed=True),
    Field("extra_numbers", "extra_numbers", M.SUM, keyed=True),
    Field("extra_sums", "extra_sum", M.FSUM, keyed=True),
    Field("slice_counts", "slice", M.SUM, keyed=True),
    # all predictions, labelled or not, per score bin: performance estimation (CBPE)
    Field("score_bins", "sc", M.SUM, keyed=True),
)

#: META_FIELDS that go as deltas onto the window's `meta_deltas` list, not into the meta
#: hash field by field: up to SCORE_BINS (200) fields per window and apply, one
#: `redis.call` each, where one blob is one
LISTED_META_FIELDS: tuple[Field, ...] = tuple(f for f in META_FIELDS if f.attr == "score_bins")
_HASHED_META_FIELDS = tuple(f for f in META_FIELDS if f not in LISTED_META_FIELDS)

#: CategoricalSketch attributes kept in the meta hash, one field per column
#: (`cat_missing:<column>`), so that the category hash holds user values only
CATEGORICAL_META_FIELDS: tuple[Field, ...] = (
    Field("missing", "cat_missing", M.SUM),
    Field("other", "cat_other", M.SUM),
)

#: a numeric column's hash: NumericSketch attributes
NUMERIC_FIELDS: tuple[Field, ...] = (
    Field("bins", "bin", M.SUM, keyed=True),
    Field("n", "n", M.SUM),
    Field("missing", "missing", M.SUM),
    Field("out_of_range", "oor", M.SUM),
    Field("total", "sum", M.FSUM),
    Field("total_sq", "sumsq", M.FSUM),
    Field("minimum", "min", M.MIN),
    Field("maximum", "max", M.MAX),
)

#: the perf hash: PerformanceSketch attributes. The join script adds one labelled pair
#: at a time to these same fields (tests/integration/test_store_join.py checks it
#: against `PerformanceSketch.from_pairs`).
PERFORMANCE_FIELDS: tuple[Field, ...] = (
    Field("labelled", "n", M.SUM),
    Field("delay_sum", "dsum", M.FSUM),
    Field("delay_hist", "d", M.SUM, keyed=True),
    Field("confusion", "cm", M.SUM, keyed=True),
    Field("confusion_other", "cm_other", M.SUM),
    Field("scored", "ns", M.SUM),
    Field("positive_hist", "pos", M.SUM, keyed=True),
    Field("negative_hist", "neg", M.SUM, keyed=True),
    Field("score_sums", "cs", M.FSUM, keyed=True),
    Field("log_loss_sum", "ll", M.FSUM),
    Field("log_loss_sq", "ll2", M.FSUM),
    Field("log_loss_sq_n", "nll2", M.SUM),
    Field("brier_sum", "brier", M.FSUM),
    Field("abs_error", "ae", M.FSUM),
    Field("sq_error", "se", M.FSUM),
    Field("error", "err", M.FSUM),
    Field("y_sum", "y", M.FSUM),
    Field("y_sq", "y2", M.FSUM),
    Field("ape_sum", "ape", M.FSUM),
    Field("ape_n", "nape", M.SUM),
    Field("segments", "s", M.FSUM, keyed=True),
    Field("sub_windows", "q", M.FSUM, keyed=True),
)

ALL_FIELDS = META_FIELDS + CATEGORICAL_META_FIELDS + NUMERIC_FIELDS + PERFORMANCE_FIELDS


# ---- keys of keyed fields: how a mapping's key is spelled in a field name ---------------
def _key_out(attr: str, key: Any) -> str:
    if attr == "confusion":
        return f"{key[0]}|{key[1]}"
    return str(key)


def _key_in(attr: str, text: str) -> Any:
    if attr == "confusion":
        actual, _, predicted = text.partition("|")
        return (actual, predicted)
    if attr in ("bins", "positive_hist", "negative_hist", "delay_hist", "score_bins", "score_sums"):
        return int(text)
    return text


# ---- values ---------------------------------------------------------------------------
def _is_zero(merge: Merge, value: Any) -> bool:
    if merge is M.MIN:
        return bool(value == float("inf"))
    if merge is M.MAX:
        return bool(value == float("-inf"))
    if merge is M.FIRST:
        return value is None
    return not value


def _encode(merge: Merge, value: Any) -> int | str:
    if merge is M.SUM:
        return int(value)
    if merge is M.FIRST:
        return str(value)
    return repr(float(value))


def _decode(merge: Merge, text: str) -> Any:
    if merge is M.SUM:
        return int(text)
    if merge is M.FIRST:
        return text
    return float(text)


def _items(field: Field, value: Any) -> Iterable[tuple[Any, Any]]:
    if field.attr == "segments":  # segment -> Counter of metrics
        return ((f"{seg}:{m}", v) for seg, c in value.items() for m, v in c.items())
    items: Iterable[tuple[Any, Any]] = value.items()
    return items


def encode_fields(fields: Iterable[Field], obj: Any, prefix: str = "") -> dict[Merge, list[Any]]:
    """The non-zero values of `obj` as flat `[field, value, ...]` lists per merge kind;
    `prefix` names a column for fields kept per column in a shared hash."""
    out: dict[Merge, list[Any]] = {}
    for f in fields:
        value = getattr(obj, f.attr)
        if f.keyed and isinstance(value, np.ndarray):
            # a histogram: its non-zero bins found and spelled a whole array at a time
            at = np.flatnonzero(value)
            flat: list[Any] = [None] * (2 * at.size)
            flat[0::2] = [f"{f.name}:{i}" for i in at.tolist()]
            if f.merge is M.SUM:
                flat[1::2] = value[at].astype(np.int64).tolist()
            else:
                flat[1::2] = [_encode(f.merge, v) for v in value[at].tolist()]
        elif f.keyed:
            flat = [
                x
                for k, v in _items(f, value)
                if v
                for x in (f"{f.name}:{_key_out(f.attr, k)}", _encode(f.merge, v))
            ]
        elif _is_zero(f.merge, value):
            continue
        else:
            flat = [f"{f.name}:{prefix}" if prefix else f.name, _encode(f.merge, value)]
        if flat:
            out.setdefault(f.merge, []).extend(flat)
    return out


def decode_field(fields: Mapping[str, Field], obj: Any, name: str, text: str) -> bool:
    """Set the value of hash field `name` on `obj` by its Field; False if unknown."""
    f = fields.get(name)
    if f is not None and not f.keyed:
        setattr(obj, f.attr, _decode(f.merge, text))
        return True
    head, sep, rest = name.partition(":")
    f = fields.get(head)
    if f is None or not sep or not f.keyed:
        return False
    target = getattr(obj, f.attr)
    value = _decode(f.merge, text)
    if f.attr == "segments":
        segment, _, metric = rest.rpartition(":")
        target.setdefault(segment, Counter())[metric] += value
    else:
        target[_key_in(f.attr, rest)] += value
    return True


def _by_name(fields: Iterable[Field]) -> dict[str, Field]:
    return {f.name: f for f in fields}


_META = _by_name(META_FIELDS)
_CAT_META = _by_name(CATEGORICAL_META_FIELDS)
_NUMERIC = _by_name(NUMERIC_FIELDS)
_PERFORMANCE = _by_name(PERFORMANCE_FIELDS)


def decode_performance(h: Mapping[str, str]) -> PerformanceSketch:
    """The model's labelled pairs (fields of slices left out: `decode_slice_performance`)."""
    s = PerformanceSketch()
    for k, v in h.items():
        if not k.startswith("["):
            decode_field(_PERFORMANCE, s, k, v)
    return s


def decode_slice_performance(h: Mapping[str, str]) -> dict[str, PerformanceSketch]:
    """Each slice's labelled pairs, from the "[<slice>]<field>" fields of a perf hash."""
    out: dict[str, PerformanceSketch] = {}
    for k, v in h.items():
        if k.startswith("[") and not k.startswith(CC_PREFIX):
            name, _, rest = k[1:].partition("]")
            s = out.get(name)
            if s is None:
                s = out[name] = PerformanceSketch()
            decode_field(_PERFORMANCE, s, rest, v)
    return out


def decode_numeric(h: Mapping[str, str], column: ColumnProfile) -> NumericSketch:
    s = NumericSketch.zero(len(column.edges) + 1)  # type: ignore[union-attr]
    for k, v in h.items():
        decode_field(_NUMERIC, s, k, v)
    return s


def decode_window(
    start: int,
    profile: ReferenceProfile,
    meta: Mapping[str, str],
    columns: Mapping[str, Mapping[str, str]],
    perf: Mapping[str, str],
    outlier_examples: list[dict[str, Any]],
) -> WindowSketch:
    """A window sketch from its hashes as stored (strings)."""
    w = WindowSketch(start=start, outlier_examples=outlier_examples)
    cats: dict[str, CategoricalSketch] = {}
    for k, v in meta.items():
        if decode_field(_META, w, k, v):
            continue
        head, _, column = k.partition(":")
        if head in _CAT_META:
            s = cats.setdefault(column, CategoricalSketch())
            setattr(s, _CAT_META[head].attr, int(v))
    for name, col in {**profile.features, **profile.outputs()}.items():
        h = columns.get(name, {})
        if col.kind == "numeric":
            w.numeric[name] = decode_numeric(h, col)
        else:
            s = cats.get(name, CategoricalSketch())
            s.counts = Counter({k: int(v) for k, v in h.items()})
            w.categorical[name] = s
    if perf:
        w.performance = decode_performance(perf)
    return w


# ---- the encoder: a batch's window sketches as apply-script operations --------------------
class KeyList:
    """The KEYS of one script call, each key once; operations name keys by position."""

    def __init__(self, first: Iterable[str] = ()) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        for k in first:
            self.index(k)

    def index(self, key: str) -> int:
        """The key's 1-based position (Lua's KEYS[i]), adding it when new."""
        i = self._index.get(key)
        if i is None:
            self.keys.append(key)
            i = self._index[key] = len(self.keys)
        return i


Op = list[Any]


def _ops(key: int, merged: dict[Merge, list[Any]], expire_at: int) -> list[Op]:
    return [[key, kind.value, data, expire_at] for kind, data in merged.items()]


def window_ops(
    keys: KeyList,
    window_keys: WindowKeys,
    sketch: WindowSketch,
    profile: ReferenceProfile,
    expire_at: int,
) -> list[Op]:
    """Operations that add `sketch` to the stored window's hashes (its `WindowKeys`):
    all but the numeric columns and the score bins, which go to its deltas lists
    (`window_deltas.push_op`, `listed_meta_fields`)."""
    cfg = profile.config
    meta = keys.index(window_keys.meta)
    merged = encode_fields(_HASHED_META_FIELDS, sketch)
    for name, c in sketch.categorical.items():
        for kind, values in encode_fields(CATEGORICAL_META_FIELDS, c, prefix=name).items():
            merged.setdefault(kind, []).extend(values)
    ops = _ops(meta, merged, expire_at)
    if sketch.outlier_examples:
        examples = [orjson.dumps(e).decode() for e in sketch.outlier_examples]
        cap = cfg.outlier_alerts_per_window
        ops.append([keys.index(window_keys.outliers), "capped_list", [cap, *examples], expire_at])
    for name, c in sketch.categorical.items():
        if c.counts:
            data: list[Any] = [cfg.max_categories, meta, f"cat_other:{name}"]
            data += [x for k, v in c.counts.items() for x in (k, v)]
            ops.append([keys.index(window_keys.cat(name)), "cap", data, expire_at])
    if sketch.performance is not None:
        ops += _ops(
            keys.index(window_keys.perf),
            encode_fields(PERFORMANCE_FIELDS, sketch.performance),
            expire_at,
        )
    return ops


def listed_meta_fields(sketch: WindowSketch) -> dict[str, int]:
    """The meta fields a window's apply pushes as one blob (`LISTED_META_FIELDS`), by
    their hash field names: a reader adds them to the meta hash as read."""
    flat = encode_fields(LISTED_META_FIELDS, sketch).get(M.SUM, [])
    return dict(zip(flat[0::2], flat[1::2], strict=True))


#: between a column's name and its field in a packed hash (a slice's numeric columns)
PACKED = "\x1f"


def unpack(h: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A packed hash's fields by column."""
    out: dict[str, dict[str, str]] = {}
    for k, v in h.items():
        column, _, name = k.rpartition(PACKED)
        out.setdefault(column, {})[name] = v
    return out


def slice_performance_ops(
    keys: KeyList, window_keys: WindowKeys, sketch: WindowSketch, expire_at: int
) -> list[Op]:
    """A window's slices' labelled pairs, as fields "[<slice>]<field>" of the window's
    perf hash (where the join writes them)."""
    merged: dict[Merge, list[Any]] = {}
    for name, s in sketch.slices.items():
        if s.performance is None:
            continue
        for kind, flat in encode_fields(PERFORMANCE_FIELDS, s.performance).items():
            out = merged.setdefault(kind, [])
            for i in range(0, len(flat), 2):
                out += [f"[{name}]{flat[i]}", flat[i + 1]]
    return _ops(keys.index(window_keys.perf), merged, expire_at) if merged else []


__all__ = [
    "ALL_FIELDS",
    "CATEGORICAL_META_FIELDS",
    "LISTED_META_FIELDS",
    "META_FIELDS",
    "NUMERIC_FIELDS",
    "PERFORMANCE_FIELDS",
    "SCORE_BINS",
    "Field",
    "KeyList",
    "Merge",
    "decode_performance",
    "decode_slice_performance",
    "decode_window",
    "encode_fields",
    "listed_meta_fields",
    "slice_performance_ops",
    "unpack",
    "window_ops",
]
