"""sketch_events and validate_features, checked against counting done here with numpy,
collections.Counter and plain Python over the same events."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

from streamdrift.config import MonitorConfig
from streamdrift.decode import ModelEvents
from streamdrift.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    bin_index,
    category_key,
)
from streamdrift.sketch import NumericSketch, sketch_events, validate_features

WIDTH = 60
T0 = 1_800_000_000 + 5  # not on a window boundary; events span 3 windows


def make_events(features: list[dict], timestamps: list[float], versions=None) -> ModelEvents:
    n = len(features)
    return ModelEvents(
        partitions=[i % 3 for i in range(n)],
        offsets=list(range(n)),
        timestamps=list(timestamps),
        features=features,
        versions=list(versions) if versions is not None else [None] * n,
        predictions=[0.5] * n,
        prediction_ids=[f"p{i}" for i in range(n)],
        raws=[b"{}"] * n,
    )


def expected_key(value: object) -> str:
    """How the contract spells a category: JSON true -> "true", 3.0 -> "3"."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def expected_bins(values: list[float], edges: list[float]) -> np.ndarray:
    """[below the minimum, np.histogram's bins on the edges (last one closed), above]."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    below = int(np.count_nonzero(v < e[0]))
    above = int(np.count_nonzero(v > e[-1]))
    inner, _ = np.histogram(v[(v >= e[0]) & (v <= e[-1])], bins=e)
    return np.array([below, *inner.tolist(), above])


@pytest.fixture
def batch(small_profile: ReferenceProfile) -> ModelEvents:
    """300 events over 3 windows: values inside the reference, on its edges, beyond both
    ends, ints, booleans, nulls, absent keys, unseen categories, 2.0 for the code 2."""
    rng = np.random.default_rng(11)
    amount_edges = small_profile.features["amount"].edges
    age_edges = small_profile.features["age"].edges
    specials = [*amount_edges, amount_edges[0] - 1.0, amount_edges[-1] + 1.0, None, 7, True]
    features, timestamps, versions = [], [], []
    for i in range(300):
        f: dict[str, object] = {
            "amount": float(rng.lognormal(3.0, 1.2))
            if i % 4
            else specials[(i // 4) % len(specials)],
            "age": int(rng.integers(10, 100)) if i % 5 else [None, age_edges[0], 17.5][i % 3],
            "country": ["DE", "FR", "US", "JP", None][int(rng.integers(0, 5))],
            "vip": [True, False, None][i % 3],
            "channel": [1, 2, 2.0, 3][i % 4],
        }
        if i % 23 == 0:
            del f["amount"]  # absent: missing
        if i % 29 == 0:
            del f["country"]
        features.append(f)
        timestamps.append(T0 + float(rng.uniform(0, 3 * WIDTH - 10)))
        versions.append(["1.0", "1.1", None][int(rng.integers(0, 3))])
    order = rng.permutation(300)  # not sorted by time
    return make_events(
        [features[i] for i in order], [timestamps[i] for i in order], [versions[i] for i in order]
    )


def reference_windows(events: ModelEvents) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(events.timestamps):
        groups[math.floor(t / WIDTH) * WIDTH].append(i)
    return dict(groups)


def test_window_counts_and_versions(batch, small_profile):
    assert small_profile.config.window_seconds == WIDTH
    windows = sketch_events(batch, small_profile)
    groups = reference_windows(batch)
    assert len(groups) == 3
    assert sorted(windows) == sorted(groups)
    for start, idx in groups.items():
        w = windows[start]
        assert w.start == start
        assert w.count == len(idx)
        assert w.versions == Counter(batch.versions[i] for i in idx if batch.versions[i])
        assert w.invalid == Counter()
    assert sum(w.count for w in windows.values()) == 300


@pytest.mark.parametrize("name", ["amount", "age"])
def test_numeric_sketch_matches_numpy(batch, small_profile, name):
    assert small_profile.features[name].kind == "numeric"
    edges = small_profile.features[name].edges
    windows = sketch_events(batch, small_profile)
    for start, idx in reference_windows(batch).items():
        raw = [batch.features[i].get(name) for i in idx]
        present = [float(v) for v in raw if v is not None]
        sk = windows[start].numeric[name]
        assert sk.bins.tolist() == expected_bins(present, edges).tolist()
        assert len(sk.bins) == len(edges) + 1
        assert sk.n == len(present)
        assert sk.missing == sum(v is None for v in raw)
        assert sk.total == pytest.approx(math.fsum(present), rel=1e-12)
        assert sk.total_sq == pytest.approx(math.fsum(v * v for v in present), rel=1e-12)
        assert sk.minimum == min(present)
        assert sk.maximum == max(present)
        assert sk.mean == pytest.approx(np.mean(present), rel=1e-12)
        assert sk.std == pytest.approx(np.std(present, ddof=1), rel=1e-9)


def test_the_batch_reaches_every_bin_kind(batch, small_profile):
    """Guards the data above: under- and overflow and the closed last edge all occur."""
    edges = small_profile.features["amount"].edges
    values = [f["amount"] for f in batch.features if f.get("amount") is not None]
    assert any(v < edges[0] for v in values)
    assert any(v > edges[-1] for v in values)
    assert any(v == edges[-1] for v in values)
    assert any(v is True for v in values)


@pytest.mark.parametrize("name", ["country", "vip", "channel"])
def test_categorical_sketch_matches_counter(batch, small_profile, name):
    assert small_profile.features[name].kind == "categorical"
    windows = sketch_events(batch, small_profile)
    for start, idx in reference_windows(batch).items():
        raw = [batch.features[i].get(name) for i in idx]
        sk = windows[start].categorical[name]
        assert sk.counts == Counter(expected_key(v) for v in raw if v is not None)
        assert sk.missing == sum(v is None for v in raw)
        assert sk.n + sk.missing == len(idx)


def test_category_spelling():
    assert [category_key(v) for v in ("DE", True, False, 3, 3.0, 2.5, "3")] == [
        "DE",
        "true",
        "false",
        "3",
        "3",
        "2.5",
        "3",
    ]


def test_halves_add_up_to_the_whole(batch, small_profile):
    # one event of the first half gets a window of its own: merging meets one-sided windows
    events = _with_timestamp(batch, 0, T0 - 10 * WIDTH)
    whole = sketch_events(events, small_profile)
    a = sketch_events(events.select(list(range(150))), small_profile)
    b = sketch_events(events.select(list(range(150, 300))), small_profile)
    assert len(a) == 4 and len(b) == 3
    assert len(whole) == 4
    merged = {s: a[s] + b[s] if s in a and s in b else a.get(s, b.get(s)) for s in a | b}
    assert sorted(merged) == sorted(whole)
    for s, w in whole.items():
        m = merged[s]
        assert (m.start, m.count, m.versions) == (w.start, w.count, w.versions)
        assert sorted(m.numeric) == sorted(w.numeric)
        for name, sk in w.numeric.items():
            got = m.numeric[name]
            assert got.bins.tolist() == sk.bins.tolist()
            assert (got.n, got.missing, got.minimum, got.maximum) == (
                sk.n,
                sk.missing,
                sk.minimum,
                sk.maximum,
            )
            assert got.total == pytest.approx(sk.total, rel=1e-12)
            assert got.total_sq == pytest.approx(sk.total_sq, rel=1e-12)
        assert sorted(m.categorical) == sorted(w.categorical)
        for name, sk in w.categorical.items():
            assert m.categorical[name].counts == sk.counts
            assert m.categorical[name].missing == sk.missing


def _with_timestamp(events: ModelEvents, i: int, t: float) -> ModelEvents:
    out = events.select(list(range(len(events))))
    out.timestamps[i] = t
    return out


def test_window_merge_of_whole_windows(batch, small_profile):
    """A longer window is the sum of shorter ones: all three windows added up equal the
    batch sketched with one window spanning them."""
    wide = small_profile.model_copy(
        update={"config": MonitorConfig(window_seconds=3600, numeric_bins=5)}
    )
    assert math.floor((T0 + 3 * WIDTH) / 3600) == math.floor(T0 / 3600)  # one hour window
    (hour,) = sketch_events(batch, wide).values()
    parts = list(sketch_events(batch, small_profile).values())
    total = parts[2] + parts[1] + parts[0]  # in any order
    assert total.count == hour.count == 300
    assert total.start == min(p.start for p in parts)
    for name in ("amount", "age"):
        assert total.numeric[name].bins.tolist() == hour.numeric[name].bins.tolist()
        assert total.numeric[name].n == hour.numeric[name].n
    assert total.categorical["country"].counts == hour.categorical["country"].counts


def test_hand_counted_bins():
    """Edges [0, 1, 2]: bins (-inf, 0), [0, 1), [1, 2], (2, inf)."""
    profile = _profile(
        NumericProfile(
            edges=[0.0, 1.0, 2.0],
            counts=[0, 1, 1, 0],
            count=2,
            missing=0,
            mean=1.0,
            std=1.0,
            min=0.0,
            max=2.0,
        )
    )
    values = [-1.0, 0.0, 0.5, 0.999, 1.0, 1.5, 2.0, 2.0001, 3, None, False, True]
    windows = sketch_events(make_events([{"x": v} for v in values], [0.0] * 12), profile)
    sk = windows[0].numeric["x"]
    # -1 | 0, 0.5, 0.999, False | 1.0, 1.5, 2.0, True | 2.0001, 3
    assert sk.bins.tolist() == [1, 4, 4, 2]
    assert (sk.n, sk.missing, sk.minimum, sk.maximum) == (11, 1, -1.0, 3.0)


def test_constant_reference_column():
    profile = _profile(
        NumericProfile(
            edges=[5.0, 5.0],
            counts=[0, 3, 0],
            count=3,
            missing=0,
            mean=5.0,
            std=0.0,
            min=5.0,
            max=5.0,
        )
    )
    values = [4.0, 5.0, 5, 6.0, 5.0]
    sk = sketch_events(make_events([{"x": v} for v in values], [0.0] * 5), profile)[0]
    assert sk.numeric["x"].bins.tolist() == [1, 3, 1]
    assert bin_index(np.array([5.0, 5.0]), np.array([4.9, 5.0, 5.1])).tolist() == [0, 1, 2]


def test_window_with_only_missing_values():
    profile = _profile(
        NumericProfile(
            edges=[0.0, 1.0],
            counts=[0, 1, 0],
            count=1,
            missing=0,
            mean=0.5,
            std=0.0,
            min=0.0,
            max=1.0,
        )
    )
    events = make_events([{"x": 0.5}, {"x": None}, {}], [0.0, 7200.0, 7201.0])
    windows = sketch_events(events, profile)
    empty = windows[7200].numeric["x"]
    assert (empty.n, empty.missing, empty.bins.tolist()) == (0, 2, [0, 0, 0])
    assert empty.total == 0.0
    assert math.isnan(empty.mean)
    assert windows[0].numeric["x"].n == 1


def test_no_events():
    assert sketch_events(make_events([], []), _profile(None)) == {}


def test_numeric_sketch_zero_is_neutral():
    sk = NumericSketch(
        bins=np.array([1, 2, 3]),
        missing=1,
        n=6,
        total=9.0,
        total_sq=20.0,
        minimum=-1.0,
        maximum=4.0,
    )
    z = NumericSketch.zero(3) + sk
    assert z.bins.tolist() == [1, 2, 3]
    assert (z.missing, z.n, z.total, z.total_sq, z.minimum, z.maximum) == (
        1,
        6,
        9.0,
        20.0,
        -1.0,
        4.0,
    )


def _profile(numeric: NumericProfile | None) -> ReferenceProfile:
    features: dict = {
        "c": CategoricalProfile(
            categories={"a": 1},
            other=0,
            count=1,
            missing=0,
            cardinality=1,
        )
    }
    if numeric is not None:
        features["x"] = numeric
    return ReferenceProfile(
        model_id="m",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="test",
        rows=3,
        task="binary",
        features=features,
        config=MonitorConfig(window_seconds=3600),
    )


# ---- validate_features ----------------------------------------------------------------


def test_validate_passes_numbers_booleans_none_and_strings_where_allowed(small_profile):
    features = [
        {"amount": 1, "age": 30, "country": "DE"},
        {"amount": 2.5, "age": None, "vip": True},
        {"amount": True, "age": False, "channel": 3},
        {"country": None, "extra": "anything"},
        {},
    ]
    assert validate_features(make_events(features, [0.0] * 5), small_profile) == []


def test_validate_flags_string_in_numeric_feature(small_profile):
    features = [{"amount": 1.0}, {"amount": 2.0}, {"amount": 3.0, "age": "42"}, {"age": 4}]
    bad = validate_features(make_events(features, [0.0] * 4), small_profile)
    assert [(b.index, b.reason) for b in bad] == [(2, "wrong_type")]
    assert "age" in bad[0].detail and "str" in bad[0].detail


@pytest.mark.parametrize("name", ["amount", "country", "not_in_profile"])
@pytest.mark.parametrize("nested", [{"a": 1}, [1, 2]], ids=["object", "array"])
def test_validate_flags_nested_values_anywhere(small_profile, name, nested):
    features = [{"amount": 1.0}, {"amount": 2.0, name: nested}, {"amount": 3.0}]
    bad = validate_features(make_events(features, [0.0] * 3), small_profile)
    assert [(b.index, b.reason) for b in bad] == [(1, "wrong_type")]
    assert name in bad[0].detail


def test_validate_flags_every_bad_row_and_the_rest_can_be_sketched(small_profile):
    """A nested object in one event must not hide a string in a numeric feature in another:
    the batch left after removing the flagged rows is sketched without error."""
    features = [
        {"amount": 1.0, "country": "DE"},
        {"amount": 2.0, "country": {"code": "DE"}},
        {"amount": 3.0},
        {"amount": "lots"},
        {"age": ["x"], "amount": "also bad"},
        {"amount": 4.0},
    ]
    events = make_events(features, [T0] * 6)
    bad = validate_features(events, small_profile)
    assert [(b.index, b.reason) for b in bad] == [
        (1, "wrong_type"),
        (3, "wrong_type"),
        (4, "wrong_type"),
    ]
    keep = events.select([0, 2, 5])
    (window,) = sketch_events(keep, small_profile).values()
    assert window.count == 3
    assert window.numeric["amount"].total == 8.0
