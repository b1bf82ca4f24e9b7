"""Shared by the store tests (test_store_windows, test_store_join, test_store_poison):
reference profiles, prediction and label events, fences that move on every apply, a
field-by-field comparison of sketches, and a snapshot of every key of a model.

The comparison walks window_fields' tables, so it checks exactly the state Redis keeps;
test_store_windows checks separately that those tables name every sketch attribute.
Expected values always come from the Python sketches (`+`, `PerformanceSketch.from_pairs`)
or from scikit-learn, never from a re-statement of the Lua arithmetic."""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.decode import ModelEvents, ModelLabels
from streamdrift.join import join_delta
from streamdrift.performance import PerformanceSketch
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile
from streamdrift.sketch import WindowSketch, prediction_outputs, sketch_events
from streamdrift.store import ApplyRequest, Fence, FenceMoved, JoinDelta, JoinStats, Store
from streamdrift.store.depth_fields import CORRELATION_FIELDS
from streamdrift.store.keys import ModelKeys
from streamdrift.store.window_fields import (
    CATEGORICAL_META_FIELDS,
    META_FIELDS,
    NUMERIC_FIELDS,
    PERFORMANCE_FIELDS,
    Field,
    Merge,
)

#: the one fence every test apply moves (a topic incarnation "x", partition 0)
FENCE_FIELD = "t@x:0"
LABEL_TOPIC = "labels"


# ---- reference profiles --------------------------------------------------------------------
def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def binary_profile(
    directory: Path, config: MonitorConfig | None = None, label: bool = True
) -> ReferenceProfile:
    """The synthetic fraud model: four numeric features, two categorical ones, a score and
    (unless `label` is False) its 0/1 label: positive class "1"."""
    path = directory / "binary.csv"
    if not path.exists():
        synthetic.write_reference(path, rows=2000)
    return build_profile(
        "binary",
        path,
        task="binary",
        prediction_column="score",
        label_column="is_fraud" if label else None,
        features=[*synthetic.NUMERIC[:4], "country", "device"],
        config=config,
    )


def multiclass_profile(directory: Path) -> ReferenceProfile:
    rng = np.random.default_rng(3)
    classes = np.array(["a", "b", "c"])
    pred, actual = classes[rng.integers(0, 3, 300)], classes[rng.integers(0, 3, 300)]
    rows = zip(rng.normal(size=300).tolist(), pred.tolist(), actual.tolist(), strict=True)
    path = write_csv(directory / "multiclass.csv", ["x", "predicted", "actual"], rows)
    return build_profile(
        "multiclass", path, task="multiclass", prediction_column="predicted", label_column="actual"
    )


def regression_profile(directory: Path) -> ReferenceProfile:
    """A regressor whose labels have a reference mean near 50 (the label shift)."""
    rng = np.random.default_rng(4)
    y = rng.normal(50.0, 10.0, size=400)
    pred = y + rng.normal(0.0, 2.0, size=400)
    rows = zip(rng.normal(size=400).tolist(), pred.tolist(), y.tolist(), strict=True)
    path = write_csv(directory / "regression.csv", ["x", "pred", "y"], rows)
    return build_profile(
        "regression", path, task="regression", prediction_column="pred", label_column="y"
    )


def register(store: Store, profile: ReferenceProfile, model_id: str) -> ReferenceProfile:
    """`profile` saved under `model_id` (revision 1)."""
    return store.profiles.save(profile.model_copy(update={"model_id": model_id}))[0]


