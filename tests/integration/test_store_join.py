"""The delayed-label join through the real apply script: predictions and labels built by
`join_delta` from decoded events, in batches where labels come before, with and after
their predictions. What the script sums pair by pair must equal
`PerformanceSketch.from_pairs` over the same pairs, and the metrics scikit-learn's. Each
transition of a join record is checked on the record itself, and the retry that adds
window keys a call did not declare is checked from a Store that remembers nothing."""

from __future__ import annotations

import math
import operator
import threading
from collections import Counter
from functools import reduce
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from streamdrift.decode import ModelEvents
from streamdrift.join import join_delta
from streamdrift.performance import (
    PerformanceSketch,
    class_key,
    classification_metrics,
    regression_metrics,
)
from streamdrift.profile import LABEL, ReferenceProfile, bin_index
from streamdrift.sketch import prediction_outputs, sketch_events
from streamdrift.store import Applied, ApplyRequest, Fence, JoinStats, Store
from streamdrift.store import records as journal
from streamdrift.store.keys import ModelKeys
from streamdrift.store.window_deltas import fold_fields

from .store_support import (
    apply_events,
    assert_performance_equal,
    binary_profile,
    current_window,
    events,
    labels,
    multiclass_profile,
    record,
    register,
    regression_profile,
    request,
)

pytestmark = pytest.mark.integration

#: label delays on both sides of each power of two (the delay histogram's bucket edges)
EDGE_DELAYS = [0, 1, 2, 3, 4, 7, 8, 1023, 1024, 65535, 65536]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReferenceProfile]:
    directory = tmp_path_factory.mktemp("join")
    return {
        "binary": binary_profile(directory),
        "multiclass": multiclass_profile(directory),
        "regression": regression_profile(directory),
        "unlabelled": binary_profile(directory, label=False),
    }


def _stats_sum(stats: list[JoinStats]) -> JoinStats:
    return JoinStats(*(sum(getattr(s, f) for s in stats) for f in JoinStats.__dataclass_fields__))


