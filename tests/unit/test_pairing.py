"""Where a label meets its prediction (`streamdrift.pairing`), on plain objects: the
records' transitions, and the sums of the pairs against `PerformanceSketch.from_pairs`
(and its numpy arithmetic) for the model and for each slice, read back through the perf
hash's own decoder."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from streamdrift.pairing import (
    Pair,
    PairRefused,
    PairRules,
    Pairs,
    comparison_sums,
    meet,
    window_sums,
)
from streamdrift.performance import PerformanceSketch, delay_bucket, score_edges
from streamdrift.store.window_fields import decode_performance, decode_slice_performance

WIDTH = 3600
T = 1_800_000_000 // WIDTH * WIDTH  # a window start


def rules(task: str = "binary", **kw: object) -> PairRules:
    base: dict[str, object] = {
        "width": WIDTH,
        "task": task,
        "positive": "1" if task == "binary" else None,
        "label_kind": "numeric" if task == "regression" else "categorical",
        "score_edges": None,
        "parts": None,
        "versions": True,
        "slice_keys": frozenset(),
        "champion": None,
        "shift": 0.0,
    }
    base.update(kw)
    return PairRules(**base)  # type: ignore[arg-type]


def pred(pid: str, rec: str, bucket: int = 7) -> list[object]:
    return [pid, rec, bucket]


def label(pid: str, value: str, t: int, lbin: int = -1, bucket: int = 7) -> list[object]:
    return [pid, value, t, lbin, bucket]


# ---- transitions ----------------------------------------------------------------------
def test_a_prediction_waits_then_its_label_meets_it() -> None:
    r = rules()
    m = meet([pred("p", f"{T + 5}||1|0.75")], [], {(7, "p"): None}, r)
    assert m.writes == {(7, "p"): f"{T + 5}||1|0.75"} and m.pairs.rows() == []
    m = meet([], [label("p", "1", T + 50)], {(7, "p"): f"{T + 5}||1|0.75"}, r)
    assert m.writes == {(7, "p"): f"J{T + 5}"}
    assert m.pairs.rows() == [Pair(f"{T + 5}||1|0.75", "1", T + 50, -1)]
    assert m.read == {(7, "p"): f"{T + 5}||1|0.75"}


def test_a_label_waits_then_its_prediction_meets_it() -> None:
    r = rules()
    m = meet([], [label("p", "0", T + 50)], {(7, "p"): None}, r)
    assert m.writes == {(7, "p"): f"L{T + 50}|-1|0"} and m.labels_waiting == 1
    m = meet([pred("p", f"{T + 5}||1|0.75")], [], {(7, "p"): f"L{T + 50}|-1|0"}, r)
    assert m.writes == {(7, "p"): f"J{T + 5}"}
    assert m.pairs.rows() == [Pair(f"{T + 5}||1|0.75", "0", T + 50, -1)]


def test_both_sides_in_one_batch_and_repeats() -> None:
    r = rules()
    m = meet(
        [pred("p", f"{T + 5}||1|0.75"), pred("p", f"{T + 6}||1|0.5")],
        [label("p", "1", T + 50), label("p", "1", T + 60)],
        {(7, "p"): None},
        r,
    )
    assert len(m.pairs) == 1 and m.duplicate_labels == 1
    assert m.repeats == {T: [1, "p"]}
    assert m.read == {(7, "p"): ""} and m.writes == {(7, "p"): f"J{T + 5}"}


def test_shadow_traffic_joins_each_version_and_compares_with_the_champion() -> None:
    r = rules(champion="1.0")
    a, b = f"{T + 5}|1.0|1|0.8", f"{T + 7}|2.0|0|0.3"
    m = meet([pred("p", a), pred("p", b)], [label("p", "1", T + 90)], {(7, "p"): None}, r)
    assert m.pairs.records == [a, b]
    assert m.comparisons == [(a, b, "1")]
    joined = m.writes[(7, "p")]
    assert joined == f"J{T + 5}\t{a}\n{b}\t{T + 90}|-1|1"
    # a third version scoring the id later joins too, and is compared with the champion
    c = f"{T + 9}|3.0|1|0.6"
    m = meet([pred("p", c)], [], {(7, "p"): joined}, r)
    assert m.pairs.records == [c] and m.comparisons == [(a, c, "1")]
    # the same version again is a repeat
    m = meet([pred("p", f"{T + 11}|2.0|1|0.6")], [], {(7, "p"): joined}, r)
    assert m.pairs.rows() == [] and m.repeats == {T: [1, "p"]}


def test_a_label_for_a_bare_record_joins_nothing() -> None:
    m = meet([], [label("p", "1", T + 50)], {(7, "p"): str(T)}, rules())
    assert m.pairs.rows() == [] and m.labels_without_record == 1
    assert m.writes == {(7, "p"): f"J{T}"}


@pytest.mark.parametrize(
    ("task", "preds", "labels", "current", "reason"),
    [
        ("regression", [], [label("p", "1e-310", T)], None, "regression label"),
        ("regression", [], [label("p", "nan", T)], None, "regression label"),
        ("regression", [pred("p", f"{T}|||1e101")], [], None, "prediction 1e101"),
        ("binary", [pred("p", f"{T}||1|nan")], [], None, "score nan"),
        ("binary", [], [label("p", "1", T)], f"{T}||1|inf", "score inf"),
        ("binary", [pred("p", "x|y")], [], None, "prediction record"),
        ("binary", [pred("p", f"{T}||1|0.5")], [], "Lgarbage", "join record"),
        ("binary", [pred("p", f"{T}|2|1|0.5")], [], f"J{T}\t1\tx|y", "join record"),
    ],
)
def test_what_no_pair_may_be_counted_from_is_refused(
    task: str, preds: list, labels: list, current: str | None, reason: str
) -> None:
    with pytest.raises(PairRefused, match=reason):
        meet(preds, labels, {(7, "p"): current}, rules(task))


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_a_batch_of_records_is_checked_as_each_record_is(task: str) -> None:
    """The batch check of prediction records (one pass over all) refuses exactly what
    the check of one record refuses, and names the same first bad record."""
    good = [f"{T}||1|0.75", f"{T + 1}|2.0|0|", f"{T + 2}|v|1|1e-300|region=eu", f"{T}|||12.5"]
    odd = [
        f"+{T}||1|0.5",  # a sign: int() takes it, a record's time has none
        f"{T}\u0661||1|0.5",  # a non-ASCII digit
        f" {T}||1|0.5",
        f"{T}||1|nan",
        f"{T}||1|inf",
        f"{T}||1|-1e300",
        f"{T}||1|1e101",
        f"{T}||1|abc",
        f"{T}||1|1_0",
        f"{T}||1",
        "",
    ]
    r = rules(task, positive="1" if task == "binary" else None)
    for bad in odd:
        recs = [*good, bad, *good]
        try:
            expected = [
                meet([pred(f"p{i}", rec)], [], {(7, f"p{i}"): None}, r)
                for i, rec in enumerate(recs)
            ]
        except PairRefused as e:
            with pytest.raises(PairRefused, match=re.escape(str(e))):
                meet([pred(f"p{i}", rec) for i, rec in enumerate(recs)], [], _nothing(recs), r)
            continue
        m = meet([pred(f"p{i}", rec) for i, rec in enumerate(recs)], [], _nothing(recs), r)
        assert m.writes == {k: v for e in expected for k, v in e.writes.items()}


def _nothing(recs: list[str]) -> dict[tuple[int, str], None]:
    return {(7, f"p{i}"): None for i in range(len(recs))}


# ---- sums -----------------------------------------------------------------------------
def _hash(ints: Counter[str], floats: dict[str, float]) -> dict[str, str]:
    return {**{f: str(v) for f, v in ints.items()}, **{f: repr(v) for f, v in floats.items()}}


def _binary_pairs(rng: np.random.Generator, n: int) -> list[Pair]:
    pairs = []
    for i in range(n):
        t = T + int(rng.integers(0, WIDTH))
        score = float(rng.uniform())
        cls = "1" if score >= 0.5 else "0"
        version = ["1.0", "2.0", ""][i % 3]
        seg = f"|region={['eu', 'us'][i % 2]},tier=gold" if i % 4 else ""
        actual = "1" if rng.uniform() < score else "0"
        delay = int(rng.choice([0, 1, 2, 3, 7, 8, 1023, 1024, 70_000]))
        pairs.append(Pair(f"{t}|{version}|{cls}|{score!r}{seg}", actual, t + delay, -1))
    return pairs


def _columns(pairs: list[Pair]) -> dict[str, object]:
    parts = [p.record.split("|") for p in pairs]
    times = np.array([int(x[0]) for x in parts])
    return {
        "actual": [p.label for p in pairs],
        "predicted": [x[2] for x in parts],
        "score": np.array([float(x[3]) for x in parts]),
        "delays": np.array([p.label_time for p in pairs]) - times,
        "times": times,
    }


@pytest.mark.parametrize("edges", [False, True])
def test_binary_sums_equal_from_pairs_for_the_model_and_each_slice(edges: bool) -> None:
    rng = np.random.default_rng(3)
    layout = score_edges(rng.beta(2, 5, 5000)) if edges else None
    r = rules(score_edges=tuple(layout) if layout else None, parts=10, slice_keys={"region"})
    pairs = _binary_pairs(rng, 600)
    sums = window_sums(Pairs.of(pairs), r)
    assert list(sums) == [T]
    w = sums[T]
    stored = _hash(w.ints, w.floats)

    def reference(sel: list[int], parts: bool = False) -> PerformanceSketch:
        c = _columns([pairs[i] for i in sel])
        return PerformanceSketch.from_pairs(
            "binary",
            c["actual"],  # type: ignore[arg-type]
            c["predicted"],  # type: ignore[arg-type]
            c["score"],  # type: ignore[arg-type]
            "1",
            c["delays"],  # type: ignore[arg-type]
            score_edges=layout,
            parts=(c["times"], T, WIDTH, 10) if parts else None,  # type: ignore[arg-type]
        )

    def same(got: PerformanceSketch, want: PerformanceSketch) -> None:
        assert got.labelled == want.labelled and got.scored == want.scored
        assert got.delay_hist == want.delay_hist and got.confusion == want.confusion
        assert got.delay_sum == pytest.approx(want.delay_sum)
        assert (got.positive_hist == want.positive_hist).all()
        assert (got.negative_hist == want.negative_hist).all()
        assert got.score_sums == pytest.approx(want.score_sums)
        for f in ("log_loss_sum", "log_loss_sq", "brier_sum"):
            assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-12)
        assert got.log_loss_sq_n == want.log_loss_sq_n

    model = decode_performance(stored)
    same(model, reference(list(range(len(pairs))), parts=True))
    want_parts = reference(list(range(len(pairs))), parts=True).sub_windows
    assert model.sub_windows.keys() == want_parts.keys()
    for k, v in want_parts.items():
        assert model.sub_windows[k] == pytest.approx(v)
    slices = decode_slice_performance(stored)
    assert set(slices) == {"v=1.0", "v=2.0", "region=eu", "region=us"}
    for name, s in slices.items():
        key, _, value = name.partition("=")
        if key == "v":
            sel = [i for i, p in enumerate(pairs) if p.record.split("|")[1] == value]
        else:
            sel = [i for i, p in enumerate(pairs) if f"region={value}" in p.record]
        same(s, reference(sel))
    # segments (every key, not only slices): labelled pairs and right classes
    for seg in ("region=eu", "region=us", "tier=gold"):
        sel = [p for p in pairs if seg in p.record]
        assert w.ints[f"s:{seg}:n"] == len(sel)
        right = sum(p.label == p.record.split("|")[2] for p in sel)
        assert w.ints[f"s:{seg}:ok"] == right
    # the joined labels' own column
    assert w.label_counts == Counter(p.label for p in pairs)
    # the delay histogram is performance.delay_bucket's
    assert model.delay_hist == Counter(
        delay_bucket(float(p.label_time - int(p.record.split("|")[0]))) for p in pairs
    )


def test_regression_sums_equal_from_pairs() -> None:
    rng = np.random.default_rng(5)
    n = 300
    y = rng.normal(100.0, 10.0, n)
    y[:4] = 0.0
    yhat = y + rng.normal(0.0, 3.0, n)
    times = T + rng.integers(0, WIDTH, n)
    pairs = [
        Pair(f"{t}|||{float(p)!r}", repr(float(a)), int(t) + 30, int(b))
        for t, p, a, b in zip(times, yhat, y, rng.integers(0, 8, n), strict=True)
    ]
    r = rules("regression", shift=100.0, parts=5, versions=False)
    w = window_sums(Pairs.of(pairs), r)[T]
    got = decode_performance(_hash(w.ints, w.floats))
    want = PerformanceSketch.from_pairs(
        "regression",
        y.tolist(),
        None,
        yhat,
        None,
        np.full(n, 30.0),
        shift=100.0,
        parts=(times, T, WIDTH, 5),
    )
    assert got.labelled == n and got.ape_n == want.ape_n == n - 4
    for f in ("abs_error", "sq_error", "error", "y_sum", "y_sq", "ape_sum", "delay_sum"):
        assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-12), f
    for k, v in want.sub_windows.items():
        assert got.sub_windows[k] == pytest.approx(v, rel=1e-12)
    # the label's column: its bins and moments
    assert w.label_ints["n"] == n
    assert w.label_floats["sum"] == pytest.approx(y.sum())
    assert w.label_floats["sumsq"] == pytest.approx((y * y).sum())


def test_pairs_fall_in_their_predictions_windows() -> None:
    pairs = [
        Pair(f"{T + 10}||1|0.9", "1", T + 5 * WIDTH, -1),
        Pair(f"{T - 10}||0|0.2", "1", T + 5 * WIDTH, -1),
    ]
    sums = window_sums(Pairs.of(pairs), rules())
    assert sorted(sums) == [T - WIDTH, T]
    assert sums[T].ints["n"] == sums[T - WIDTH].ints["n"] == 1
    assert sums[T - WIDTH].ints["cm:1|0"] == 1


def test_champion_against_challenger_sums() -> None:
    """The paired table, the joint score bins by label and the regression error sums."""
    r = rules(champion="1.0")
    into: dict = {}
    comparisons = [
        (f"{T + 1}|1.0|1|0.9", f"{T + 2}|2.0|0|0.3", "1"),
        (f"{T + 1}|1.0|1|0.999", f"{T + 2}|2.0|1|1.0", "0"),
    ]
    comparison_sums(comparisons, r, into)
    ints = into[T].ints
    assert ints["[cc=2.0]n"] == 2
    assert ints["[cc=2.0]mc:yn"] == 1 and ints["[cc=2.0]mc:nn"] == 1
    assert ints["[cc=2.0]jp:45,15"] == 1 and ints["[cc=2.0]jn:49,49"] == 1
    # an id joined before the champion was set keeps its versions only: nothing to compare
    r = rules(champion="1.0")
    joined = f"J{T + 5}\t1.0\n2.0\t{T + 90}|-1|1"
    m = meet([pred("p", f"{T + 9}|3.0|1|0.6")], [], {(7, "p"): joined}, r)
    assert len(m.pairs) == 1 and m.comparisons == [("1.0", f"{T + 9}|3.0|1|0.6", "1")]
    into = {}
    comparison_sums(m.comparisons, r, into)
    assert into == {}
    comparison_sums([(f"{T}|1.0||10.0", f"{T}|2.0||13.0", "11.0")], rules("regression"), into)
    f = into[T].floats
    assert (f["[cc=2.0]aea"], f["[cc=2.0]aeb"], f["[cc=2.0]d2"]) == (1.0, 2.0, 1.0)
