"""The default drift policy on simulated streams: silent on stationary data, loud on real
shifts. Windows go through the real sketching code; the data's truth is known."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.stats import chi2_contingency, kstwo, ncx2

from streamdrift import synthetic
from streamdrift.alerts import alert_id, drift_alerts
from streamdrift.config import DriftPolicy, MonitorConfig
from streamdrift.decode import ModelEvents
from streamdrift.monitors import quality_findings, window_drift
from streamdrift.profile import CategoricalProfile, ReferenceProfile, bin_index
from streamdrift.reference import numeric_profile
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch, sketch_events

WINDOW = 3600


def _window(
    rng,
    n: int,
    start: int,
    shift: dict[str, float] | None = None,
    spread: dict[str, float] | None = None,
    country_p=None,
) -> ModelEvents:
    x, country, device, score, _ = synthetic._rows(rng, n)
    for name, sds in (shift or {}).items():
        j = synthetic.NUMERIC.index(name)
        x[:, j] += sds * synthetic.SDS[j]
    for name, factor in (spread or {}).items():
        j = synthetic.NUMERIC.index(name)
        x[:, j] = synthetic.MEANS[j] + (x[:, j] - synthetic.MEANS[j]) * factor
    if country_p is not None:
        country = rng.choice(len(synthetic.COUNTRIES), size=n, p=country_p)
    events = ModelEvents()
    for i in range(n):
        feats = dict(zip(synthetic.NUMERIC, x[i].tolist(), strict=True))
        feats["country"] = synthetic.COUNTRIES[country[i]]
        feats["device"] = synthetic.DEVICES[device[i]]
        events.partitions.append(0)
        events.offsets.append(i)
        events.timestamps.append(start + i * WINDOW / n)
        events.features.append(feats)
        events.versions.append("1")
        events.predictions.append(float(score[i]))
        events.prediction_ids.append(str(i))
        events.raws.append(b"")
    return events


def _drift(profile, events):
    (window,) = sketch_events(events, profile).values()
    return window, window_drift(profile, window)


def test_no_false_alarm_on_a_stationary_stream(profile):
    """120 windows x 22 features of reference-like data with a few thousand events each:
    2,640 tests, and the default policy must stay silent on every one."""
    rng = np.random.default_rng(2026)
    alarms, worst = [], 0.0
    for k in range(120):
        n = int(rng.integers(1500, 5000))
        window, drift = _drift(profile, _window(rng, n, k * WINDOW))
        assert quality_findings(profile, window) == []  # nor a data-quality false alarm
        assert len(drift) == 22
        alarms += [(k, d.feature, d.value) for d in drift.values() if d.drifted]
        worst = max(worst, *(d.value / d.threshold for d in drift.values()))
    assert alarms == []
    assert worst < 0.5  # far from the line, not just under it


@pytest.mark.parametrize("n", [300, 2000])
def test_one_sd_mean_shift_is_flagged(profile, n):
    rng = np.random.default_rng(5)
    _, drift = _drift(profile, _window(rng, n, 0, shift={"f07": 1.0}))
    flagged = {d.feature for d in drift.values() if d.drifted}
    assert flagged == {"f07"}
    assert drift["f07"].statistics["ks_p_value"] < 1e-6


def test_evaluation_works_out_the_ks_p_value_only_for_what_drifts(profile):
    """The KS p-value is reported, never judged, and its exact distribution costs O(n):
    the evaluation (`ks_p=False`) leaves it out for undrifted features; everything
    else, the verdicts and the drifted feature's KS p-value are as in the full report."""
    rng = np.random.default_rng(5)
    window, full = _drift(profile, _window(rng, 2000, 0, shift={"f07": 1.0}))
    lean = window_drift(profile, window, ks_p=False)
    assert {d.feature for d in lean.values() if d.drifted} == {"f07"}
    assert "ks_p_value" in lean["f07"].statistics
    numeric = {n for n, d in full.items() if "ks" in d.statistics}
    assert len(numeric) == 20
    assert all("ks_p_value" not in lean[n].statistics for n in numeric - {"f07"})
    for name, d in full.items():
        kept = {k: v for k, v in d.statistics.items() if k != "ks_p_value" or d.drifted}
        assert lean[name].statistics == kept
        assert (lean[name].value, lean[name].p_value, lean[name].drifted) == (
            d.value,
            d.p_value,
            d.drifted,
        )
    # against scipy: Kolmogorov's distribution at the binned counts' effective size
    for name, d in full.items():
        if name not in numeric:
            continue
        ref, sk = profile.features[name], window.numeric[name]
        nr, nc = float(np.sum(ref.counts)), float(np.sum(sk.bins))
        expected = kstwo.sf(d.statistics["ks"], round(nr * nc / (nr + nc)))
        assert d.statistics["ks_p_value"] == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert full["f01"].statistics["ks_p_value"] > 1e-3  # a real value, not 0 == 0