# ---- (a) pairs in batches, against from_pairs and scikit-learn ----------------------------
def _outputs(task: str, rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Predictions as events carry them, the true labels, and the columns from_pairs takes."""
    if task == "binary":
        score = rng.uniform(size=n)
        predicted = (score >= 0.5).astype(int)
        flip = rng.uniform(size=n) < 0.1  # the model's own class, not always the threshold's
        predicted[flip] = 1 - predicted[flip]
        actual = (rng.uniform(size=n) < score).astype(int).tolist()
        return {
            "predictions": [
                {"score": float(s), "label": int(p)} for s, p in zip(score, predicted, strict=True)
            ],
            "actual": actual,
            "predicted": [str(p) for p in predicted],
            "score": score,
        }
    if task == "multiclass":
        classes = np.array(["a", "b", "c"])
        predicted = classes[rng.integers(0, 3, n)]
        actual = np.where(rng.uniform(size=n) < 0.6, predicted, classes[rng.integers(0, 3, n)])
        return {
            "predictions": [{"label": str(p)} for p in predicted],
            "actual": actual.tolist(),
            "predicted": predicted.tolist(),
            "score": None,
        }
    y = rng.normal(50.0, 10.0, n)
    y[:3] = 0.0  # no percentage error for these
    pred = y + rng.normal(0.0, 3.0, n)
    return {"predictions": pred.tolist(), "actual": y.tolist(), "predicted": None, "score": pred}


def _from_pairs(
    profile: ReferenceProfile,
    o: dict[str, Any],
    delays: np.ndarray,
    sel: np.ndarray,
    window: tuple[np.ndarray, int] | None = None,
) -> PerformanceSketch:
    """from_pairs over the selected pairs; with `window` (the predictions' times and the
    window's start), the sequential scan's sums per part of the window too."""
    idx = np.flatnonzero(sel)
    parts = None
    if window is not None:
        cfg = profile.config
        parts = (
            window[0][idx],
            window[1],
            cfg.window_seconds,
            cfg.performance.sequential.sub_windows,
        )
    return PerformanceSketch.from_pairs(
        profile.task,
        [o["actual"][i] for i in idx],
        [o["predicted"][i] for i in idx] if o["predicted"] is not None else None,
        o["score"][idx] if o["score"] is not None else None,
        profile.positive_class,
        delays[idx],
        shift=profile.label_shift(),
        score_edges=profile.score_edges,
        parts=parts,
    )


def _segment_sums(sub: PerformanceSketch, task: str) -> Counter[str]:
    """What one segment keeps, read off from_pairs' sketch of that segment's pairs."""
    if task == "regression":
        return Counter(n=sub.labelled, ae=sub.abs_error, se=sub.sq_error)
    right = sum(c for (a, p), c in sub.confusion.items() if a == p)
    return Counter(n=sub.labelled, ok=right)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_pairs_in_batches_sum_to_from_pairs_and_to_sklearns_metrics(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile], task: str
) -> None:
    """600 predictions over two windows and their labels, each side in one of four
    batches at random: labels before, with and after their predictions. Each window's
    performance equals from_pairs over its pairs (histograms and counts exactly, float
    sums within 1e-9), per segment too; the joined labels' column counts them; and the
    metrics of all pairs agree with scikit-learn's."""
    profile = register(store, profiles[task], model_id)
    rng = np.random.default_rng({"binary": 1, "multiclass": 2, "regression": 3}[task])
    n, width = 600, profile.config.window_seconds
    first = current_window(profile) - 2 * width
    ids = [f"{task}-{i}" for i in range(n)]
    pred_ts = first + rng.integers(0, 2 * width, n)
    delays = np.concatenate((EDGE_DELAYS, rng.integers(0, 70_000, n - len(EDGE_DELAYS))))
    label_ts = pred_ts + delays
    o = _outputs(task, rng, n)
    regions = rng.choice(["EU", "US"], n)
    tiers = rng.choice(["gold", "basic", "free"], n)
    segments = [{"region": r, "tier": t} for r, t in zip(regions, tiers, strict=True)]

    pred_batch, label_batch = rng.integers(0, 4, n), rng.integers(0, 4, n)
    assert (label_batch < pred_batch).any() and (label_batch == pred_batch).any()
    stats = []
    for b in range(4):
        p = np.flatnonzero(pred_batch == b)
        ev = events(
            profile,
            [ids[i] for i in p],
            pred_ts[p].tolist(),
            [o["predictions"][i] for i in p],
            seed=b,
            segments=[segments[i] for i in p],
        )
        q = np.flatnonzero(label_batch == b)
        lb = labels([ids[i] for i in q], label_ts[q].tolist(), [o["actual"][i] for i in q])
        stats.append(apply_events(store, profile, ev, lb))
    waited = int((label_batch < pred_batch).sum())
    assert _stats_sum(stats) == JoinStats(joined=n, labels_before_prediction=waited)
    join_counters = store.counters.join_stats(model_id)
    assert join_counters == {"joined": n, "labels_before_prediction": waited}

    windows = store.windows.read(profile, store.windows.starts(model_id, profile.revision))
    pred_window = pred_ts // width * width
    assert [w.start for w in windows] == [first, first + width]
    for w in windows:
        sel = pred_window == w.start
        want = _from_pairs(profile, o, delays, sel, (pred_ts, w.start))
        assert want.sub_windows, "the sequential scan's sums are checked"
        for key, values in (("region", regions), ("tier", tiers)):
            for v in np.unique(values):
                sub = _from_pairs(profile, o, delays, sel & (values == v))
                want.segments[f"{key}={v}"] = _segment_sums(sub, task)
        assert_performance_equal(w.performance, want, rel=1e-9, where=f"window {w.start}")
        actual = [o["actual"][i] for i in np.flatnonzero(sel)]
        if task == "regression":
            column = w.numeric[LABEL]
            edges = profile.label.edge_array()  # type: ignore[union-attr]
            bins = np.bincount(bin_index(edges, np.asarray(actual)), minlength=len(edges) + 1)
            assert np.array_equal(column.bins, bins)
            assert (column.n, column.missing) == (len(actual), 0)
            assert column.total == pytest.approx(float(np.sum(actual)), rel=1e-9)
        else:
            assert w.categorical[LABEL].counts == Counter(class_key(a) for a in actual)

    total = reduce(operator.add, (w.performance for w in windows))
    actual, predicted, score = o["actual"], o["predicted"], o["score"]
    if task == "regression":
        m = regression_metrics(total)
        assert m["mae"] == pytest.approx(mean_absolute_error(actual, score), rel=1e-9)
        assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(actual, score)), rel=1e-9)
        assert m["r2"] == pytest.approx(r2_score(actual, score), rel=1e-9)
        return
    truth = [class_key(a) for a in actual]
    m = classification_metrics(total, profile.positive_class)
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, predicted), rel=1e-12)
    assert m["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro"), rel=1e-9)
    if task == "binary":
        positive = np.asarray(truth) == "1"
        assert abs(m["roc_auc"] - roc_auc_score(positive, score)) < 0.005
        assert m["brier"] == pytest.approx(brier_score_loss(positive, score), rel=1e-9)
        assert m["log_loss"] == pytest.approx(log_loss(positive, score), rel=1e-9)
        assert m["f1"] == pytest.approx(f1_score(truth, predicted, pos_label="1"), rel=1e-9)


@pytest.mark.parametrize("layout", ["reference edges", "equal-width"])
def test_scores_on_bin_edges_fall_in_the_bins_of_from_pairs(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile], layout: str
) -> None:
    """Scores exactly on the profile's score edges, one double below them, on the
    calibration edges k/10, at 0 and 1: the script bins each as `score_bin` does, and
    sums the scores per calibration bin as from_pairs does. A profile without edges (as
    registered before they existed) keeps the equal-width bins and writes no sums."""
    base = profiles["binary"]
    if layout == "equal-width":
        base = base.model_copy(update={"score_edges": None})
    profile = register(store, base, model_id)
    edges = np.asarray(base.score_edges or np.arange(1, 200) / 200)
    tenths = np.arange(1, 10) / 10
    score = np.concatenate(
        (edges, np.nextafter(edges, -np.inf), tenths, np.nextafter(tenths, -np.inf), [0.0, 1.0])
    )
    n = score.size
    actual = (np.arange(n) % 3 == 0).astype(int).tolist()
    predicted = (score >= 0.5).astype(int).tolist()
    t = current_window(profile) - profile.config.window_seconds + 10
    ids = [f"e{i}" for i in range(n)]
    predictions = [{"score": float(s), "label": p} for s, p in zip(score, predicted, strict=True)]
    ev = events(profile, ids, [t] * n, predictions)
    assert apply_events(store, profile, ev, labels(ids, [t + 1] * n, actual)).joined == n
    (window,) = store.windows.read(profile, [_start(profile, t)])
    want = PerformanceSketch.from_pairs(
        "binary",
        actual,
        predicted,
        score,
        profile.positive_class,
        np.ones(n),
        score_edges=profile.score_edges,
        parts=(
            np.full(n, t),
            _start(profile, t),
            profile.config.window_seconds,
            profile.config.performance.sequential.sub_windows,
        ),
    )
    assert_performance_equal(window.performance, want, rel=1e-12, where=layout)
    assert window.performance is not None
    assert bool(window.performance.score_sums.any()) == (layout == "reference edges")


