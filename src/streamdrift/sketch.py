"""Window state as mergeable sketches, and their vectorised update from a batch.

Every piece of window state has a zero, an update from a whole batch (numpy, never a
Python loop per event per feature), and a merge (`+`): a window in Redis is the sum of
the batch sketches applied to it, and a day is the sum of its hours (DESIGN decision 4).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from streamdrift.decode import ModelEvents
from streamdrift.profile import CategoricalProfile, ReferenceProfile, bin_index, category_key

_NUMBER_TYPES = frozenset({float, int, bool, type(None)})
_SCALAR_TYPES = frozenset({float, int, bool, str, type(None)})


@dataclass(slots=True)
class NumericSketch:
    """Histogram on the reference's bins plus moments, for one numeric feature."""

    bins: np.ndarray
    missing: int = 0
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    @classmethod
    def zero(cls, n_bins: int) -> NumericSketch:
        return cls(bins=np.zeros(n_bins, dtype=np.int64))

    def __add__(self, other: NumericSketch) -> NumericSketch:
        return NumericSketch(
            bins=self.bins + other.bins,
            missing=self.missing + other.missing,
            n=self.n + other.n,
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
        )

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    @property
    def std(self) -> float:
        if self.n < 2:
            return float("nan")
        var = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        return float(np.sqrt(max(var, 0.0)))


@dataclass(slots=True)
class CategoricalSketch:
    """Category counts (capped in Redis) plus missing values, for one categorical feature."""

    counts: Counter[str] = field(default_factory=Counter)
    missing: int = 0

    @classmethod
    def zero(cls) -> CategoricalSketch:
        return cls()

    def __add__(self, other: CategoricalSketch) -> CategoricalSketch:
        return CategoricalSketch(self.counts + other.counts, self.missing + other.missing)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def aligned(self, reference: CategoricalProfile) -> tuple[np.ndarray, np.ndarray]:
        """Reference and window counts over the same categories: the reference's, then
        "other" (reference's rare ones), then each category only the window has."""
        ref_keys = list(reference.categories)
        unseen = sorted(k for k in self.counts if k not in reference.categories)
        ref = [*reference.categories.values(), reference.other, *([0] * len(unseen))]
        cur = [*(self.counts.get(k, 0) for k in ref_keys), 0, *(self.counts[k] for k in unseen)]
        # "__other__" in a window holds categories beyond the Redis cap
        cur[len(ref_keys)] = self.counts.get("__other__", 0)
        return np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)


@dataclass(slots=True)
class WindowSketch:
    """All state of one model in one tumbling event-time window."""

    start: int
    count: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    numeric: dict[str, NumericSketch] = field(default_factory=dict)
    categorical: dict[str, CategoricalSketch] = field(default_factory=dict)

    def __add__(self, other: WindowSketch) -> WindowSketch:
        def merged(a: dict, b: dict) -> dict:
            return {k: a[k] + b[k] if k in a and k in b else a.get(k, b.get(k)) for k in a | b}

        return WindowSketch(
            start=min(self.start, other.start),
            count=self.count + other.count,
            versions=self.versions + other.versions,
            invalid=self.invalid + other.invalid,
            numeric=merged(self.numeric, other.numeric),
            categorical=merged(self.categorical, other.categorical),
        )


@dataclass(slots=True)
class BadEvent:
    index: int
    reason: str
    detail: str


def _bad_numeric_rows(rows: list[list[object]], names: list[str]) -> list[BadEvent]:
    bad = []
    for i, row in enumerate(rows):
        for name, value in zip(names, row, strict=True):
            if type(value) not in _NUMBER_TYPES:
                bad.append(BadEvent(i, "wrong_type", f"features.{name} is {type(value).__name__}"))
                break
    return bad


def _bad_scalar_rows(features: list[dict[str, object]]) -> list[BadEvent]:
    bad = []
    for i, feats in enumerate(features):
        for name, value in feats.items():
            if type(value) not in _SCALAR_TYPES:
                bad.append(BadEvent(i, "wrong_type", f"features.{name} is {type(value).__name__}"))
                break
    return bad


