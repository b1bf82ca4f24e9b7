"""Store details that need a real Redis: the dirty marks that drive evaluation."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.integration


def test_dirty_marks_clear_only_when_untouched_since_read(store, model_id):
    rng = random.Random(1)
    key = f"sd:{{{model_id}}}:dirty"
    for i in range(300):  # scores like time.time(): 17 significant digits
        store.redis.zadd(key, {f"1:{i}": repr(1.79e9 + rng.random() * 1e6)})
    marks = store.dirty_windows(model_id)
    store.redis.zadd(key, {"1:7": 2e9})  # touched again after the evaluator read it
    store.clear_dirty(model_id, marks)
    assert [m for m, _ in store.dirty_windows(model_id)] == ["1:7"]


def test_janitor_drops_ids_past_their_horizon_only(store, model_id):
    """Ids older than the horizon go, whatever they are (a pending prediction, a joined
    mark, a waiting label); younger ones stay. The ring is swept in time: a full pass
    takes a tenth of the horizon (at least a minute), no more than 64 buckets a call."""
    from streamdrift.store import ID_BUCKETS

    horizon, now = 86400, 1_790_000_000.0
    old, young = int(now - horizon - 5), int(now - horizon + 3 * 3600)
    rng = random.Random(2)
    expected_left = 0
    for b in rng.sample(range(ID_BUCKETS), 300):
        key = f"sd:{{{model_id}}}:ids:{b}"
        store.redis.hset(
            key,
            mapping={
                f"p{b}": f"{old}|1|0|0.5",
                f"j{b}": f"J{old}",
                f"l{b}": f"L{old}|-1|fraud",
                f"q{b}": f"{young}|1|1|0.9",
                f"k{b}": f"J{young}",
                f"m{b}": f"L{young}|3|a|b",
                f"d{b}": str(old),
            },
        )
        expected_left += 3
    assert store.sweep_ids(model_id, horizon, now) == 0  # the first call starts the clock
    removed, t = 0, now
    period = min(3600.0, max(60.0, horizon / 10))
    while t < now + period + 1:
        t += 5.0
        got = store.sweep_ids(model_id, horizon, t)
        assert got <= 64 * 7
        removed += got
    assert removed == 300 * 4
    left = sum(store.redis.hlen(k) for k in store.redis.scan_iter(match=f"sd:{{{model_id}}}:ids:*"))
    assert left == expected_left