def test_changed_category_frequencies_and_spread_are_flagged(profile):
    rng = np.random.default_rng(6)
    events = _window(rng, 3000, 0, spread={"f03": 2.0}, country_p=synthetic.COUNTRY_P[::-1])
    window, drift = _drift(profile, events)
    assert {d.feature for d in drift.values() if d.drifted} == {"f03", "country"}
    alerts = drift_alerts(profile, window, drift, now=1.0)
    assert [a.feature for a in alerts] == sorted(["f03", "country"], key=lambda f: -drift[f].value)
    a = alerts[0]
    assert a.alert_id == alert_id("fraud", profile.revision, "data_drift", a.feature, 0)
    assert a.sample_size == 3000 and a.reference_size == 20_000
    assert a.model_version == "1"
    assert a.context["drifting_share"] == pytest.approx(2 / 22, abs=1e-4)


def test_small_windows_and_small_effects_do_not_alert(profile):
    rng = np.random.default_rng(8)
    # A real shift, but below min_samples: not enough evidence yet.
    _, drift = _drift(profile, _window(rng, 150, 0, shift={"f07": 1.0}))
    assert not any(d.drifted for d in drift.values())
    # A tiny shift in a huge window: significant, but too small to act on.
    _, drift = _drift(profile, _window(rng, 40_000, 0, shift={"f07": 0.05}))
    f07 = drift["f07"]
    assert f07.statistics["chi_square_p_value"] < 1e-3  # a change, no doubt
    assert f07.value < f07.threshold  # but a small one
    assert f07.p_value > f07.alpha  # not shown to exceed half the threshold either
    assert not f07.drifted


def test_policy_statistic_is_configurable(profile):
    rng = np.random.default_rng(9)
    cfg = profile.config.model_copy(
        update={"drift": DriftPolicy(statistic="wasserstein", threshold=0.5)}
    )
    custom = profile.model_copy(update={"config": cfg})
    _, drift = _drift(custom, _window(rng, 2000, 0, shift={"f07": 1.0}))
    assert drift["f07"].statistic == "wasserstein" and drift["f07"].drifted
    assert drift["country"].statistic == "psi"  # no Wasserstein for categories


def test_quality_findings_name_what_broke(profile):
    rng = np.random.default_rng(12)
    events = _window(rng, 1000, 0)
    for i, f in enumerate(events.features):
        if i % 3 == 0:
            f["f05"] = None  # a third missing
        if i % 10 == 0:
            f["f06"] = 1e6  # far outside anything the reference saw
        if i % 8 == 0:
            f["device"] = "smart-tv"  # a category the reference never had
    window, _ = _drift(profile, events)
    found = {(q.kind, q.feature) for q in quality_findings(profile, window)}
    assert found == {
        ("missing_values", "f05"),
        ("out_of_range", "f06"),
        ("unseen_categories", "device"),
    }


def test_repeated_ids_are_a_quality_finding(profile):
    rng = np.random.default_rng(12)
    window, _ = _drift(profile, _window(rng, 1000, 0))
    assert quality_findings(profile, window) == []
    window.duplicates, window.duplicate_example = 9, "p-17"  # 0.9 %: below 1 %
    assert quality_findings(profile, window) == []
    window.duplicates = 10
    (f,) = quality_findings(profile, window)
    assert (f.kind, f.feature, f.events, f.example) == (
        "duplicate_ids",
        "prediction_id",
        10,
        "p-17",
    )
    assert f.share == pytest.approx(0.01)


# ---- the default verdict: Cohen's w, per kind, against independent references --------------

ISSUE_P0 = np.array([0.30, 0.25, 0.20, 0.15, 0.10])


def _one_column_profile(name, column, config=None):
    return ReferenceProfile(
        model_id="m",
        created_at=datetime.now(UTC),
        source="test",
        rows=column.count,
        task="regression",
        features={name: column},
        config=config or MonitorConfig(),
    )


def _categorical_profile(counts: np.ndarray, config: MonitorConfig | None = None):
    column = CategoricalProfile(
        categories={f"c{i}": int(c) for i, c in enumerate(counts)},
        other=0,
        count=int(counts.sum()),
        missing=0,
        cardinality=len(counts),
    )
    return _one_column_profile("level", column, config)


def _categorical_window(counts: np.ndarray):
    sk = CategoricalSketch(Counter({f"c{i}": int(c) for i, c in enumerate(counts) if c}))
    return WindowSketch(start=0, count=int(counts.sum()), categorical={"level": sk})


