"""What a window is in Redis, held together through a real server: applying sketch `a`
and then sketch `b` to a window and reading it back gives `a + b` (the sketches' own
merge), field by field, for every field window_fields and depth_fields define (the
reconstruction-error column and the correlation sums among them), and the distinct
values of both, counted by Redis's HyperLogLog, one window at a time and pooled. Also:
categories that are spelled like the stored markers stay categories, the category cap,
and a check without a server that the field table, the sketches and apply.lua agree on
names and merge kinds."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamdrift.config import MonitorConfig
from streamdrift.correlation import CorrelationSketch
from streamdrift.performance import PerformanceSketch, score_edges
from streamdrift.profile import LABEL, ReferenceProfile
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch, sketch_events
from streamdrift.store import Store
from streamdrift.store.depth_fields import CORRELATION_FIELDS, PFADD
from streamdrift.store.keys import ModelKeys
from streamdrift.store.window_deltas import fold_fields
from streamdrift.store.window_fields import (
    ALL_FIELDS,
    CATEGORICAL_META_FIELDS,
    META_FIELDS,
    NUMERIC_FIELDS,
    PERFORMANCE_FIELDS,
    Field,
    encode_fields,
)

from .store_support import (
    apply,
    assert_window_equal,
    binary_profile,
    current_window,
    events,
    register,
)

pytestmark = pytest.mark.integration

APPLY_LUA = (
    Path(__file__).parents[2] / "src" / "streamdrift" / "store" / "lua" / "apply.lua"
).read_text()


SEEDS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def base_profile(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProfile:
    return binary_profile(tmp_path_factory.mktemp("windows"))


# ---- random sketches --------------------------------------------------------------------
def _numeric(rng: np.random.Generator, n_bins: int) -> NumericSketch:
    """A column's sketch with some empty bins; now and then a column with no values."""
    if rng.uniform() < 0.2:
        return NumericSketch(bins=np.zeros(n_bins, np.int64), missing=int(rng.integers(1, 9)))
    bins = rng.integers(0, 40, n_bins) * (rng.uniform(size=n_bins) < 0.7)
    n = int(bins.sum())
    low, high = sorted(rng.normal(0, 1e3, 2).tolist())
    return NumericSketch(
        bins=bins.astype(np.int64),
        missing=int(rng.integers(0, 20)),
        n=n,
        total=float(rng.normal(0, 1e4)),
        total_sq=float(rng.uniform(1, 1e8)),
        minimum=low,
        maximum=high,
        out_of_range=int(rng.integers(0, 5)),
    )


def _categorical(rng: np.random.Generator, categories: list[str]) -> CategoricalSketch:
    """Counts of some known categories and one the reference never saw; `other` stays 0
    (nothing here reaches the cap)."""
    chosen = rng.choice(categories, size=int(rng.integers(1, len(categories) + 1)), replace=False)
    counts = Counter({str(c): int(rng.integers(1, 300)) for c in chosen})
    counts[f"new-{int(rng.integers(3))}"] += int(rng.integers(1, 10))
    return CategoricalSketch(counts=counts, missing=int(rng.integers(0, 30)))


def _performance(rng: np.random.Generator, n: int) -> PerformanceSketch:
    """Every performance field non-zero: a binary model's pairs (confusion matrix, score
    histograms, log loss, Brier) plus a regressor's (errors, label sums, percentage
    errors), with per-segment sums and some confusion-matrix overflow."""
    score = rng.uniform(size=n)
    actual = (rng.uniform(size=n) < score).astype(int).tolist()
    predicted = (score >= 0.5).astype(int).tolist()
    delays = rng.integers(0, 100_000, n).astype(np.float64)
    # in a layout with edges: its calibration bins' score sums are stored too
    edges = score_edges(rng.uniform(size=1000))
    times = rng.uniform(0, 3600, n)
    binary = PerformanceSketch.from_pairs(
        "binary",
        actual,
        predicted,
        score,
        "1",
        delays,
        score_edges=edges,
        parts=(times, 0, 3600, 10),
    )
    assert binary.sub_windows
    assert binary.score_sums.any()
    y = rng.normal(50, 10, n)
    y[0] = 0.0  # no percentage error for it
    regression = PerformanceSketch.from_pairs(
        "regression", y.tolist(), score=y + rng.normal(0, 2, n), delays=delays, shift=48.5
    )
    s = binary + regression
    s.confusion_other = int(rng.integers(1, 5))
    s.segments = {
        f"region={r}": Counter(
            n=int(rng.integers(1, 50)), ok=int(rng.integers(0, 20)), ae=float(rng.uniform(0, 9))
        )
        for r in ("EU", "US")
    }
    return s


