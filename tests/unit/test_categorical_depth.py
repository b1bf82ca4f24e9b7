"""Categorical depth: entropy against scipy.stats.entropy, its change against the
reference's, and the cardinality finding of an identifier leaking into a category."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from streamdrift import categorical_depth as depth
from streamdrift.config import QualityPolicy
from streamdrift.monitors import quality_findings
from streamdrift.profile import CategoricalProfile
from streamdrift.sketch import CategoricalSketch, WindowSketch


def test_entropy_matches_scipy():
    rng = np.random.default_rng(1)
    for size in (1, 2, 7, 60):
        counts = rng.integers(0, 1000, size)
        counts[0] += 1
        assert depth.entropy(counts) == pytest.approx(stats.entropy(counts, base=2), abs=1e-12)
    assert depth.entropy([5, 5, 5, 5]) == pytest.approx(2.0)
    assert depth.entropy([9]) == 0.0
    assert np.isnan(depth.entropy([0, 0])) and np.isnan(depth.entropy([]))


def test_reference_and_window_entropy_spread_the_rest_over_its_distinct_values():
    """Beyond the kept categories, the counts say how many values there are and how many
    distinct ones: spread evenly, the entropy is that of the whole distribution (scipy
    on it); with the distinct count unknown, the rest counts as one value."""
    ref = CategoricalProfile(
        categories={"DE": 50, "FR": 30, "US": 15}, other=6, count=101, missing=3, cardinality=6
    )
    assert depth.reference_entropy(ref) == pytest.approx(
        stats.entropy([50, 30, 15, 2, 2, 2], base=2), abs=1e-12
    )
    window = CategoricalSketch(counts=Counter({"DE": 10, "XX": 4}), missing=2, other=6)
    assert depth.window_entropy(window, distinct=5) == pytest.approx(
        stats.entropy([10, 4, 2, 2, 2], base=2), abs=1e-12
    )
    assert depth.window_entropy(window) == pytest.approx(
        stats.entropy([10, 4, 6], base=2), abs=1e-12
    )
    whole = CategoricalSketch(counts=Counter({"DE": 10, "XX": 4}))
    assert depth.window_entropy(whole, distinct=2) == pytest.approx(
        stats.entropy([10, 4], base=2), abs=1e-12
    )


def test_an_identifier_beyond_the_cap_raises_the_entropy():
    """50 categories kept (the cap), 30 % of the values unique ids beyond it: with the
    distinct count, the entropy is that of the true distribution (scipy on every value),
    far above the capped counts' own."""
    kept = Counter({f"m{i}": 14 for i in range(20)} | {f"id{i}": 1 for i in range(30)})
    sketch = CategoricalSketch(counts=kept, other=720)
    true = stats.entropy([14] * 20 + [1] * 750, base=2)
    assert depth.window_entropy(sketch, distinct=770) == pytest.approx(true, abs=1e-9)
    assert depth.window_entropy(sketch) < true - 2


def _profile(profile, **quality):
    """The shared fraud profile with its `country` feature's reference and a quality
    policy of our own."""
    config = profile.config.model_copy(update={"quality": QualityPolicy(**quality)})
    return profile.model_copy(update={"config": config})


def _window(profile, country: Counter[str], distinct: int) -> WindowSketch:
    n = country.total()
    w = WindowSketch(start=0, count=n)
    w.categorical["country"] = CategoricalSketch(counts=country)
    w.categorical["device"] = CategoricalSketch(counts=Counter({"mobile": n}))
    w.distinct = {"country": distinct, "device": 1}
    return w


def test_entropy_change_and_distinct_count_per_feature(profile):
    p = _profile(profile)
    ref = p.features["country"]
    w = _window(p, Counter({"DE": 500, "FR": 500}), 2)
    found = depth.categorical_depth(p, w)
    assert set(found) == {"country", "device"}
    country = found["country"]
    want_ref = stats.entropy([*ref.categories.values(), ref.other], base=2)
    assert country.entropy == pytest.approx(1.0)
    assert country.reference_entropy == pytest.approx(want_ref, abs=1e-12)
    assert country.entropy_change == pytest.approx(1.0 - want_ref, abs=1e-12)
    assert (country.distinct, country.reference_cardinality) == (2, 6)
    assert found["device"].entropy == 0.0


def test_an_identifier_in_a_category_is_a_cardinality_finding(profile):
    """`country` has 6 values in the reference; a window of 1,000 events, 400 of them
    carrying a transaction id instead, has ~406 distinct values: a data-quality finding
    `cardinality` naming the feature, with a leaked value as its example."""
    p = _profile(profile)
    leaked = Counter({"DE": 300, "FR": 300, **{f"txn-{i}": 1 for i in range(400)}})
    findings = quality_findings(p, _window(p, leaked, 406))
    (finding,) = [f for f in findings if f.kind == "cardinality"]
    assert finding.feature == "country"
    assert finding.events == 406
    assert finding.share == pytest.approx(406 / 6)
    assert finding.threshold == 5.0
    assert finding.example.startswith("txn-")


def test_no_cardinality_finding_without_an_explosion(profile):
    p = _profile(profile)
    usual = Counter({"DE": 600, "FR": 400})
    assert depth.cardinality_excess(p, _window(p, usual, 6)) == []
    # five times the reference's 6 values, but fewer than 50 more: unseen categories' news
    assert depth.cardinality_excess(p, _window(p, usual, 40)) == []
    assert depth.cardinality_excess(p, _window(p, usual, 56)) != []
    # a stricter policy, and the check turned off
    strict = _profile(profile, cardinality_factor=2.0, cardinality_min_excess=5)
    assert [c.feature for c in depth.cardinality_excess(strict, _window(p, usual, 12))] == [
        "country"
    ]
    off = _profile(profile, cardinality_factor=None)
    assert depth.cardinality_excess(off, _window(p, usual, 5000)) == []
    # no distinct count read (none kept): no finding
    w = _window(p, usual, 5000)
    w.distinct = {}
    assert depth.cardinality_excess(p, w) == []
