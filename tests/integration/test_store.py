"""Store details that need a real Redis: the dirty marks that drive evaluation."""

from __future__ import annotations

import random

import pytest

from streamdrift.store.keys import ModelKeys

pytestmark = pytest.mark.integration


def test_dirty_marks_clear_only_when_untouched_since_read(store, model_id):
    rng = random.Random(1)
    key = f"sd:{{{model_id}}}:dirty"
    for i in range(300):  # scores like time.time(): 17 significant digits
        store.redis.zadd(key, {f"1:{i}": repr(1.79e9 + rng.random() * 1e6)})
    marks = store.schedule.dirty(model_id)
    store.redis.zadd(key, {"1:7": 2e9})  # touched again after the evaluator read it
    store.schedule.clear(model_id, marks)
    assert [m for m, _ in store.schedule.dirty(model_id)] == ["1:7"]


def test_janitor_drops_ids_past_their_horizon_only(store, model_id):
    """Ids older than the horizon go, whatever they are (a pending prediction, a joined
    mark, a waiting label); younger ones stay. The shards are rewritten in time: a full
    pass takes a tenth of the horizon (at least a minute), a few shards a call."""
    from streamdrift.store import JOURNAL_SHARDS
    from streamdrift.store.records import MAX_SWEEP_SHARDS, Shard

    horizon, now = 86400, 1_790_000_000.0
    old, young = int(now - horizon - 5), int(now - horizon + 3 * 3600)
    records = {}
    for b in range(300):
        records |= {
            f"p{b}": f"{old}|1|0|0.5",
            f"j{b}": f"J{old}",
            f"l{b}": f"L{old}|-1|fraud",
            f"q{b}": f"{young}|1|1|0.9",
            f"k{b}": f"J{young}",
            f"m{b}": f"L{young}|3|a|b",
            f"d{b}": str(old),
        }
    store.records.put(model_id, records)
    assert store.records.sweep(model_id, horizon, now) == 0  # the first call starts the clock
    removed, t, calls = 0, now, 0
    period = min(3600.0, max(60.0, horizon / 10))
    while t < now + period + 1:
        t += 5.0
        got = store.records.sweep(model_id, horizon, t)
        calls += got > 0
        removed += got
    assert removed == 300 * 4 and calls >= JOURNAL_SHARDS // MAX_SWEEP_SHARDS
    k = ModelKeys(model_id)
    left: dict[str, str] = {}
    for s in range(JOURNAL_SHARDS):
        shard = Shard()
        assert shard.replay(store.redis.lrange(k.journal(s), 0, -1))
        assert store.redis.llen(k.journal(s)) <= 1  # each rewritten as one snapshot
        left |= shard.records
    assert left == {p: r for p, r in records.items() if p[0] in "qkm"}
    assert store.records.lookup(model_id, "q7") == f"{young}|1|1|0.9"
    assert store.records.lookup(model_id, "p7") is None
    # a pass with nothing past the horizon and nothing to compact leaves the journals be
    heads = store.redis.hgetall(k.journal_heads)
    for _ in range(JOURNAL_SHARDS // MAX_SWEEP_SHARDS + 1):  # a whole pass, young still young
        t += period * MAX_SWEEP_SHARDS / JOURNAL_SHARDS
        assert store.records.sweep(model_id, horizon, t) == 0
    assert t < young + horizon
    assert store.redis.hgetall(k.journal_heads) == heads


def test_garbage_labels_cannot_bloat_a_window(store, model_id, tmp_path, monkeypatch):
    """120 distinct label values: the joined-label hash keeps max_categories of them and
    counts the rest in the window's meta (cat_other:__label__); the confusion matrix
    stops at the perf hash's cap and counts the rest in cm_other. No pair is lost."""
    import time
    from collections import Counter

    from streamdrift import synthetic
    from streamdrift.config import MonitorConfig
    from streamdrift.reference import build_profile
    from streamdrift.store import ApplyRequest, Fence, JoinDelta, applies, shards

    monkeypatch.setattr(applies, "MAX_PERFORMANCE_FIELDS", 40)
    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            synthetic.write_reference(tmp_path / "r.csv", rows=2000),
            prediction_column="score",
            label_column="is_fraud",
            features=list(synthetic.NUMERIC[:3]),
            config=MonitorConfig(max_categories=50),
        )
    )
    ts = int(time.time()) - 100
    ids = [f"p{i}" for i in range(120)]
    buckets = shards(ids)
    delta = JoinDelta(
        predictions=[[p, f"{ts}|1|1|0.9", b] for p, b in zip(ids, buckets, strict=True)],
        labels=[
            [p, f"g{i}", ts + 5, -1, b] for i, (p, b) in enumerate(zip(ids, buckets, strict=True))
        ],
    )
    request = ApplyRequest(profile, [Fence("t@x:0", -1, 0)], {}, Counter(), delta, time.time())
    assert store.applies.apply(request).stats.joined == 120
    width = profile.config.window_seconds
    wk = ModelKeys(model_id).window(profile.revision, ts // width * width)
    labels = {k.decode(): int(v) for k, v in store.redis.hgetall(wk.cat("__label__")).items()}
    other = int(store.redis.hget(wk.meta, "cat_other:__label__"))
    assert len(labels) == 50 and other == 70 and sum(labels.values()) + other == 120
    perf = {k.decode(): v for k, v in store.redis.hgetall(wk.perf).items()}
    cells = {k: int(v) for k, v in perf.items() if k.startswith("cm:")}
    overflow = int(perf["cm_other"])
    assert sum(cells.values()) + overflow == 120
    assert len(cells) <= 40 and overflow > 0


def test_alerts_published_before_the_cutoff_are_forgotten_once_an_hour(store, model_id):
    now = 1_790_000_000.0
    for i in range(2500):
        assert store.alerts.claim(model_id, f"a{i}", b"{}", now - 100)
    store.alerts.mark_published(model_id, [f"a{i}" for i in range(2000)], now - 50)
    assert store.alerts.prune(model_id, now - 60, now) == 0  # all published after it
    assert store.alerts.prune(model_id, now - 40, now + 10) == 0  # within the hour: no pass
    assert store.alerts.prune(model_id, now - 40, now + 3601) == 2000
    left = {k.decode() for k in store.redis.hkeys(f"sd:{{{model_id}}}:alerts")}
    assert left == {f"a{i}" for i in range(2000, 2500)}  # claimed, never published: kept
    assert store.redis.hlen(f"sd:{{{model_id}}}:alert_state") == 500


def test_r2_of_a_target_with_a_large_mean_survives_the_lua_sums(store, model_id, tmp_path):
    """Targets around 1e9 with a spread of 1: summing y and y² pair by pair would leave
    nothing of the variance; the join sums them around the reference mean instead."""
    import csv
    import time
    from collections import Counter

    import numpy as np
    from sklearn.metrics import r2_score

    from streamdrift.performance import regression_metrics
    from streamdrift.reference import build_profile
    from streamdrift.store import ApplyRequest, Fence, JoinDelta, shards

    rng = np.random.default_rng(5)

    def rows(n):
        y = 1e9 + rng.normal(0, 1, n)
        return y, y + rng.normal(0, 0.5, n)

    ref_y, ref_pred = rows(2000)
    path = tmp_path / "ref.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "pred", "y"])
        w.writerows(zip(rng.normal(size=2000), ref_pred, ref_y, strict=True))
    profile, _ = store.profiles.save(
        build_profile(model_id, path, task="regression", prediction_column="pred", label_column="y")
    )
    y, pred = rows(3000)
    ts = int(time.time()) - 100
    ids = [f"r{i}" for i in range(len(y))]
    b = shards(ids)
    delta = JoinDelta(
        predictions=[
            [i, f"{ts}|1||{p!r}", k] for i, p, k in zip(ids, pred.tolist(), b, strict=True)
        ],
        labels=[[i, repr(v), ts + 5, 0, k] for i, v, k in zip(ids, y.tolist(), b, strict=True)],
    )
    request = ApplyRequest(profile, [Fence("t@x:0", -1, 0)], {}, Counter(), delta, time.time())
    assert store.applies.apply(request).stats.joined == 3000
    (window,) = store.windows.read(profile, store.windows.starts(model_id, profile.revision))
    m = regression_metrics(window.performance)
    assert m["r2"] == pytest.approx(r2_score(y, pred), abs=1e-6)
