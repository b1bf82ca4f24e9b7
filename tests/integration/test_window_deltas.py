"""A window's numeric columns kept as a list of deltas (store/window_deltas.py), through a
real Redis: many applies read back as the sum of their sketches while the lists are
folded, by the worker after an apply that left one `FOLD_AT` long and by readers; a
fold never loses a delta pushed after its read, is refused when the list changed under
it (another fold, Redis losing writes), and keeps the list's expiry; windows written
before the lists (numeric fields in `num:<f>` hashes) read as the sum of both."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest

from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store import Store
from streamdrift.store.depth_fields import CORRELATION_FIELDS
from streamdrift.store.keys import ModelKeys
from streamdrift.store.window_deltas import FOLD_AT, TOKEN, fold
from streamdrift.store.window_fields import NUMERIC_FIELDS, Merge, encode_fields

from .store_support import apply, assert_window_equal, binary_profile, current_window, register
from .test_store_windows import random_window

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base_profile(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProfile:
    return binary_profile(tmp_path_factory.mktemp("deltas"))


def _applied(
    store: Store, profile: ReferenceProfile, rng: np.random.Generator, n: int
) -> tuple[int, list[WindowSketch]]:
    s = current_window(profile)
    sketches = [random_window(rng, profile, s, 0) for _ in range(n)]
    for w in sketches:
        apply(store, profile, {s: w})
    return s, sketches


def _lengths(store: Store, profile: ReferenceProfile, s: int) -> dict[str, int]:
    prefix = ModelKeys(profile.model_id).window(profile.revision, s).base
    keys = [k.decode() for k in store.redis.scan_iter(match=f"{prefix}*:nd", count=1000)]
    return {k: int(store.redis.llen(k)) for k in keys}


def test_many_applies_read_as_their_sum_while_the_lists_are_folded(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    profile = register(store, base_profile, model_id)
    rng = np.random.default_rng(7)
    s, sketches = _applied(store, profile, rng, 2 * FOLD_AT + 3)
    # the worker folded each list when an apply left it FOLD_AT long: never longer
    lengths = _lengths(store, profile, s)
    assert len(lengths) == 3  # the window's and its two slices'
    assert all(1 <= n < FOLD_AT for n in lengths.values()), lengths
    assert store.applies.deltas.folds >= 2 * 3
    (got,) = store.windows.read(profile, [s], slices=True)
    assert_window_equal(got, functools.reduce(operator.add, sketches))
    # the read folded what was left: one blob each, and the same window read again
    assert set(_lengths(store, profile, s).values()) == {1}
    (again,) = store.windows.read(profile, [s], slices=True)
    assert_window_equal(again, functools.reduce(operator.add, sketches))


def test_a_fold_keeps_what_was_pushed_after_its_read_and_a_stale_fold_is_refused(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    profile = register(store, base_profile, model_id)
    rng = np.random.default_rng(8)
    s, sketches = _applied(store, profile, rng, 3)
    key = ModelKeys(model_id).window(profile.revision, s).deltas
    read = store.redis.lrange(key, 0, -1)
    assert len(read) == 3
    _, later = _applied(store, profile, rng, 2)  # pushed between the read and the fold
    assert store.windows.deltas.fold({key: read}) == 1
    assert store.redis.llen(key) == 1 + 2
    # the same read folded again: the list no longer starts with it, nothing is done
    assert store.windows.deltas.fold({key: read}) == 0
    assert store.redis.llen(key) == 3
    (got,) = store.windows.read(profile, [s])
    want = functools.reduce(operator.add, sketches + later)
    for name, column in want.numeric.items():
        assert got.numeric[name].n == column.n, name
        assert np.array_equal(got.numeric[name].bins, column.bins), name
        assert got.numeric[name].total == pytest.approx(column.total, rel=1e-12), name
        assert got.numeric[name].minimum == column.minimum, name
        assert got.numeric[name].maximum == column.maximum, name


def test_a_fold_is_refused_after_redis_lost_the_blobs_it_read(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """Redis lost the list (restarted from an older snapshot) and other blobs came since:
    a fold of what was read before must not write that read's sum over them."""
    profile = register(store, base_profile, model_id)
    rng = np.random.default_rng(9)
    s, _ = _applied(store, profile, rng, 3)
    key = ModelKeys(model_id).window(profile.revision, s).deltas
    read = store.redis.lrange(key, 0, -1)
    store.redis.delete(key)
    _, since = _applied(store, profile, rng, 3)
    assert store.windows.deltas.fold({key: read}) == 0
    blobs = store.redis.lrange(key, 0, -1)
    assert len(blobs) == 3 and not {b[:TOKEN] for b in blobs} & {b[:TOKEN] for b in read}
    want = functools.reduce(operator.add, since)
    for column, got in fold(blobs).items():
        assert got.n == want.numeric[column].n, column
        assert np.array_equal(got.bins, want.numeric[column].bins), column