# ---- (b) every transition of a record ------------------------------------------------------
def _predict(
    store: Store, profile: ReferenceProfile, pids: list[str], t: int, score: float = 0.75
) -> JoinStats:
    ev = events(profile, pids, [t] * len(pids), [{"score": score, "label": 1}] * len(pids))
    return apply_events(store, profile, ev, None)


def _label(
    store: Store, profile: ReferenceProfile, pids: list[str], t: int, value: Any
) -> JoinStats:
    return apply_events(store, profile, None, labels(pids, [t] * len(pids), [value] * len(pids)))


def _start(profile: ReferenceProfile, t: float) -> int:
    width = profile.config.window_seconds
    return int(t // width * width)


def _labelled(store: Store, profile: ReferenceProfile, start: int) -> int:
    """Pairs joined into one window (its perf hash's `n`)."""
    (window,) = store.windows.read(profile, [start])
    return window.performance.labelled if window.performance is not None else 0


@pytest.fixture
def binary(store: Store, model_id: str, profiles: dict[str, ReferenceProfile]) -> ReferenceProfile:
    return register(store, profiles["binary"], model_id)


@pytest.fixture
def t(binary: ReferenceProfile) -> int:
    """A prediction time inside the previous window."""
    return current_window(binary) - binary.config.window_seconds + 100


def test_prediction_then_label(store: Store, binary: ReferenceProfile, t: int) -> None:
    """The prediction waits as `<t>|<version>|<class>|<score>`; its label turns it into
    `J<t>\t<version>\t<label time>|<bin>|<label>` (so a repeat of either side is
    recognised, and another version scoring the id later still joins) and counts the
    pair."""
    m = binary.model_id
    assert _predict(store, binary, ["p"], t) == JoinStats()
    assert record(store, m, "p") == f"{t}|1|1|0.75"
    assert _label(store, binary, ["p"], t + 50, 0) == JoinStats(joined=1)
    assert record(store, m, "p") == f"J{t}\t1\t{t + 50}|-1|0"
    assert _labelled(store, binary, _start(binary, t)) == 1
    assert store.counters.join_stats(m) == {"joined": 1}


def test_pairs_counted_in_the_perf_hash_and_in_its_deltas_add_up(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """A window whose pairs an earlier version added to its perf hash field by field, then
    counted on as deltas: a read gives the sum of both, and folds the deltas it read."""
    m = binary.model_id
    wk = ModelKeys(m).window(binary.revision, _start(binary, t))
    _predict(store, binary, ["a", "b", "c"], t, score=0.8)
    assert _label(store, binary, ["a", "b", "c"], t + 50, 1).joined == 3
    # as the earlier version kept them: the deltas' fields in the hash, no list
    ints, floats = fold_fields(store.redis.lrange(wk.perf_deltas, 0, -1))
    assert ints["n"] == 3 and floats
    for f, v in ints.items():
        store.redis.hincrby(wk.perf, f, v)
    for f, x in floats.items():
        store.redis.hincrbyfloat(wk.perf, f, x)
    store.redis.delete(wk.perf_deltas)
    _predict(store, binary, ["d", "e"], t, score=0.3)
    assert _label(store, binary, ["d"], t + 60, 0).joined == 1
    assert _label(store, binary, ["e"], t + 70, 1).joined == 1
    assert store.redis.llen(wk.perf_deltas) == 2
    (window,) = store.windows.read(binary, [_start(binary, t)])
    perf = window.performance
    assert perf is not None and perf.labelled == 5 and perf.scored == 5
    assert sum(perf.confusion.values()) + perf.confusion_other == 5
    assert perf.delay_sum == pytest.approx(3 * 50 + 60 + 70)
    # the Brier sum of the five pairs, worked out by hand
    assert perf.brier_sum == pytest.approx(3 * 0.2**2 + 0.3**2 + 0.7**2, rel=1e-12)
    assert store.redis.llen(wk.perf_deltas) == 1  # folded by the read


def test_label_then_prediction(store: Store, binary: ReferenceProfile, t: int) -> None:
    """A label first waits as `L<t>|<bin>|<label>` and counts nowhere; its prediction
    counts the pair and leaves `J<prediction time>`."""
    m = binary.model_id
    assert _label(store, binary, ["p"], t + 50, 0) == JoinStats(labels_before_prediction=1)
    assert record(store, m, "p") == f"L{t + 50}|-1|0"
    assert store.windows.starts(m, binary.revision) == []  # nothing counted yet
    assert _predict(store, binary, ["p"], t) == JoinStats(joined=1)
    assert record(store, m, "p").split("\t")[0] == f"J{t}"
    assert _labelled(store, binary, _start(binary, t)) == 1
    assert store.counters.join_stats(m) == {"joined": 1, "labels_before_prediction": 1}


def test_prediction_and_its_label_in_one_call(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """The script takes a call's predictions before its labels: they meet at once and
    the label never waits."""
    ev = events(binary, ["p"], [t], [{"score": 0.75, "label": 1}])
    assert apply_events(store, binary, ev, labels(["p"], [t + 5], [1])) == JoinStats(joined=1)
    assert record(store, binary.model_id, "p").split("\t")[0] == f"J{t}"
    assert _labelled(store, binary, _start(binary, t)) == 1


def test_repeated_prediction(store: Store, binary: ReferenceProfile, t: int) -> None:
    """A repeat, pending or joined, in another batch or the same one, counts as a duplicate
    in its window; the record stays the first prediction's, the example the first id."""
    m, start = binary.model_id, _start(binary, t)
    _predict(store, binary, ["p"], t)
    assert _predict(store, binary, ["p"], t + 1, score=0.25) == JoinStats(duplicate_predictions=1)
    assert record(store, m, "p") == f"{t}|1|1|0.75"
    (window,) = store.windows.read(binary, [start])
    assert (window.duplicates, window.duplicate_example) == (1, "p")

    assert _predict(store, binary, ["q", "q"], t) == JoinStats(duplicate_predictions=1)
    _label(store, binary, ["p"], t + 60, 1)
    assert _predict(store, binary, ["p"], t) == JoinStats(duplicate_predictions=1)
    assert record(store, m, "p").split("\t")[0] == f"J{t}"
    (window,) = store.windows.read(binary, [start])
    assert (window.duplicates, window.duplicate_example) == (3, "p")
    assert window.performance is not None and window.performance.labelled == 1
    assert store.counters.join_stats(m) == {"joined": 1, "duplicate_predictions": 3}


def test_repeated_label(store: Store, binary: ReferenceProfile, t: int) -> None:
    """A label repeated after the join, or while it waits, counts once: the pair is
    counted with the first label."""
    m = binary.model_id
    _predict(store, binary, ["p"], t)
    _label(store, binary, ["p"], t + 60, 1)
    assert _label(store, binary, ["p"], t + 70, 0) == JoinStats(duplicate_labels=1)
    assert record(store, m, "p").split("\t")[0] == f"J{t}"

    _label(store, binary, ["q"], t + 60, 1)
    assert _label(store, binary, ["q"], t + 70, 0) == JoinStats(duplicate_labels=1)
    assert record(store, m, "q") == f"L{t + 60}|-1|1"
    assert _predict(store, binary, ["q"], t) == JoinStats(joined=1)
    (window,) = store.windows.read(binary, [_start(binary, t)])
    assert window.performance is not None
    assert window.performance.confusion == Counter({("1", "1"): 2})
    assert store.counters.join_stats(m) == {
        "joined": 2,
        "duplicate_labels": 2,
        "labels_before_prediction": 1,
    }


def test_label_for_an_id_recorded_without_a_label_column(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """A record of bare time (`<t>`, as a model registered without a label column left
    it) has nothing to join a label with: the label is counted as labels_without_record,
    the id marked joined, and no pair counted."""
    m = binary.model_id
    store.records.put(m, {"p": str(t)})
    assert _label(store, binary, ["p"], t + 60, 1) == JoinStats()
    assert record(store, m, "p").split("\t")[0] == f"J{t}"
    assert store.counters.join_stats(m) == {"labels_without_record": 1}
    assert store.windows.starts(m, binary.revision) == []
    assert _label(store, binary, ["p"], t + 70, 1) == JoinStats(duplicate_labels=1)


def test_a_regressors_waiting_label_keeps_its_bin(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile]
) -> None:
    """A regressor's label waits with its bin on the label's reference edges, so the
    joined labels' histogram needs no profile when the prediction comes."""
    profile = register(store, profiles["regression"], model_id)
    t = current_window(profile) - profile.config.window_seconds + 100
    edges = profile.label.edge_array()  # type: ignore[union-attr]
    value = float((edges[2] + edges[3]) / 2)
    (b,) = bin_index(edges, np.asarray([value])).tolist()
    assert _label(store, profile, ["p"], t + 9, value) == JoinStats(labels_before_prediction=1)
    assert record(store, model_id, "p") == f"L{t + 9}|{b}|{value!r}"
    ev = events(profile, ["p"], [t], [value + 1.5])
    assert apply_events(store, profile, ev, None) == JoinStats(joined=1)
    assert record(store, model_id, "p").split("\t")[0] == f"J{t}"
    (window,) = store.windows.read(profile, [_start(profile, t)])
    assert window.numeric[LABEL].bins[b] == 1 and window.numeric[LABEL].n == 1
    assert window.performance is not None and window.performance.abs_error == pytest.approx(1.5)


# ---- (c) the prediction's window, and a record that changes before the apply ------------
def test_a_label_joins_into_its_predictions_window_in_one_call(
    store: Store, binary: ReferenceProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label cannot know its prediction's window; the record read before the call
    names it. From a Store that remembers nothing, one call lands the pair in the
    prediction's window, three windows before the label's, and writes nothing into the
    label's own window."""
    width = binary.config.window_seconds
    label_window = current_window(binary)
    t = label_window - 3 * width + 10
    _predict(store, binary, ["p"], t)

    fresh = Store(store.url)
    calls: list[list[str]] = []
    run = fresh.applies._run

    def counting_run(keys: list[str], args: list[Any]) -> Any:
        calls.append(keys)
        return run(keys, args)

    monkeypatch.setattr(fresh.applies, "_run", counting_run)
    result = fresh.applies.apply(_label_request(store, binary, ["p"], label_window + 5))
    assert isinstance(result, Applied) and result.stats == JoinStats(joined=1)
    assert calls == []  # sent once, answered at once
    assert fresh.applies.record_rounds == 0
    assert _labelled(store, binary, _start(binary, t)) == 1
    assert record(store, binary.model_id, "p").split("\t")[0] == f"J{t}"
    k = ModelKeys(binary.model_id)
    assert store.redis.keys(f"{k.tag}:w:{binary.revision}:{label_window}:*") == []


def test_a_record_met_by_another_batch_after_the_read_is_worked_out_again(
    store: Store, binary: ReferenceProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the read of the records and the apply, another worker's batch joins the
    same id (its label arrived there). The apply sees the shard's journal moved on,
    writes nothing, and the share is worked out again after reading what was appended:
    the second label is a repeat, the pair counts once."""
    t = current_window(binary) + 10
    _predict(store, binary, ["p", "q"], t)
    fresh = Store(store.url)
    reader = fresh.applies.records.view
    raced: list[bool] = []

    def racing_read(model: str, wanted: Any) -> Any:
        got = reader(model, wanted)
        if not raced:  # another worker's batch joins p right after this read
            raced.append(True)
            store.records.put(model, {"p": f"J{t}"})
        return got

    monkeypatch.setattr(fresh.applies.records, "view", racing_read)
    result = fresh.applies.apply(_label_request(store, binary, ["p", "q"], t + 30))
    assert isinstance(result, Applied)
    assert result.stats == JoinStats(joined=1, duplicate_labels=1)
    assert fresh.applies.record_rounds == 1
    assert _labelled(store, binary, _start(binary, t)) == 1  # q's pair; p's is the other's
    assert record(store, binary.model_id, "p") == f"J{t}"
    assert store.counters.join_stats(binary.model_id) == {"joined": 1, "duplicate_labels": 1}


def test_a_worker_reads_a_journal_once_and_then_only_what_others_append(
    store: Store, binary: ReferenceProfile, t: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch reads its shards' journals whole; later batches on the same shards
    read nothing. Another writer's append to a shard makes the next apply of this worker
    refused once, and only that shard's new blob is read (not the shard again)."""
    m, applies = binary.model_id, store.applies
    reads: list[list[str]] = []
    script = applies.records._read

    def counting(keys: list[str], args: list[Any]) -> Any:
        reads.append(keys)
        return script(keys=keys, args=args)

    monkeypatch.setattr(applies.records, "_read", counting)
    ids = [f"a{i}" for i in range(1000)]  # every shard
    assert _predict(store, binary, ids, t) == JoinStats()
    assert len({k for call in reads for k in call[1:]}) == journal.JOURNAL_SHARDS
    assert applies.records.full_reads == journal.JOURNAL_SHARDS
    reads.clear()
    assert _predict(store, binary, [f"b{i}" for i in range(1000)], t) == JoinStats()
    assert _label(store, binary, ids[:200], t + 50, 1) == JoinStats(joined=200)
    assert reads == [] and applies.record_rounds == 0

    other = Store(store.url)  # another worker joins a300's label
    assert other.applies.apply(_label_request(other, binary, ["a300"], t + 60)).stats == (
        JoinStats(joined=1)
    )
    assert _label(store, binary, ["a300", "a301"], t + 70, 1) == JoinStats(
        joined=1, duplicate_labels=1
    )
    assert applies.record_rounds == 1
    assert applies.records.full_reads == journal.JOURNAL_SHARDS  # the tail only
    (shard,) = journal.shards(["a300"])
    assert [call[1:] for call in reads] == [[ModelKeys(m).journal(shard)]]
    (window,) = store.windows.read(binary, [_start(binary, t)])
    assert window.count == 2000 and window.performance is not None
    assert window.performance.labelled == 202
    assert store.counters.join_stats(m) == {"joined": 202, "duplicate_labels": 1}


def test_a_journal_is_compacted_as_it_grows_and_reads_the_same(
    store: Store, binary: ReferenceProfile, t: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past twice its last snapshot, a shard's journal is rewritten as one snapshot of its
    records: the lists stay short, and a worker that reads them afresh holds exactly what
    the writer holds."""
    monkeypatch.setattr(journal, "COMPACT_MIN_BYTES", 2_000)
    monkeypatch.setattr(journal, "MAX_COMPACTIONS_PER_APPLY", journal.JOURNAL_SHARDS)
    m, applies = binary.model_id, store.applies
    for b in range(30):
        ids = [f"c{b}-{i}" for i in range(100)]
        assert _predict(store, binary, ids, t) == JoinStats()
        if b % 2:
            assert _label(store, binary, ids[:50], t + 5, 1) == JoinStats(joined=50)
    assert applies.records.compactions > 0
    k = ModelKeys(m)
    lengths = [store.redis.llen(k.journal(s)) for s in range(journal.JOURNAL_SHARDS)]
    assert max(lengths) < 30  # 45 blobs per shard without compaction
    fresh = Store(store.url)
    everything = [
        (s, f"c{b}-{i}")
        for b in range(30)
        for i in range(100)
        for s in journal.shards([f"c{b}-{i}"])
    ]
    mine = applies.records.view(m, range(journal.JOURNAL_SHARDS))
    theirs = fresh.applies.records.view(m, range(journal.JOURNAL_SHARDS))
    assert {p: mine[p] for p in everything} == {p: theirs[p] for p in everything}
    assert sum(1 for p in everything if mine[p].startswith("J")) == 15 * 50
    assert len(theirs) == 3000


def test_a_journal_redis_lost_writes_of_is_read_again_whole(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """Redis loses an acknowledged apply (a failover to a replica that lagged): its fence,
    windows and journal blobs are gone, while the worker holds the records as after it.
    The apply done again is refused by the heads, the worker reads the shards whole
    (their blobs no longer chain to what it holds), and every pair counts once."""
    m = binary.model_id
    ids = [f"r{i}" for i in range(300)]
    assert _predict(store, binary, ids, t) == JoinStats()
    saved = {
        key: store.redis.dump(key) for key in store.redis.scan_iter(match=f"{ModelKeys(m).tag}:*")
    }
    again = request(store, binary, {}, None)  # the fence the lost apply had
    lb = labels(ids, [t + 9] * len(ids), [1] * len(ids))
    delta, _ = join_delta(binary, ModelEvents(), ([], []), lb, "labels")
    again.join = delta
    assert store.applies.apply(again).stats == JoinStats(joined=300)
    store.redis.delete(*store.redis.scan_iter(match=f"{ModelKeys(m).tag}:*"))
    for key, value in saved.items():
        store.redis.restore(key, 0, value)
    reads = store.applies.records.full_reads
    assert store.applies.apply(again).stats == JoinStats(joined=300)
    assert store.applies.records.full_reads > reads
    assert _labelled(store, binary, _start(binary, t)) == 300
    assert store.counters.join_stats(m) == {"joined": 300}
    assert {record(store, m, pid)[0] for pid in ids} == {"J"}


def test_records_of_the_earlier_bucket_layout_are_moved_into_the_journals_once(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """Records an earlier version left in its hash buckets (one field per id, bucket =
    crc32 mod 4096) are moved into the journals when a worker first meets the model: the
    labels that come next join them, the buckets are gone, and another worker finds
    the journals and moves nothing."""
    import zlib

    m, k = binary.model_id, ModelKeys(binary.model_id)
    pending = {f"old{i}": f"{t}|1|1|0.75" for i in range(500)}
    waiting = {f"early{i}": f"L{t + 30}|-1|1" for i in range(200)}
    for pid, rec in (pending | waiting).items():
        store.redis.hset(
            k.legacy_bucket(zlib.crc32(pid.encode()) % journal.LEGACY_BUCKETS), pid, rec
        )
    assert _label(store, binary, list(pending), t + 40, 1) == JoinStats(joined=500)
    assert _predict(store, binary, list(waiting), t) == JoinStats(joined=200)
    assert store.redis.keys(f"{k.tag}:ids:*") == []
    assert {record(store, m, pid)[0] for pid in pending | waiting} == {"J"}
    assert _labelled(store, binary, _start(binary, t)) == 700
    assert Store(store.url).applies.records.migrate(m) == 0


def _label_request(
    store: Store, profile: ReferenceProfile, pids: list[str], t: int
) -> ApplyRequest:
    """The apply request of a batch of labels only, as the worker builds it."""
    lb = labels(pids, [t] * len(pids), [1] * len(pids))
    delta, _ = join_delta(profile, ModelEvents(), ([], []), lb, "labels")
    return request(store, profile, {}, delta)


# ---- (d) a constant target -----------------------------------------------------------------
@pytest.mark.parametrize("value", [0.1, 1e6 + 0.1])
def test_a_constant_target_summed_pair_by_pair_has_no_r2(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile], value: float
) -> None:
    """20,000 labels all equal (far from the profile's label mean, the shift), summed pair
    by pair in the script over four calls: the sums of y and y² keep only rounding error
    of a variance, which must read as an undefined R² (NaN), not as a number; MAE and
    RMSE are exact."""
    profile = register(store, profiles["regression"], model_id)
    n, per_call = 20_000, 5_000
    t = current_window(profile) - profile.config.window_seconds + 10
    y = [value] * n
    pred = [value + 1.0] * n
    for c in range(0, n, per_call):
        ids = [f"c{i}" for i in range(c, c + per_call)]
        ev = events(profile, ids, [t] * per_call, pred[c : c + per_call])
        lb = labels(ids, [t + 5] * per_call, y[c : c + per_call])
        assert apply_events(store, profile, ev, lb, with_windows=False).joined == per_call
    (window,) = store.windows.read(profile, [_start(profile, t)])
    assert window.performance is not None and window.performance.labelled == n
    m = regression_metrics(window.performance)
    assert math.isnan(m["r2"]), m
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, pred)), rel=1e-12)


# ---- (e) a model that joins no labels --------------------------------------------------------
def test_repeated_ids_of_a_model_without_labels_are_duplicates_within_their_window(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile]
) -> None:
    """Without a label column the ids are kept per window, only to count repeats: a
    repeat in the same batch or a later one counts in its window; the same id in another
    window does not. A window's ids are kept until dedupe_horizon_seconds after its end."""
    profile = register(store, profiles["unlabelled"], model_id)
    width, keep = profile.config.window_seconds, profile.config.dedupe_horizon_seconds
    start = current_window(profile) - width
    t = start + 10

    def send(pids: list[str], times: list[int]) -> JoinStats:
        ev = events(profile, pids, times, [{"score": 0.5, "label": 1}] * len(pids))
        return apply_events(store, profile, ev, None)

    assert send(["a", "b", "a", "c"], [t] * 4) == JoinStats(duplicate_predictions=1)
    assert send(["b", "d", "a"], [t, t, t + width]) == JoinStats(duplicate_predictions=1)
    assert send(["d", "d"], [t, t]) == JoinStats(duplicate_predictions=2)

    window, later = store.windows.read(profile, [start, start + width])
    assert (window.count, window.duplicates, window.duplicate_example) == (8, 4, "a")
    assert (later.count, later.duplicates, later.duplicate_example) == (1, 0, None)
    k = ModelKeys(model_id)
    ids = k.window(profile.revision, start).ids
    # each id with its version ("1"): the same id under another version is shadow traffic
    assert store.redis.smembers(ids) == {b"a\x1f1", b"b\x1f1", b"c\x1f1", b"d\x1f1"}
    assert store.redis.smembers(k.window(profile.revision, start + width).ids) == {b"a\x1f1"}
    assert int(store.redis.execute_command("EXPIRETIME", ids)) == start + width + keep
    assert store.redis.keys(f"{k.tag}:jr*") == []  # no join records
    assert store.counters.join_stats(model_id) == {"duplicate_predictions": 4}


def test_repeated_ids_in_batches_of_thousands_are_counted_as_offline(
    store: Store, model_id: str, profiles: dict[str, ReferenceProfile]
) -> None:
    """The script checks ids a thousand at a time: repeats across its chunks, within one,
    and of earlier batches count as a set kept offline counts them, and the example is
    one of the repeated ids."""
    profile = register(store, profiles["unlabelled"], model_id)
    t = current_window(profile) - profile.config.window_seconds + 10
    rng = np.random.default_rng(7)
    seen: set[str] = set()
    repeated: set[str] = set()
    total = 0
    for size in (2500, 1800, 3100):
        pids = [f"i{int(v)}" for v in rng.integers(0, 9000, size)]
        repeats = 0
        for pid in pids:
            if pid in seen:
                repeats += 1
                repeated.add(pid)
            seen.add(pid)
        total += repeats
        ev = events(profile, pids, [t] * size, [{"score": 0.5, "label": 1}] * size)
        assert apply_events(store, profile, ev, None) == JoinStats(duplicate_predictions=repeats)
    (window,) = store.windows.read(profile, [t - t % profile.config.window_seconds])
    assert (window.count, window.duplicates) == (2500 + 1800 + 3100, total)
    assert window.duplicate_example in repeated
    assert store.redis.scard(ModelKeys(model_id).window(profile.revision, window.start).ids) == len(
        seen
    )


def test_the_same_id_under_two_versions_is_shadow_traffic(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """Two versions scoring one id wait together; the label joins both (a pair counted
    for each version), and a third version scoring the id after the join joins too. Only
    the same id under the same version again is a repeat."""
    m = binary.model_id
    first = events(binary, ["p"], [t], [{"score": 0.75, "label": 1}], version="a")
    second = events(binary, ["p"], [t], [{"score": 0.25, "label": 0}], version="b")
    assert apply_events(store, binary, first) == JoinStats()
    assert apply_events(store, binary, second) == JoinStats()
    assert record(store, m, "p") == f"{t}|a|1|0.75\n{t}|b|0|0.25"
    assert _label(store, binary, ["p"], t + 50, 1) == JoinStats(joined=2)
    assert record(store, m, "p") == f"J{t}\ta\nb\t{t + 50}|-1|1"
    third = events(binary, ["p"], [t + 1], [{"score": 0.5, "label": 1}], version="c")
    assert apply_events(store, binary, third) == JoinStats(joined=1)
    again = events(binary, ["p"], [t + 2], [{"score": 0.5, "label": 1}], version="b")
    assert apply_events(store, binary, again) == JoinStats(duplicate_predictions=1)
    assert _labelled(store, binary, _start(binary, t)) == 3
    (w,) = store.windows.read(binary, [_start(binary, t)], slices=True)
    assert {name: s.performance.labelled for name, s in w.slices.items()} == {
        "v=a": 1,
        "v=b": 1,
        "v=c": 1,
    }


def test_champion_and_challenger_pairs_are_counted_once_each(
    store: Store, profiles: dict[str, ReferenceProfile], model_id: str
) -> None:
    """Classes: the paired right/wrong table (McNemar's input), by hand; regression: the
    sums of absolute errors and of squared differences (the paired t-test's), by numpy.
    The challenger scoring an id after the label joined the champion's still pairs."""
    rng = np.random.default_rng(8)
    binary = register(store, profiles["binary"], model_id)
    store.profiles.set_champion(model_id, "a")
    t = current_window(binary) - binary.config.window_seconds + 10
    n = 60
    ids = [f"i{j}" for j in range(n)]
    y = rng.integers(0, 2, n)
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    champ = events(binary, ids, [t] * n, [{"label": int(v)} for v in a], version="a")
    chal = events(binary, ids, [t] * n, [{"label": int(v)} for v in b], version="b")
    apply_events(store, binary, champ)
    apply_events(store, binary, None, labels(ids[:40], [t + 5] * 40, y[:40].tolist()))
    apply_events(store, binary, chal)  # 40 ids already joined, 20 waiting
    apply_events(store, binary, None, labels(ids[40:], [t + 5] * 20, y[40:].tolist()))
    (w,) = store.windows.read(binary, [_start(binary, t)])
    table = w.comparisons["b"].table
    right_a, right_b = a == y, b == y
    assert w.comparisons["b"].n == n
    assert table == Counter(
        {
            f"{'y' if ra else 'n'}{'y' if rb else 'n'}": int(c)
            for (ra, rb), c in Counter(zip(right_a.tolist(), right_b.tolist(), strict=True)).items()
        }
    )
    assert "a" not in w.comparisons  # the champion is no challenger of itself

    reg_id = f"{model_id}-reg"
    regression = register(store, profiles["regression"], reg_id)
    store.profiles.set_champion(reg_id, "a")
    t = current_window(regression) - regression.config.window_seconds + 10
    y = rng.normal(100, 10, n)
    a, b = y + rng.normal(0, 1, n), y + rng.normal(0, 3, n)
    apply_events(store, regression, events(regression, ids, [t] * n, a.tolist(), version="a"))
    apply_events(store, regression, events(regression, ids, [t] * n, b.tolist(), version="b"))
    apply_events(store, regression, None, labels(ids, [t + 5] * n, y.tolist()))
    (w,) = store.windows.read(regression, [_start(regression, t)])
    pairs = w.comparisons["b"]
    ea, eb = np.abs(a - y), np.abs(b - y)
    assert (pairs.n, pairs.errors) == (n, n)
    assert pairs.abs_champion == pytest.approx(ea.sum(), rel=1e-12)
    assert pairs.abs_challenger == pytest.approx(eb.sum(), rel=1e-12)
    assert pairs.squared_difference == pytest.approx(((ea - eb) ** 2).sum(), rel=1e-12)


# ---- (e) two writers meeting the same ids at once ----------------------------------------
def test_predictions_and_labels_applied_at_once_by_two_writers_join_exactly_once(
    store: Store, binary: ReferenceProfile, t: int
) -> None:
    """One writer applies a stream's predictions, another its labels (each label shortly
    after its prediction, in small batches, on fences of their own partitions), both at
    once through Stores of their own, as two workers would. Records read by one are
    changed by the other between its read and its apply: that apply writes nothing and
    is worked out again. In the end every id is joined once, every pair counted once in
    its window, and no record is left waiting."""
    n, size = 3000, 50
    ids = [f"r{i}" for i in range(n)]
    rng = np.random.default_rng(11)
    score = rng.uniform(size=n)
    actual = (rng.uniform(size=n) < score).astype(int).tolist()
    preds = [{"score": float(s), "label": int(s >= 0.5)} for s in score]
    # each label trails its prediction by at most a few batches: they cross all the time
    order = np.argsort(np.arange(n) + rng.integers(0, 3 * size, n), kind="stable").tolist()
    rounds: list[int] = []
    failures: list[BaseException] = []

    def writer(field: str, batches: list[tuple[ModelEvents | None, Any]]) -> None:
        own = Store(store.url)
        try:
            for i, (ev, lb) in enumerate(batches):
                delta, _ = join_delta(
                    binary,
                    ev or ModelEvents(),
                    prediction_outputs(ev, binary) if ev else ([], []),
                    lb,
                    "labels",
                )
                r = request(own, binary, sketch_events(ev, binary) if ev else {}, delta)
                r.fences = [Fence(field, i - 1, i)]
                assert isinstance(own.applies.apply(r), Applied)
            rounds.append(own.applies.record_rounds)
        except BaseException as e:
            failures.append(e)

    pred_batches = [
        (events(binary, ids[i : i + size], [t] * size, preds[i : i + size], seed=i), None)
        for i in range(0, n, size)
    ]
    label_batches = [
        (None, labels([ids[j] for j in chunk], [t + 60] * len(chunk), [actual[j] for j in chunk]))
        for chunk in (order[i : i + size] for i in range(0, n, size))
    ]
    threads = [
        threading.Thread(target=writer, args=("p@0", pred_batches)),
        threading.Thread(target=writer, args=("l@0", label_batches)),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not failures, failures
    assert _labelled(store, binary, _start(binary, t)) == n
    stats = store.counters.join_stats(binary.model_id)
    assert stats["joined"] == n
    assert "duplicate_labels" not in stats and "duplicate_predictions" not in stats
    m = binary.model_id
    assert {record(store, m, pid)[0] for pid in ids} == {"J"}
    (window,) = store.windows.read(binary, [_start(binary, t)])
    assert window.count == n
    want = PerformanceSketch.from_pairs(
        "binary",
        actual,
        [str(p["label"]) for p in preds],
        score,
        binary.positive_class,
        np.full(n, 60.0),
        score_edges=binary.score_edges,
    )
    assert window.performance is not None
    assert window.performance.confusion == want.confusion
    assert (window.performance.positive_hist == want.positive_hist).all()
    print(f"records worked out again: {sum(rounds)}")
