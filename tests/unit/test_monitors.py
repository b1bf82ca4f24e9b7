"""The default drift policy on simulated streams: silent on stationary data, loud on real
shifts. Windows go through the real sketching code; the data's truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift import synthetic
from streamdrift.alerts import alert_id, drift_alerts
from streamdrift.config import DriftPolicy
from streamdrift.decode import ModelEvents
from streamdrift.monitors import quality_findings, window_drift
from streamdrift.sketch import sketch_events

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
        worst = max(worst, *(d.value for d in drift.values()))
    assert alarms == []
    assert worst < profile.config.drift.threshold / 2  # far from the line, not just under it


@pytest.mark.parametrize("n", [300, 2000])
def test_one_sd_mean_shift_is_flagged(profile, n):
    rng = np.random.default_rng(5)
    _, drift = _drift(profile, _window(rng, n, 0, shift={"f07": 1.0}))
    flagged = {d.feature for d in drift.values() if d.drifted}
    assert flagged == {"f07"}
    assert drift["f07"].statistics["ks_p_value"] < 1e-6


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
    assert drift["f07"].p_value < 1e-3
    assert not drift["f07"].drifted


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