def _correlation(rng: np.random.Generator, pairs: int) -> CorrelationSketch:
    """Sums of standardised values for each pair, one pair now and then without events."""
    n = rng.integers(1, 500, pairs) * (rng.uniform(size=pairs) < 0.8)
    with_events = n > 0

    def sums(scale: float, positive: bool = False) -> np.ndarray:
        v = rng.uniform(0, scale, pairs) if positive else rng.normal(0, scale, pairs)
        return np.where(with_events, v, 0.0)

    return CorrelationSketch(
        n=n.astype(np.int64),
        sx=sums(20.0),
        sy=sums(20.0),
        sxx=sums(500.0, positive=True),
        syy=sums(500.0, positive=True),
        sxy=sums(300.0),
    )


def random_window(
    rng: np.random.Generator,
    profile: ReferenceProfile,
    start: int,
    examples: int,
    slices: tuple[str, ...] = ("v=1.0.0", "region=eu"),
    whole: bool = True,
) -> WindowSketch:
    """A window sketch with every field of META_FIELDS, CATEGORICAL_META_FIELDS,
    NUMERIC_FIELDS and PERFORMANCE_FIELDS set, for every column of the profile (features,
    prediction, label and, for a whole window, the reconstruction error), for a whole
    window correlation sums for its pairs, `examples` outlier examples, and the slices
    named, each a random window of its own (without outlier examples: slices keep none,
    nor multivariate state)."""
    w = WindowSketch(start=start)
    for name in slices:
        w.slices[name] = random_window(rng, profile, start, 0, (), whole=False)
        w.slice_counts[name] = w.slices[name].count
    w.count = int(rng.integers(1, 100_000))
    w.outliers = int(rng.integers(1, 50))
    w.duplicates = int(rng.integers(1, 50))
    w.duplicate_example = f"dup-{int(rng.integers(1 << 40))}"
    w.versions = Counter({v: int(rng.integers(1, 900)) for v in ("1.0.0", "1.1.0", "2.0.0-rc1")})
    w.invalid = Counter(
        {
            "wrong_type:amount": int(rng.integers(1, 9)),
            "wrong_type:f01": int(rng.integers(1, 9)),
            "out_of_bounds": int(rng.integers(1, 9)),
        }
    )
    extra = ["amount_eur", "session_len"]
    w.extra = Counter({e: int(rng.integers(5, 50)) for e in extra})
    w.extra_numbers = Counter({e: int(rng.integers(1, 5)) for e in extra})
    # sums of a renamed feature's values: any sign
    w.extra_sums = Counter({e: float(rng.normal(0, 1e3)) for e in extra})
    w.outlier_examples = [
        {
            "prediction_id": f"p-{start}-{i}-{int(rng.integers(1 << 30))}",
            "score": round(float(rng.uniform(10, 90)), 4),
            "features": [{"feature": "f00", "z": round(float(rng.normal()), 3), "share": 0.7}],
        }
        for i in range(examples)
    ]
    columns = {**profile.features, **profile.outputs()}
    if whole:
        columns.update(profile.derived_columns())
    else:  # a slice counts its events' columns; labels join into the window's hashes
        columns.pop(LABEL, None)
    for name, col in columns.items():
        if col.kind == "numeric":
            w.numeric[name] = _numeric(rng, len(col.edges) + 1)
        else:
            w.categorical[name] = _categorical(rng, list(col.categories))
    w.performance = _performance(rng, int(rng.integers(20, 200)))
    assert profile.calibration is not None
    bins = rng.choice(profile.calibration.bins, size=40, replace=False)
    w.score_bins = Counter({int(b): int(rng.integers(1, 5000)) for b in bins})
    mv = profile.multivariate
    if whole and mv is not None and mv.correlation is not None:
        k = len(mv.correlation.features)
        w.correlation = _correlation(rng, k * (k - 1) // 2)
    return w


def _stored_names(fields: tuple[Field, ...], *objs: object) -> set[str]:
    """The Field names `encode_fields` writes for `objs` (a keyed one once)."""
    return {
        str(name).partition(":")[0]
        for obj in objs
        for data in encode_fields(fields, obj, prefix="c").values()
        for name in data[::2]
    }


def test_random_windows_set_every_field(base_profile: ReferenceProfile) -> None:
    """The round trip below proves something for every field only if the random sketches
    give each one a value (`other` aside: nothing reaches the cap there)."""
    assert base_profile.derived_columns(), "the profile has no reconstruction-error column"
    mv = base_profile.multivariate
    assert mv is not None and mv.correlation is not None and len(mv.correlation.features) == 4
    for seed in SEEDS:
        w = random_window(np.random.default_rng(seed), base_profile, 0, 1)
        assert _stored_names(META_FIELDS, w) == {f.name for f in META_FIELDS}
        numeric = _stored_names(NUMERIC_FIELDS, *w.numeric.values())
        assert numeric == {f.name for f in NUMERIC_FIELDS}
        assert _stored_names(CATEGORICAL_META_FIELDS, *w.categorical.values()) == {"cat_missing"}
        performance = _stored_names(PERFORMANCE_FIELDS, w.performance)
        assert performance == {f.name for f in PERFORMANCE_FIELDS}
        assert w.correlation is not None
        assert all(getattr(w.correlation, f.attr).any() for f in CORRELATION_FIELDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_reading_two_applies_gives_the_merge_of_their_sketches(
    store: Store, model_id: str, base_profile: ReferenceProfile, seed: int
) -> None:
    """`read(apply(a); apply(b)) == a + b` for two windows at once: counts and histograms
    exactly, float sums within 1e-12 (Redis adds them in long double), minima and maxima
    exactly, the first duplicate example kept, outlier examples in order."""
    profile = register(store, base_profile, model_id)
    rng = np.random.default_rng(seed)
    cap = profile.config.outlier_alerts_per_window
    starts = [current_window(profile) - profile.config.window_seconds, current_window(profile)]
    first, second = {}, {}
    for s in starts:
        n = int(rng.integers(0, cap + 1))
        first[s] = random_window(rng, profile, s, n)
        second[s] = random_window(rng, profile, s, int(rng.integers(0, cap - n + 1)))
    apply(store, profile, first)
    apply(store, profile, second)

    read = store.windows.read(
        profile, store.windows.starts(model_id, profile.revision), slices=True
    )
    assert [w.start for w in read] == starts
    for got, s in zip(read, starts, strict=True):
        want = first[s] + second[s]
        assert want.duplicate_example == first[s].duplicate_example
        assert_window_equal(got, want)
        # distinct values: the categories either sketch had, as Redis's HyperLogLog counts
        for name in profile.categorical_features():
            values = {*first[s].categorical[name].counts, *second[s].categorical[name].counts}
            assert got.distinct[name] == pytest.approx(len(values), abs=1), name
    # pooled: PFCOUNT over both windows' HyperLogLogs counts their union once
    pooled = store.windows.distinct(profile, starts)
    for name in profile.categorical_features():
        union = {k for w in (*first.values(), *second.values()) for k in w.categorical[name].counts}
        assert pooled[name] == pytest.approx(len(union), abs=1), name
        assert pooled[name] <= sum(w.distinct[name] for w in read)


def test_every_key_of_a_window_expires_when_the_window_does(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """The script sets a key's expiry once however many of the call's operations touch
    it: every key of the window and of its slices still expires at the window's end plus
    the retention, after a second call too."""
    profile = register(store, base_profile, model_id)
    rng = np.random.default_rng(3)
    s = current_window(profile)
    for _ in range(2):
        apply(store, profile, {s: random_window(rng, profile, s, 1)})
    want = s + profile.config.window_seconds + profile.config.retention_seconds
    prefix = f"sd:{{{model_id}}}:w:{profile.revision}:{s}"
    keys = [k.decode() for k in store.redis.scan_iter(match=f"{prefix}*", count=1000)]
    assert len(keys) > 10 and any("|" in k for k in keys)  # slices' keys among them
    assert any(k.endswith("|v=1.0.0:nd") for k in keys)  # a slice's numeric deltas too
    assert {k: store.redis.expiretime(k) for k in keys} == dict.fromkeys(keys, want)


def test_distinct_counts_of_many_values_within_the_hyperloglogs_error(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """An identifier leaking into a category: 20,000 distinct values over four applies
    of two windows, some values in both. Each window's count and the pooled count are
    within 2 % (the HyperLogLog's standard error is 0.81 %) of the exact ones."""
    profile = register(store, base_profile, model_id)
    width = profile.config.window_seconds
    starts = [current_window(profile) - width, current_window(profile)]
    exact: dict[int, set[str]] = {s: set() for s in starts}
    for batch in range(4):
        windows = {}
        for i, s in enumerate(starts):
            values = [f"id-{batch * 4000 + i * 2000 + j}" for j in range(6000)]
            exact[s].update(values)
            w = WindowSketch(start=s, count=len(values))
            w.categorical["country"] = CategoricalSketch(counts=Counter(values))
            windows[s] = w
        apply(store, profile, windows)
    read = store.windows.read(profile, starts)
    for w in read:
        assert w.distinct["country"] == pytest.approx(len(exact[w.start]), rel=0.02)
    union = exact[starts[0]] | exact[starts[1]]
    assert store.windows.distinct(profile, starts)["country"] == pytest.approx(len(union), rel=0.02)
    key = ModelKeys(model_id).window(profile.revision, starts[1]).hll("country")
    ttl = store.redis.ttl(key)
    assert 0 < ttl <= 2 * width + profile.config.retention_seconds


def test_a_batch_score_histogram_reads_back_as_numpy_counts_it(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """The predictions of two batches (scores only, no label), sketched as the worker
    does and applied: the window's stored `sc:<bin>` fields read back as numpy's
    histogram of all their scores on the calibration's edges; a score outside [0, 1]
    is no probability and is not counted."""
    profile = register(store, base_profile, model_id)
    assert profile.calibration is not None
    edges = np.asarray(profile.calibration.edges)
    start = current_window(profile)
    rng = np.random.default_rng(9)
    sent = []
    for batch in range(2):
        scores = rng.beta(2, 5, 700).round(6)
        sent.append(scores)
        predictions = [{"score": float(x)} for x in scores] + [{"score": 1.5}]
        ids = [f"s{batch}-{i}" for i in range(len(predictions))]
        ev = events(profile, ids, [start + 1.0] * len(ids), predictions, seed=batch)
        apply(store, profile, sketch_events(ev, profile))
    (window,) = store.windows.read(profile, [start])
    want, _ = np.histogram(np.concatenate(sent), bins=edges)
    got = np.zeros(len(edges) - 1, dtype=np.int64)
    for b, c in window.score_bins.items():
        got[b] += c
    np.testing.assert_array_equal(got, want)
    # as stored: pushed as deltas (one blob per apply), none in the meta hash itself
    wk = ModelKeys(model_id).window(profile.revision, start)
    stored = store.redis.hgetall(wk.meta)
    assert not [k for k in stored if k.startswith(b"sc:")]
    fields, _ = fold_fields(store.redis.lrange(wk.meta_deltas, 0, -1))
    assert fields == {f"sc:{b}": int(c) for b, c in enumerate(want) if c}
    assert window.count == 2 * 701 and window.performance is None


def test_categories_named_like_the_markers_are_categories(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """Missing values and the categories beyond the cap are counted in the window's meta
    hash, so a category literally named "__missing__" or "__other__" is a user value."""
    profile = register(store, base_profile, model_id)
    start = current_window(profile)
    sketch = WindowSketch(start=start, count=14)
    sketch.categorical["country"] = CategoricalSketch(
        counts=Counter({"__missing__": 3, "__other__": 4, "DE": 5}), missing=2
    )
    apply(store, profile, {start: sketch})
    apply(store, profile, {start: sketch})
    (window,) = store.windows.read(profile, [start])
    country = window.categorical["country"]
    assert country.counts == Counter({"__missing__": 6, "__other__": 8, "DE": 10})
    assert (country.missing, country.other, country.n) == (4, 0, 24)


def test_categories_beyond_the_cap_are_counted_as_other(
    store: Store, model_id: str, base_profile: ReferenceProfile, tmp_path: Path
) -> None:
    """max_categories=5 and 8 categories sent: the first 5 stay in the category hash, the
    values of the other 3 land in `other`, and no value is lost (`n` is unchanged). Later,
    a known category still counts as itself and a new one as other."""
    profile = register(store, binary_profile(tmp_path, MonitorConfig(max_categories=5)), model_id)
    start = current_window(profile)
    counts = Counter({f"c{i}": 10 + i for i in range(8)})
    sketch = WindowSketch(start=start, count=counts.total())
    sketch.categorical["country"] = CategoricalSketch(counts=counts)
    apply(store, profile, {start: sketch})

    stored = store.redis.hgetall(ModelKeys(model_id).window(profile.revision, start).cat("country"))
    assert {k.decode(): int(v) for k, v in stored.items()} == {f"c{i}": 10 + i for i in range(5)}
    (window,) = store.windows.read(profile, [start])
    country = window.categorical["country"]
    assert country.other == 15 + 16 + 17
    assert country.n == sketch.categorical["country"].n == counts.total()

    later = WindowSketch(start=start, count=3)
    later.categorical["country"] = CategoricalSketch(counts=Counter({"c1": 1, "zz": 2}))
    apply(store, profile, {start: later})
    (window,) = store.windows.read(profile, [start])
    country = window.categorical["country"]
    assert len(country.counts) == 5 and country.counts["c1"] == 12 and "zz" not in country.counts
    assert country.other == 15 + 16 + 17 + 2
    assert country.n == counts.total() + 3


def test_outlier_examples_stop_at_the_cap(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """A window keeps its first `outlier_alerts_per_window` examples, in arrival order;
    later ones are dropped (the count of outliers still adds up)."""
    profile = register(store, base_profile, model_id)
    cap = profile.config.outlier_alerts_per_window
    start = current_window(profile)
    sent = [{"prediction_id": f"o{i}", "score": 50.0 + i, "features": []} for i in range(cap + 2)]
    apply(store, profile, {start: WindowSketch(start, 2, outliers=2, outlier_examples=sent[:2])})
    rest = sent[2:]
    apply(store, profile, {start: WindowSketch(start, 3, outliers=3, outlier_examples=rest)})
    (window,) = store.windows.read(profile, [start])
    assert window.outlier_examples == sent[:cap]
    assert window.outliers == 5


# ---- the field table, the sketches and apply.lua agree (no server) ------------------------
def test_every_merge_kind_has_a_branch_in_apply_lua_for_its_check_and_its_write() -> None:
    """The script refuses an op kind it does not know, so a Merge without a branch would
    make every apply carrying it fail; and a kind checked but not written (or written but
    not checked) breaks all-or-nothing."""
    checks, _, writes = APPLY_LUA.partition("-- 4. writes")
    assert writes, "apply.lua lost its '-- 4. writes' section marker"
    for kind in {f.merge.value for f in ALL_FIELDS + CORRELATION_FIELDS} | {PFADD}:
        branch = re.compile(rf"kind == '{re.escape(kind)}'")
        assert branch.search(checks), f"no check of merge kind {kind!r} in apply.lua"
        assert branch.search(writes), f"no write of merge kind {kind!r} in apply.lua"


def test_field_names_are_unique_within_their_hash() -> None:
    """The decoder finds a field by its name (a keyed one by the part before the first
    ':'), so two fields of one hash must not share a name and no name may hold a ':'. The
    meta hash holds META_FIELDS and CATEGORICAL_META_FIELDS together."""
    hashes = {
        "meta": META_FIELDS + CATEGORICAL_META_FIELDS,
        "num": NUMERIC_FIELDS,
        "perf": PERFORMANCE_FIELDS,
        "corr": CORRELATION_FIELDS,
    }
    for hash_name, fields in hashes.items():
        names = [f.name for f in fields]
        assert len(names) == len(set(names)), f"{hash_name}: {Counter(names).most_common(3)}"
        assert not [n for n in names if ":" in n], hash_name


def test_every_sketch_attribute_is_stored() -> None:
    """An attribute without a Field would be dropped by the encoder without a word: each
    attribute of the sketches is a Field, or is stored elsewhere by name (the window's
    start and outlier list, its per-column sketches, a column's category hash, its
    slices' hashes)."""

    def attrs(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def of(fields: tuple) -> set[str]:
        return {f.attr for f in fields}

    # correlation: its own hash (CORRELATION_FIELDS); distinct: HyperLogLogs, read only
    elsewhere = {
        "start",
        "outlier_examples",
        "numeric",
        "categorical",
        "performance",
        "slices",
        "comparisons",  # the champion's pairs: fields of the perf hash (champion.py)
        "correlation",
        "distinct",
    }
    assert attrs(WindowSketch) - elsewhere == of(META_FIELDS)
    assert attrs(CategoricalSketch) - {"counts"} == of(CATEGORICAL_META_FIELDS)
    assert attrs(NumericSketch) == of(NUMERIC_FIELDS)
    assert attrs(PerformanceSketch) == of(PERFORMANCE_FIELDS)
    assert attrs(CorrelationSketch) == of(CORRELATION_FIELDS)