def test_the_issue_category_shift_is_flagged_at_10000_events():
    """.30/.25/.20/.15/.10 -> .20 each, 10,000 events against 20,000 reference rows: PSI
    0.126-0.151 never reached the old 0.2; Cohen's w (about 0.36) is above 0.3, and the
    chi-square test agrees with scipy's."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ref = rng.multinomial(20_000, ISSUE_P0)
        cur = rng.multinomial(10_000, np.full(5, 0.2))
        d = window_drift(_categorical_profile(ref), _categorical_window(cur))["level"]
        x2, p, _, _ = chi2_contingency(np.vstack([ref, cur]), correction=False)
        assert d.statistics["chi_square"] == pytest.approx(x2, rel=1e-9)
        assert d.statistics["chi_square_p_value"] == pytest.approx(p, rel=1e-6, abs=1e-300)
        assert (d.statistic, d.threshold) == ("cohen_w", 0.3)
        assert 0.32 < d.value < 0.41  # the population value is 0.363
        assert d.statistics["psi"] < 0.2  # what the old default judged: silent
        # the p-value that judges is the minimum-effect test's, of w <= 0.15
        n_eff = 20_000 * 10_000 / 30_000
        assert d.p_value == d.statistics["min_effect_p_value"]
        assert d.p_value == pytest.approx(ncx2.sf(x2, 4, n_eff * 0.15**2), rel=1e-9, abs=1e-300)
        assert d.drifted


def test_stationary_categorical_windows_stay_silent_over_many_seeds():
    """Windows drawn from the reference's own distribution, 3, 5 and 20 levels, 200 to
    10,000 events: none is flagged."""
    flagged = 0
    for k, p0 in ((3, np.array([0.5, 0.3, 0.2])), (5, ISSUE_P0), (20, np.full(20, 0.05))):
        for seed in range(60):
            rng = np.random.default_rng(1000 * k + seed)
            profile = _categorical_profile(rng.multinomial(20_000, p0))
            for n in (200, 2_000, 10_000):
                d = window_drift(profile, _categorical_window(rng.multinomial(n, p0)))["level"]
                flagged += d.drifted
                if n >= 2_000:  # 200 values in 20 levels can read 0.3 by chance: the p gate
                    assert d.value < 0.2  # is what keeps those silent
    assert flagged == 0


def test_stationary_numeric_windows_stay_silent_and_a_doubled_variance_is_flagged():
    """Numeric columns binned on the reference's deciles as the worker bins them: no
    stationary window of 500-10,000 events is flagged; a variance x2 (PSI about 0.16,
    under the old line at any size) and a 0.5-sd mean shift are."""

    def window(ref, x):
        edges = ref.edge_array()
        sk = NumericSketch(
            bins=np.bincount(bin_index(edges, x), minlength=edges.size + 1),
            n=x.size,
            total=float(x.sum()),
            total_sq=float((x * x).sum()),
            minimum=float(x.min()),
            maximum=float(x.max()),
        )
        return WindowSketch(start=0, count=x.size, numeric={"x": sk})

    for seed in range(40):
        rng = np.random.default_rng(seed)
        ref = numeric_profile(rng.normal(size=20_000), 0, 10)
        profile = _one_column_profile("x", ref)
        for n in (500, 2_000, 10_000):
            d = window_drift(profile, window(ref, rng.normal(size=n)))["x"]
            assert not d.drifted and d.value < 0.2
        wide = window_drift(profile, window(ref, rng.normal(0, 2**0.5, 10_000)))["x"]
        assert wide.drifted and wide.statistics["psi"] < 0.2
        assert window_drift(profile, window(ref, rng.normal(0, 2**0.5, 2_000)))["x"].drifted
        assert window_drift(profile, window(ref, rng.normal(0.5, 1, 10_000)))["x"].drifted


def test_explicit_psi_settings_judge_as_before():
    """A policy that names PSI, or only a threshold (a PSI threshold before Cohen's w was
    the default), still judges by PSI: the issue's shift stays under 0.2."""
    rng = np.random.default_rng(3)
    ref = rng.multinomial(20_000, ISSUE_P0)
    cur = _categorical_window(rng.multinomial(10_000, np.full(5, 0.2)))
    for drift in ({"statistic": "psi", "threshold": 0.2}, {"threshold": 0.2}, {"statistic": "psi"}):
        profile = _categorical_profile(ref, MonitorConfig.model_validate({"drift": drift}))
        d = window_drift(profile, cur)["level"]
        assert (d.statistic, d.threshold) == ("psi", 0.2)
        assert d.value == d.statistics["psi"] < 0.2 and not d.drifted
        # and the chi-square test, as before, not the minimum-effect test of Cohen's w
        assert d.p_value == d.statistics["chi_square_p_value"]
        assert "min_effect_p_value" not in d.statistics
    # a per-feature threshold over the default policy is a PSI threshold too
    profile = _categorical_profile(
        ref, MonitorConfig.model_validate({"features": {"level": {"threshold": 0.1}}})
    )
    d = window_drift(profile, cur)["level"]
    assert (d.statistic, d.threshold) == ("psi", 0.1) and d.drifted


