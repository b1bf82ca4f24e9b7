"""Tests for streamdrift.fairness: a table worked by hand, fairlearn's metrics on the same
simulated predictions, scipy's Wilson interval, and the coverage and false-alarm rate of
the intervals and the significance rule by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from scipy import stats
from sklearn.metrics import precision_score

from streamdrift.fairness import (
    Estimate,
    FairnessBound,
    GroupCounts,
    crossed_bounds,
    fairness_report,
    group_counts,
    katz_ratio,
    newcombe_difference,
    wilson_interval,
)

TOL = 5e-7  # the hand values below are written to 6 decimals

# --------------------------------------------------------------------------- by hand


def test_a_tiny_table_worked_by_hand() -> None:
    """A: tp 6, fp 2, tn 8, fn 4 (20 ids); B: tp 1, fp 1, tn 6, fn 2 (10 ids).
    A is larger, so it is the reference. z = 1.959964 (95%)."""
    report = fairness_report(
        {"A": GroupCounts(tp=6, fp=2, tn=8, fn=4), "B": GroupCounts(tp=1, fp=1, tn=6, fn=2)},
        min_group_size=5,
    )
    assert report.reference == "A"
    a, b = report.groups["A"], report.groups["B"]
    assert (a.size, b.size) == (20, 10)
    assert a.versus_reference is None

    def close(estimate: Estimate, value: float, low: float, high: float) -> None:
        got = (estimate.value, estimate.low, estimate.high)
        assert got == pytest.approx((value, low, high), abs=TOL)

    # Wilson: (x + z²/2 ± z·sqrt(x(n−x)/n + z²/4)) / (n + z²)
    close(a.selection_rate, 8 / 20, 0.218807, 0.613418)
    close(a.true_positive_rate, 6 / 10, 0.312674, 0.831820)
    close(a.false_positive_rate, 2 / 10, 0.056682, 0.509838)
    close(a.precision, 6 / 8, 0.409275, 0.928521)
    close(b.selection_rate, 2 / 10, 0.056682, 0.509838)
    close(b.true_positive_rate, 1 / 3, 0.061492, 0.792340)
    close(b.false_positive_rate, 1 / 7, 0.025680, 0.513128)
    close(b.precision, 1 / 2, 0.094531, 0.905469)

    d = b.versus_reference
    assert d is not None
    # Newcombe, selection rate: d = 0.2 − 0.4;
    # low  = d − sqrt((0.2 − 0.056682)² + (0.613418 − 0.4)²) = −0.2 − 0.257075
    # high = d + sqrt((0.509838 − 0.2)² + (0.4 − 0.218807)²) = −0.2 + 0.358929
    close(d.demographic_parity_difference, -0.2, -0.457075, 0.158929)
    # Katz: ln(0.5) ± z·sqrt(1/2 − 1/10 + 1/8 − 1/20) = −0.693147 ± z·0.689202
    close(d.disparate_impact, 0.5, 0.129515, 1.930279)
    close(d.equal_opportunity_difference, 1 / 3 - 6 / 10, -0.623931, 0.274853)
    close(d.false_positive_rate_difference, 1 / 7 - 2 / 10, -0.388398, 0.339897)
    assert d.equalized_odds_difference == pytest.approx(4 / 15)  # max(4/15, 2/35)

    assert report.demographic_parity_difference == pytest.approx(0.4 - 0.2)
    assert report.demographic_parity_ratio == pytest.approx(0.2 / 0.4)
    assert report.equal_opportunity_difference == pytest.approx(0.6 - 1 / 3)
    assert report.equal_opportunity_ratio == pytest.approx((1 / 3) / 0.6)
    assert report.equalized_odds_difference == pytest.approx(max(0.6 - 1 / 3, 1 / 5 - 1 / 7))
    assert report.equalized_odds_ratio == pytest.approx(min((1 / 3) / 0.6, (1 / 7) / (1 / 5)))

    # a ratio of 0.5 is below 0.8, but the interval reaches 1.93: not significant
    assert crossed_bounds(report, [FairnessBound("disparate_impact", 0.8)]) == []


# --------------------------------------------------------------------------- fairlearn


def _simulated(seed: int, n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions of a classifier whose selection rate, TPR and FPR differ by group."""
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["female", "male", "nonbinary"]), size=n, p=[0.45, 0.5, 0.05])
    prevalence = np.select([group == "female", group == "male"], [0.3, 0.4], 0.35)
    tpr = np.select([group == "female", group == "male"], [0.65, 0.8], 0.7)
    fpr = np.select([group == "female", group == "male"], [0.1, 0.15], 0.2)
    y_true = (rng.random(n) < prevalence).astype(int)
    y_pred = (rng.random(n) < np.where(y_true == 1, tpr, fpr)).astype(int)
    return y_true, y_pred, group


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_fairlearn_on_the_same_predictions(seed: int) -> None:
    y_true, y_pred, group = _simulated(seed)
    report = fairness_report(group_counts(y_true, y_pred, group), reference="male")
    sf = {"sensitive_features": group}
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "precision": precision_score,
            "count": count,
        },
        y_true=y_true,
        y_pred=y_pred,
        **sf,
    )
    by_group = frame.by_group
    assert sorted(report.groups) == sorted(by_group.index)
    for name, g in report.groups.items():
        row = by_group.loc[name]
        assert g.size == row["count"]
        assert g.selection_rate.value == pytest.approx(row["selection_rate"], abs=1e-12)
        assert g.true_positive_rate.value == pytest.approx(row["true_positive_rate"], abs=1e-12)
        assert g.false_positive_rate.value == pytest.approx(row["false_positive_rate"], abs=1e-12)
        assert g.precision.value == pytest.approx(row["precision"], abs=1e-12)
        if name == "male":
            continue
        ref = by_group.loc["male"]
        d = g.versus_reference
        assert d is not None
        assert d.demographic_parity_difference.value == pytest.approx(
            row["selection_rate"] - ref["selection_rate"], abs=1e-12
        )
        assert d.disparate_impact.value == pytest.approx(
            row["selection_rate"] / ref["selection_rate"], rel=1e-12
        )
        tpr_diff = row["true_positive_rate"] - ref["true_positive_rate"]
        fpr_diff = row["false_positive_rate"] - ref["false_positive_rate"]
        assert d.equal_opportunity_difference.value == pytest.approx(tpr_diff, abs=1e-12)
        assert d.false_positive_rate_difference.value == pytest.approx(fpr_diff, abs=1e-12)
        assert d.equalized_odds_difference == pytest.approx(
            max(abs(tpr_diff), abs(fpr_diff)), abs=1e-12
        )

    pairs = [
        (report.demographic_parity_difference, demographic_parity_difference),
        (report.demographic_parity_ratio, demographic_parity_ratio),
        (report.equal_opportunity_difference, equal_opportunity_difference),
        (report.equal_opportunity_ratio, equal_opportunity_ratio),
        (report.equalized_odds_difference, equalized_odds_difference),
        (report.equalized_odds_ratio, equalized_odds_ratio),
    ]
    for ours, theirs in pairs:
        assert ours == pytest.approx(theirs(y_true, y_pred, **sf), abs=1e-12), theirs.__name__
    differences = frame.difference(method="between_groups")
    ratios = frame.ratio(method="between_groups")
    assert report.demographic_parity_difference == pytest.approx(differences["selection_rate"])
    assert report.demographic_parity_ratio == pytest.approx(ratios["selection_rate"])