def test_a_fold_keeps_the_lists_expiry(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    profile = register(store, base_profile, model_id)
    s, _ = _applied(store, profile, np.random.default_rng(10), 4)
    key = ModelKeys(model_id).window(profile.revision, s).deltas
    want = s + profile.config.window_seconds + profile.config.retention_seconds
    assert store.redis.expiretime(key) == want
    store.windows.read(profile, [s])
    assert store.redis.llen(key) == 1
    assert store.redis.expiretime(key) == want


def test_a_window_written_in_hashes_before_the_lists_reads_as_the_sum_of_both(
    store: Store, model_id: str, base_profile: ReferenceProfile
) -> None:
    """A window an earlier version wrote field by field into `num:<f>`, `corr` and
    meta (its score bins) hashes, then counted on by this one: its hashes and its
    deltas add up."""
    profile = register(store, base_profile, model_id)
    rng = np.random.default_rng(11)
    s = current_window(profile)
    old, new = random_window(rng, profile, s, 0, ()), random_window(rng, profile, s, 0, ())
    wk = ModelKeys(model_id).window(profile.revision, s)
    apply(store, profile, {s: old})
    # what the earlier version wrote instead, field by field: the numeric columns, the
    # correlation sums and the pairs' sums in hashes
    store.redis.delete(wk.deltas, wk.corr_deltas, wk.meta_deltas)
    pipe = store.redis.pipeline(transaction=False)
    assert old.score_bins
    for b, c in old.score_bins.items():
        pipe.hincrby(wk.meta, f"sc:{b}", c)
    assert old.correlation is not None
    pairs = profile.multivariate.correlation.pair_names()  # type: ignore[union-attr]
    for f in CORRELATION_FIELDS:
        for q, v in enumerate(getattr(old.correlation, f.attr).tolist()):
            if f.merge is Merge.SUM:
                pipe.hincrby(wk.corr, f"{f.name}:{pairs[q]}", int(v))
            else:
                pipe.hincrbyfloat(wk.corr, f"{f.name}:{pairs[q]}", float(v))
    for name, column in old.numeric.items():
        for kind, flat in encode_fields(NUMERIC_FIELDS, column).items():
            for i in range(0, len(flat), 2):
                if kind is Merge.SUM:
                    pipe.hincrby(wk.num(name), flat[i], flat[i + 1])
                elif kind is Merge.FSUM:
                    pipe.hincrbyfloat(wk.num(name), flat[i], flat[i + 1])
                else:
                    pipe.hset(wk.num(name), flat[i], flat[i + 1])
    pipe.execute()
    apply(store, profile, {s: new})
    (got,) = store.windows.read(profile, [s])
    assert_window_equal(got, old + new)
    # the cumulative checks' read of the moments adds both as well
    names = list(profile.numeric_features())
    (moments,) = store.windows.read_performance(profile, [s], names)
    for name in names:
        want = old.numeric[name] + new.numeric[name]
        assert moments.numeric[name].n == want.n, name
        assert moments.numeric[name].missing == want.missing, name
        assert moments.numeric[name].total == pytest.approx(want.total, rel=1e-12), name