# A stationary numeric column (N(0, 1) throughout) on a reference's deciles: a rolling
# baseline of 800 events and a window of 400, the bins the worker filled. By chance the
# window reads w 0.33 and the chi-square test gives p 5e-5, below 0.01/7: the effect gate
# alone and the chi-square test together would flag it.
_SMALL_BASELINE = np.array([0, 86, 72, 82, 87, 73, 101, 93, 57, 69, 80, 0])
_SMALL_WINDOW = np.array([0, 57, 48, 38, 33, 38, 17, 38, 48, 41, 42, 0])


def _sketch(bins: np.ndarray) -> NumericSketch:
    return NumericSketch(
        bins=bins,
        n=int(bins.sum()),
        total=0.0,
        total_sq=float(bins.sum()),
        minimum=-3.0,
        maximum=3.0,
    )


def test_a_chance_wobble_against_a_small_baseline_is_not_flagged():
    """Against a small baseline a chance wobble can pass both w >= 0.3 and the chi-square
    test; it must also rule out a shift of half the threshold, and that it cannot."""
    ref = numeric_profile(np.random.default_rng(0).normal(size=20_000), 0, 10)
    config = MonitorConfig.model_validate(
        {"drift": {"baselines": ["rolling"], "p_value": 0.01 / 7}}
    )
    profile = _one_column_profile("x", ref, config)
    window = WindowSketch(start=0, count=400, numeric={"x": _sketch(_SMALL_WINDOW)})
    pooled = WindowSketch(start=0, count=800, numeric={"x": _sketch(_SMALL_BASELINE)})
    d = window_drift(profile, window, {"rolling": pooled})["x"]
    assert d.judged_by == ["rolling"]
    rolling = d.baselines["rolling"]
    keep = (_SMALL_BASELINE + _SMALL_WINDOW) > 0
    table = np.vstack([_SMALL_BASELINE[keep], _SMALL_WINDOW[keep]])
    x2, chi_p, dof, _ = chi2_contingency(table, correction=False)
    assert rolling["value"] > 0.3 and chi_p < d.alpha  # the old verdict: drifted
    expected = ncx2.sf(x2, dof, 800 * 400 / 1_200 * 0.15**2)
    assert rolling["p_value"] == pytest.approx(expected, rel=1e-9)
    assert rolling["p_value"] > d.alpha
    assert not rolling["drifted"] and not d.drifted
    # the same window with twice the events both sides is real evidence: flagged
    bigger = WindowSketch(start=0, count=800, numeric={"x": _sketch(2 * _SMALL_WINDOW)})
    pooled2 = WindowSketch(start=0, count=1_600, numeric={"x": _sketch(2 * _SMALL_BASELINE)})
    assert window_drift(profile, bigger, {"rolling": pooled2})["x"].drifted


def test_drift_statistics_are_worked_out_once_per_input_and_come_out_the_same(profile, monkeypatch):
    """The evaluator reads a window again whenever labels reach it; its feature counts
    unchanged, the statistics are remembered, not worked out again. What comes out is
    what working them out gives, a fresh copy each time; other counts work them out."""
    from streamdrift import monitors

    monitors._SEEN.clear()
    calls = Counter()
    real_numeric, real_categorical = monitors.numeric_drift, monitors.categorical_drift

    def counted(kind, fn):
        def run(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)

        return run

    monkeypatch.setattr(monitors, "numeric_drift", counted("numeric", real_numeric))
    monkeypatch.setattr(monitors, "categorical_drift", counted("categorical", real_categorical))
    rng = np.random.default_rng(5)
    window, first = _drift(profile, _window(rng, 2000, 0, shift={"f00": 1.0}))
    worked = dict(calls)
    assert worked["numeric"] >= 20 and worked["categorical"] >= 2
    again = window_drift(profile, window)
    assert dict(calls) == worked  # all remembered
    assert again == first
    again["f00"].statistics["psi"] = -1.0  # a copy: the next reading is untouched
    assert window_drift(profile, window) == first
    monitors._SEEN.clear()
    assert window_drift(profile, window) == first  # worked out afresh: the same
    assert calls["numeric"] == 2 * worked["numeric"]
    _drift(profile, _window(rng, 2000, 0))
    assert calls["numeric"] == 3 * worked["numeric"]  # other counts: worked out
    assert len(monitors._SEEN) <= monitors.SEEN_SIZE