def test_group_counts_are_the_confusion_counts_and_add_up() -> None:
    y_true = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 1, 0, 0, 0])
    group = np.array(["x", "x", "x", "x", "y", "y", "y", "y", "y"])
    counts = group_counts(y_true, y_pred, group)
    assert counts == {
        "x": GroupCounts(tp=1, fp=1, tn=1, fn=1),
        "y": GroupCounts(tp=1, fp=1, tn=2, fn=1),
    }
    first, second = (
        group_counts(y_true[:5], y_pred[:5], group[:5]),
        group_counts(y_true[5:], y_pred[5:], group[5:]),
    )
    assert first["x"] + GroupCounts() == counts["x"]
    assert first["y"] + second["y"] == counts["y"]
    assert type(GroupCounts(tp=np.int64(3)).tp) is int
    with pytest.raises(ValueError):
        GroupCounts(tp=-1)
    with pytest.raises(ValueError):
        GroupCounts(tp=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize(
    ("x", "n"), [(0, 1), (1, 1), (0, 20), (3, 20), (10, 20), (20, 20), (457, 1000)]
)
def test_wilson_interval_equals_scipy(x: int, n: int, confidence: float) -> None:
    want = stats.binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
    got = wilson_interval(x, n, confidence)
    assert got.value == x / n
    assert (got.low, got.high) == pytest.approx((want.low, want.high), abs=1e-12)


def test_interval_coverage_is_roughly_nominal() -> None:
    """Katz's ratio and Newcombe's difference intervals cover the true selection-rate
    ratio and difference in about 95% of 3000 simulated windows."""
    rng = np.random.default_rng(17)
    sims, n1, n2, p1, p2 = 3000, 300, 700, 0.3, 0.4
    x1 = rng.binomial(n1, p1, size=sims)
    x2 = rng.binomial(n2, p2, size=sims)
    ratio_hits = difference_hits = 0
    for a, b in zip(x1, x2, strict=True):
        r = katz_ratio(int(a), n1, int(b), n2)
        d = newcombe_difference(int(a), n1, int(b), n2)
        ratio_hits += r.low <= p1 / p2 <= r.high
        difference_hits += d.low <= p1 - p2 <= d.high
    # 99.9% binomial range of 3000 draws at 0.95 is about ±0.013; Katz and Newcombe are
    # approximate, so allow a little more
    assert abs(ratio_hits / sims - 0.95) < 0.015
    assert abs(difference_hits / sims - 0.95) < 0.015


def test_intervals_with_empty_cells() -> None:
    nothing_selected = katz_ratio(0, 50, 20, 100)
    assert nothing_selected.value == 0.0 and nothing_selected.low == 0.0
    assert 0.0 < nothing_selected.high < 1.0
    reference_none = katz_ratio(5, 50, 0, 100)
    assert reference_none.value == math.inf and reference_none.high == math.inf
    assert math.isnan(katz_ratio(0, 50, 0, 100).value)
    assert math.isnan(katz_ratio(1, 0, 3, 10).low)
    assert math.isnan(newcombe_difference(1, 10, 0, 0).value)
    assert math.isnan(wilson_interval(0, 0).value)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=95)