def validate_features(events: ModelEvents, profile: ReferenceProfile) -> list[BadEvent]:
    """Events whose feature values break the contract: a non-scalar anywhere, or a
    non-number where the reference has a number. One set() over all values finds the
    common all-good case without a Python loop per value."""
    feats = events.features
    bad: list[BadEvent] = []
    if not _SCALAR_TYPES.issuperset(map(type, chain.from_iterable(f.values() for f in feats))):
        bad = _bad_scalar_rows(feats)
    names = profile.numeric_features()
    rows = [[f.get(n) for n in names] for f in feats]
    if not _NUMBER_TYPES.issuperset(map(type, chain.from_iterable(rows))):
        # also when other rows already failed above: each bad row must be caught here, or
        # sketch_events fails on it and stops the worker
        flagged = {b.index for b in bad}
        bad += [b for b in _bad_numeric_rows(rows, names) if b.index not in flagged]
        bad.sort(key=lambda b: b.index)
    return bad


def sketch_events(events: ModelEvents, profile: ReferenceProfile) -> dict[int, WindowSketch]:
    """Per-window sketches of a batch's valid events of one model (validate first)."""
    n = len(events)
    if n == 0:
        return {}
    width = profile.config.window_seconds
    ts = np.asarray(events.timestamps, dtype=np.float64)
    starts, inv = np.unique((np.floor(ts / width) * width).astype(np.int64), return_inverse=True)
    n_win = starts.size
    windows = {int(s): WindowSketch(start=int(s)) for s in starts}
    per_window_count = np.bincount(inv, minlength=n_win)
    for w, s in enumerate(starts):
        windows[int(s)].count = int(per_window_count[w])
    for (w, version), c in Counter(zip(inv.tolist(), events.versions, strict=True)).items():
        if version is not None:
            windows[int(starts[w])].versions[version] += c

    names = profile.numeric_features()
    if names:
        x = np.array([[f.get(k) for k in names] for f in events.features], dtype=np.float64)
        x = x.reshape(n, len(names))
        present = ~np.isnan(x)
        filled = np.where(present, x, 0.0)
        for j, name in enumerate(names):
            ref = profile.features[name]
            edges = ref.edge_array()  # type: ignore[union-attr]
            nb = edges.size + 1
            col, ok = x[:, j], present[:, j]
            idx = bin_index(edges, col[ok])
            hist = np.bincount(inv[ok] * nb + idx, minlength=n_win * nb).reshape(n_win, nb)
            n_ok = np.bincount(inv[ok], minlength=n_win)
            sums = np.bincount(inv, weights=filled[:, j], minlength=n_win)
            sums_sq = np.bincount(inv, weights=filled[:, j] ** 2, minlength=n_win)
            for w, s in enumerate(starts):
                windows[int(s)].numeric[name] = NumericSketch(
                    bins=hist[w],
                    missing=int(per_window_count[w] - n_ok[w]),
                    n=int(n_ok[w]),
                    total=float(sums[w]),
                    total_sq=float(sums_sq[w]),
                )
        for w, s in enumerate(starts):
            rows = x[inv == w]
            lows, highs = np.fmin.reduce(rows, axis=0), np.fmax.reduce(rows, axis=0)
            for j, name in enumerate(names):
                sk = windows[int(s)].numeric[name]
                if sk.n:
                    sk.minimum, sk.maximum = float(lows[j]), float(highs[j])

    inv_list = inv.tolist()
    for name in profile.categorical_features():
        values = [f.get(name) for f in events.features]
        counts = Counter(zip(inv_list, values, strict=True))
        for s in starts:
            windows[int(s)].categorical[name] = CategoricalSketch()
        for (w, value), c in counts.items():
            sk = windows[int(starts[w])].categorical[name]
            if value is None:
                sk.missing += c
            else:
                sk.counts[category_key(value)] += c
    return windows
