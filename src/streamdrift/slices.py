"""Slices of a model's traffic: each model version, and each value of the segment keys
declared at register.

A slice is monitored like the model itself (its own window state: counts, histograms,
category counts, outliers, labelled performance), so a broken version or a drifting
region is seen on its own instead of blended into the model's figures. Slices are
bounded whatever the traffic sends:

- versions: at most `max_versions` of them have slices of their own, the newest by
  first appearance; events of older ones count in the version slice `__other__`. Which
  versions exist, and in what order they appeared, lives in the model's offsets hash
  (`__versions__` and `__version__:<v>`), fenced like an offset: two workers that both
  meet a new version cannot give it two places;
- segment values: the reference's most frequent `max_segment_values` values of each
  declared key; any other value (one the reference never had) counts in `<key>=__other__`.

A slice is named `v=<version>` or `<key>=<value>`; names are safe in Redis keys and in
the performance hash's slice prefix (`[<slice>]<field>`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from streamdrift.profile import category_key

#: the slice of values beyond a cap
OTHER = "__other__"
#: offsets-hash fields of the version registry: how many versions are known, and the
#: order in which each appeared (0, 1, ...)
VERSION_COUNT = "__versions__"
VERSION_FIELD = "__version__:"
#: a slice's name is cut to this length (a version string is the user's)
MAX_NAME = 64
_UNSAFE = str.maketrans(
    {"[": "(", "]": ")", "|": "/", ",": ";", ":": ".", "\n": " ", "\t": " ", "\x1f": " "}
)


def clean(text: str) -> str:
    """A version or segment value as spelled in slice names."""
    return text[:MAX_NAME].translate(_UNSAFE)


def version_slice(version: str) -> str:
    return f"v={version}"


def segment_slice(key: str, value: str) -> str:
    return f"{key}={value}"


def split(name: str) -> tuple[str, str]:
    """(dimension, value) of a slice name: ("v", "2.0") or ("region", "eu")."""
    dim, _, value = name.partition("=")
    return dim, value


@dataclass(frozen=True, slots=True)
class VersionPlan:
    """Which versions have slices of their own for one batch, from the version registry
    as the worker read it (and the versions the batch brings that it lacks)."""

    #: versions known before the batch: version -> order of appearance
    known: Mapping[str, int]
    #: versions first met in this batch, in order, with the order they get
    new: tuple[tuple[str, int], ...]
    kept: frozenset[str]

    @property
    def count(self) -> int:
        """Versions known before the batch (the fence's expected value; -1: none yet)."""
        return len(self.known)

    def slice_of(self, version: str | None) -> str | None:
        if version is None:
            return None
        v = clean(version)
        return version_slice(v if v in self.kept else OTHER)


NO_VERSIONS = VersionPlan({}, (), frozenset())


def read_versions(offsets: Mapping[str, int]) -> dict[str, int]:
    """The version registry out of a model's offsets hash."""
    n = len(VERSION_FIELD)
    return {f[n:]: int(o) for f, o in offsets.items() if f.startswith(VERSION_FIELD)}


def plan_versions(
    known: Mapping[str, int], versions: Iterable[str | None], max_versions: int
) -> VersionPlan:
    order = dict(known)
    new: list[tuple[str, int]] = []
    for v in dict.fromkeys(versions):
        if v is None:
            continue
        c = clean(v)
        if c not in order:
            order[c] = len(order)
            new.append((c, order[c]))
    newest = sorted(order, key=order.__getitem__)[-max_versions:] if max_versions else []
    return VersionPlan(dict(known), tuple(new), frozenset(newest))


@dataclass(slots=True)
class Dimension:
    """One way of slicing a batch: each event's slice (an index into `names`, -1 for an
    event outside every slice of it, e.g. one without a version)."""

    codes: np.ndarray
    names: list[str] = field(default_factory=list)


def dimension(values: list[object], name_of: Callable[[object], str | None]) -> Dimension | None:
    """Codes of each event's slice, naming each distinct value once (`name_of`; None:
    the event is in no slice of this dimension); None when no event is in one."""
    keys: list[object] = values
    uniq = list(dict.fromkeys(values))
    if bool in set(map(type, values)):  # True == 1 as dict keys: tell them apart
        keys = list(zip(map(type, values), values, strict=True))
        uniq = list(dict.fromkeys(keys))
        named = {k: name_of(k[1]) for k in uniq}  # type: ignore[index]
    else:
        named = {k: name_of(k) for k in uniq}
    names = list(dict.fromkeys(n for n in named.values() if n is not None))
    if not names:
        return None
    index = {n: i for i, n in enumerate(names)}
    code_of = {k: -1 if n is None else index[n] for k, n in named.items()}
    codes = np.fromiter(map(code_of.__getitem__, keys), dtype=np.int64, count=len(keys))
    return Dimension(codes, names)


def segment_namer(key: str, kept: Iterable[str]) -> Callable[[object], str | None]:
    """The slice of one value of segment key `key`: its own if kept, else `__other__`."""
    keep = frozenset(kept)

    def name_of(value: object) -> str | None:
        if value is None:
            return None
        v = clean(category_key(value))
        return segment_slice(key, v if v in keep else OTHER)

    return name_of


def segment_values(segments: list[dict[str, object] | None], key: str) -> list[object]:
    """Each event's value of segment key `key` (None: the event has none)."""
    if not segments:
        return []
    return [seg.get(key) if seg else None for seg in segments]


def fold_segments(
    segments: list[dict[str, object] | None], kept: Mapping[str, Iterable[str]]
) -> list[dict[str, object] | None]:
    """The events' segments with the declared keys' values as their slices name them
    (cleaned, `__other__` beyond the kept ones); other keys as sent. Each distinct value
    is named once, and each segments object folded once (the columnar decode gives events
    with the same segments one shared dict)."""
    if not kept:
        return segments
    keep = {k: frozenset(v) for k, v in kept.items()}
    cache: dict[tuple[str, type, object], str] = {}
    done: dict[int, dict[str, object]] = {}
    out: list[dict[str, object] | None] = []
    for seg in segments:
        if not seg or not keep.keys() & seg.keys():
            out.append(seg)
            continue
        same = done.get(id(seg))
        if same is not None:
            out.append(same)
            continue
        folded = done[id(seg)] = dict(seg)
        for k, values in keep.items():
            v = seg.get(k)
            if v is not None:
                ck = (k, type(v), v)
                name = cache.get(ck)
                if name is None:
                    c = clean(category_key(v))
                    name = cache[ck] = c if c in values else OTHER
                folded[k] = name
        out.append(folded)
    return out


@dataclass(slots=True)
class Slicer:
    """One model's slicing of one batch: the dimensions of its good events, and the
    version registry as the batch leaves it (`plan`, read once the events are sliced)."""

    max_versions: int
    #: segment key -> the values with slices of their own
    segment_values: Mapping[str, list[str]]
    known: Mapping[str, int]
    plan: VersionPlan = NO_VERSIONS

    def __call__(self, versions: list[str | None], segments: list[dict | None]) -> list[Dimension]:
        dims = []
        if self.max_versions:
            self.plan = plan_versions(self.known, versions, self.max_versions)
            d = dimension(versions, self.plan.slice_of)  # type: ignore[arg-type]
            if d is not None:
                dims.append(d)
        if segments:
            for key, kept in self.segment_values.items():
                d = dimension(segment_values(segments, key), segment_namer(key, kept))
                if d is not None:
                    dims.append(d)
        return dims

    def record_versions(self, versions: list[str | None]) -> list[str | None]:
        """Versions as the join's records spell them: their slice's version."""
        if not self.max_versions:
            return versions
        named = {v: None if v is None else self.plan.slice_of(v)[2:] for v in set(versions)}  # type: ignore[index]
        return list(map(named.__getitem__, versions))