# --------------------------------------------------------------------------- bounds

BOUNDS = [
    FairnessBound("disparate_impact", 0.8),
    FairnessBound("demographic_parity_difference", 0.1),
    FairnessBound("equal_opportunity_difference", 0.1),
    FairnessBound("equalized_odds_difference", 0.1),
]


def _draw(
    rng: np.random.Generator, n: int, prevalence: float, tpr: float, fpr: float
) -> GroupCounts:
    """One group's confusion counts from its size, base rate, TPR and FPR."""
    positives = int(rng.binomial(n, prevalence))
    tp = int(rng.binomial(positives, tpr))
    fp = int(rng.binomial(n - positives, fpr))
    return GroupCounts(tp=tp, fp=fp, tn=n - positives - fp, fn=positives - tp)


def test_no_alarm_at_parity() -> None:
    """Four groups with identical rates, down to a group of 60: bounds fire in at most 5% of
    500 windows, although every (group, bound) pair is a test of its own."""
    rng = np.random.default_rng(23)
    alarms = 0
    for _ in range(500):
        counts = {
            name: _draw(rng, n, 0.3, 0.7, 0.1)
            for name, n in (("a", 2000), ("b", 800), ("c", 200), ("d", 60))
        }
        alarms += bool(crossed_bounds(fairness_report(counts, reference="a"), BOUNDS))
    assert alarms / 500 <= 0.05


def test_false_alarm_rate_exactly_on_the_four_fifths_bound() -> None:
    """A true selection-rate ratio of exactly 0.8 fires in about (1 − 0.95)/2 = 2.5% of
    windows — never more than the one-sided level beyond binomial noise."""
    rng = np.random.default_rng(31)
    sims = 1000
    fired = 0
    for _ in range(sims):
        counts = {
            "ref": _draw(rng, 1500, 0.5, 0.8, 0.2),  # selection rate 0.5
            "group": _draw(rng, 1500, 0.5, 0.64, 0.16),  # selection rate 0.4
        }
        report = fairness_report(counts, reference="ref")
        fired += bool(crossed_bounds(report, [FairnessBound("disparate_impact", 0.8)]))
    assert fired <= stats.binom.ppf(0.999, sims, 0.025)