def current_window(profile: ReferenceProfile, now: float | None = None) -> int:
    width = profile.config.window_seconds
    return int((time.time() if now is None else now) // width * width)


# ---- events ------------------------------------------------------------------------------
def events(
    profile: ReferenceProfile,
    ids: Sequence[str],
    timestamps: Sequence[float],
    predictions: Sequence[Any],
    seed: int = 0,
    segments: Sequence[dict[str, Any] | None] | None = None,
    version: str = "1",
) -> ModelEvents:
    """Prediction events of `profile`'s model, with random values for its features."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    ev = ModelEvents()
    ev.prediction_ids = list(ids)
    ev.timestamps = [float(t) for t in timestamps]
    ev.predictions = list(predictions)
    ev.partitions = [0] * n
    ev.offsets = list(range(n))
    ev.versions = [version] * n
    ev.raws = [b"{}"] * n
    ev.segments = list(segments) if segments is not None else []
    ev.features = []
    for _ in range(n):
        f: dict[str, Any] = {}
        for name, col in profile.features.items():
            if col.kind == "numeric":
                f[name] = float(rng.normal(col.mean, col.std))
            else:
                f[name] = str(rng.choice(list(col.categories)))
        ev.features.append(f)
    return ev


def labels(ids: Sequence[str], timestamps: Sequence[float], values: Sequence[Any]) -> ModelLabels:
    n = len(ids)
    lb = ModelLabels()
    lb.prediction_ids = list(ids)
    lb.timestamps = [float(t) for t in timestamps]
    lb.labels = list(values)
    lb.partitions = [0] * n
    lb.offsets = list(range(n))
    lb.raws = [b"{}"] * n
    return lb


# ---- applies -----------------------------------------------------------------------------
def next_fences(store: Store, model_id: str) -> list[Fence]:
    """The fence moved one offset on from where Redis has it, as a worker moves it."""
    raw = store.redis.hget(ModelKeys(model_id).offsets, FENCE_FIELD)
    current = int(raw) if raw is not None else -1
    return [Fence(FENCE_FIELD, current, current + 1)]


def request(
    store: Store,
    profile: ReferenceProfile,
    windows: dict[int, WindowSketch] | None = None,
    join: JoinDelta | None = None,
) -> ApplyRequest:
    return ApplyRequest(
        profile,
        next_fences(store, profile.model_id),
        windows or {},
        Counter(),
        join,
        time.time(),
        store.profiles.champion(profile.model_id),  # as the worker reads it with the fences
    )


def apply(
    store: Store,
    profile: ReferenceProfile,
    windows: dict[int, WindowSketch] | None = None,
    join: JoinDelta | None = None,
) -> JoinStats:
    result = store.applies.apply(request(store, profile, windows, join))
    assert not isinstance(result, FenceMoved), result
    return result.stats


def apply_events(
    store: Store,
    profile: ReferenceProfile,
    ev: ModelEvents | None,
    lb: ModelLabels | None = None,
    with_windows: bool = True,
) -> JoinStats:
    """One batch as the worker applies it: the predictions' window sketches and the join
    delta built by `join_delta` from the decoded events."""
    ev = ev if ev is not None else ModelEvents()
    delta, dead = join_delta(profile, ev, prediction_outputs(ev, profile), lb, LABEL_TOPIC)
    assert dead == []
    windows = sketch_events(ev, profile) if with_windows and len(ev) else {}
    return apply(store, profile, windows, delta)


def record(store: Store, model_id: str, prediction_id: str) -> str | None:
    """The join's record of one id, as Redis's journal of its shard holds it."""
    return store.records.lookup(model_id, prediction_id)


# ---- comparisons -------------------------------------------------------------------------
#: one metric of a segment: summed as a float
_METRIC = Field("metric", "metric", Merge.FSUM)


def _keyed_equal(field: Field, got: Any, want: Any, rel: float, where: str) -> None:
    if isinstance(want, np.ndarray):
        assert got.shape == want.shape, where
        if field.merge is Merge.FSUM:
            assert np.allclose(got, want, rtol=rel, atol=1e-300), f"{where}: {got} != {want}"
        else:
            assert np.array_equal(got, want), f"{where}: {got} != {want}"
        return
    if field.attr == "segments":  # segment -> Counter of metrics, each a float sum
        for segment in got.keys() | want.keys():
            g, w = got.get(segment, Counter()), want.get(segment, Counter())
            _keyed_equal(_METRIC, g, w, rel, f"{where}[{segment}]")
        return
    for key in got.keys() | want.keys():
        g, w = got.get(key, 0), want.get(key, 0)
        if field.merge is Merge.FSUM:
            assert g == pytest.approx(w, rel=rel, abs=1e-300), f"{where}[{key!r}]"
        else:
            assert g == w, f"{where}[{key!r}]: {g!r} != {w!r}"


def assert_fields_equal(
    fields: Iterable[Field], got: Any, want: Any, rel: float = 1e-12, where: str = ""
) -> None:
    """Every field of `fields` equal on both objects: float sums within `rel`, everything
    else (counts, histograms, minima, maxima, first values) exactly."""
    for f in fields:
        g, w = getattr(got, f.attr), getattr(want, f.attr)
        name = f"{where}.{f.attr}"
        if f.keyed:
            _keyed_equal(f, g, w, rel, name)
        elif f.merge is Merge.FSUM:
            assert g == pytest.approx(w, rel=rel, abs=1e-300), name
        else:
            assert g == w, f"{name}: {g!r} != {w!r}"


def assert_performance_equal(
    got: PerformanceSketch | None, want: PerformanceSketch, rel: float = 1e-12, where: str = ""
) -> None:
    assert got is not None, f"{where}: no performance stored"
    assert_fields_equal(PERFORMANCE_FIELDS, got, want, rel, f"{where}.performance")


def assert_window_equal(got: WindowSketch, want: WindowSketch, rel: float = 1e-12) -> None:
    where = f"window {want.start}"
    assert got.start == want.start
    assert_fields_equal(META_FIELDS, got, want, rel, where)
    assert got.outlier_examples == want.outlier_examples, where
    assert got.numeric.keys() == want.numeric.keys(), where
    for name, s in want.numeric.items():
        assert_fields_equal(NUMERIC_FIELDS, got.numeric[name], s, rel, f"{where}.{name}")
    assert got.categorical.keys() == want.categorical.keys(), where
    for name, c in want.categorical.items():
        g = got.categorical[name]
        assert g.counts == c.counts, f"{where}.{name}.counts"
        assert_fields_equal(CATEGORICAL_META_FIELDS, g, c, rel, f"{where}.{name}")
    if want.performance is None:
        assert got.performance is None, where
    else:
        assert_performance_equal(got.performance, want.performance, rel, where)
    if want.correlation is None:
        assert got.correlation is None, where
    else:
        assert got.correlation is not None, f"{where}: no correlation sums stored"
        for f in CORRELATION_FIELDS:
            g, w = getattr(got.correlation, f.attr), getattr(want.correlation, f.attr)
            if f.merge is Merge.SUM:
                assert np.array_equal(g, w), f"{where}.correlation.{f.attr}: {g} != {w}"
            else:
                np.testing.assert_allclose(g, w, rtol=rel, atol=1e-300)
    assert got.slices.keys() == want.slices.keys(), where
    for name, sk in want.slices.items():
        assert_window_equal(got.slices[name], sk, rel)


# ---- snapshots -----------------------------------------------------------------------------
Snapshot = dict[bytes, tuple[bytes, int]]


def snapshot(store: Store, model_id: str) -> Snapshot:
    """Every key of the model: its serialized value (DUMP) and its expiry as an absolute
    time (PEXPIRETIME, which, unlike a TTL, does not change while nothing is written)."""
    out: Snapshot = {}
    for key in store.redis.scan_iter(match=f"{ModelKeys(model_id).tag}:*", count=1000):
        out[key] = (store.redis.dump(key), int(store.redis.execute_command("PEXPIRETIME", key)))
    return out
