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