def test_fires_on_a_ratio_of_0_6() -> None:
    rng = np.random.default_rng(37)
    fired = 0
    for _ in range(200):
        counts = {
            "privileged": _draw(rng, 600, 0.5, 0.8, 0.2),  # selection rate 0.5
            "protected": _draw(rng, 500, 0.5, 0.48, 0.12),  # selection rate 0.3
        }
        crossings = crossed_bounds(fairness_report(counts), BOUNDS[:1])
        if crossings:
            (c,) = crossings
            assert (c.group, c.reference, c.metric) == (
                "protected",
                "privileged",
                "disparate_impact",
            )
            assert c.estimate.high < 0.8
            fired += 1
    assert fired >= 195


def test_difference_and_equalized_odds_bounds() -> None:
    counts = {
        "ref": GroupCounts(tp=800, fp=100, tn=900, fn=200),  # TPR 0.8, FPR 0.1, SR 0.45
        "g": GroupCounts(tp=500, fp=100, tn=900, fn=500),  # TPR 0.5, FPR 0.1, SR 0.30
    }
    report = fairness_report(counts, reference="ref")
    got = {c.metric: c for c in crossed_bounds(report, BOUNDS)}
    assert set(got) == {
        "disparate_impact",
        "demographic_parity_difference",
        "equal_opportunity_difference",
        "equalized_odds_difference",
    }
    assert got["equalized_odds_difference"].decided_by == "equal_opportunity_difference"
    assert got["demographic_parity_difference"].estimate.high < -0.1
    # the interval of the −0.15 difference reaches up to −0.120: a 0.125 bound is not crossed
    assert crossed_bounds(report, [FairnessBound("demographic_parity_difference", 0.125)]) == []
    # a higher FPR than the reference crosses an equalized-odds bound too
    fpr = fairness_report(
        {"ref": counts["ref"], "g": GroupCounts(tp=800, fp=400, tn=600, fn=200)}, "ref"
    )
    (c,) = crossed_bounds(fpr, [FairnessBound("equalized_odds_difference", 0.1)])
    assert c.decided_by == "false_positive_rate_difference" and c.estimate.low > 0.1


def test_small_groups_are_reported_but_never_cross() -> None:
    counts = {
        "ref": GroupCounts(tp=400, fp=100, tn=400, fn=100),  # selection rate 0.5
        "tiny": GroupCounts(tp=0, fp=0, tn=15, fn=10),  # selection rate 0, 25 ids
    }
    report = fairness_report(counts, min_group_size=30)
    tiny = report.groups["tiny"]
    assert tiny.small and tiny.selection_rate.value == 0.0
    assert tiny.versus_reference is not None
    assert tiny.versus_reference.disparate_impact.high < 0.8  # significant, yet small
    assert crossed_bounds(report, BOUNDS) == []
    assert crossed_bounds(fairness_report(counts, min_group_size=20), BOUNDS)
    # a small reference silences every group
    assert crossed_bounds(fairness_report(counts, "tiny", min_group_size=30), BOUNDS) == []


def test_reference_choice_and_missing_data() -> None:
    counts = {"b": GroupCounts(5, 5, 5, 5), "a": GroupCounts(5, 5, 5, 5)}
    assert fairness_report(counts).reference == "a"  # equal sizes: first by name
    absent = fairness_report(counts, reference="c")
    assert absent.reference == "c"
    assert all(g.versus_reference is None for g in absent.groups.values())
    assert crossed_bounds(absent, BOUNDS) == []
    empty = fairness_report({})
    assert empty.reference is None and math.isnan(empty.demographic_parity_difference)
    # a group without positives has no TPR; equalized odds falls back to the FPR part
    no_positives = fairness_report({"a": GroupCounts(5, 5, 5, 5), "b": GroupCounts(0, 2, 8, 0)})
    d = no_positives.groups["b"].versus_reference
    assert d is not None and math.isnan(d.equal_opportunity_difference.value)
    assert d.equalized_odds_difference == pytest.approx(0.3)  # |0.2 − 0.5|
    with pytest.raises(ValueError):
        FairnessBound("disparate_impact", 1.25)
    with pytest.raises(ValueError):
        FairnessBound("accuracy", 0.1)  # type: ignore[arg-type]
