"""The sequential detectors (`streamdrift.sequential`) against independent references: the
scan's likelihood ratios against scipy's binomial log-pmfs and Welch's t, the
CUSUM against Page's recursion written out here, and the behaviour the policy promises
(a creeping mean caught by +0.25 sd, a lasting 0.1 sd shift never)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, ttest_ind

from streamdrift.config import CumulativePolicy
from streamdrift.performance import PerformanceSketch
from streamdrift.sequential import (
    CusumResult,
    ScanResult,
    SubWindow,
    degradation_scan,
    mean_cusum,
    share_cusum,
    sub_windows,
    z_for,
)


def _series(errors: list[np.ndarray]) -> list[SubWindow]:
    return [
        SubWindow(float(i), {"accuracy": (float(e.size), float(e.sum()), float(e.sum()))})
        for i, e in enumerate(errors)
    ]


def _scan(metric: str, series: list[SubWindow], relative: bool) -> ScanResult | None:
    """The scan with the default policy's figures (one metric)."""
    return degradation_scan(
        metric,
        series,
        threshold=10,
        minimum=0.05,
        relative=relative,
        min_after=30,
        min_before=200,
    )


def _cusum(rows: list[tuple]) -> CusumResult | None:
    """The mean CUSUM with the default policy, for a model of 20 columns."""
    policy = CumulativePolicy()
    return mean_cusum(
        rows,
        0.0,
        1.0,
        allowance=policy.mean_allowance,
        threshold=policy.mean_threshold,
        z_needed=z_for(0.01 / 20),
        min_count=200,
    )


def _share(rows: list[tuple]) -> CusumResult | None:
    """The missing-share CUSUM with the default policy, reference share 2 %."""
    policy = CumulativePolicy()
    return share_cusum(
        rows,
        0.02,
        allowance=policy.missing_allowance,
        threshold=policy.missing_threshold,
        z_needed=z_for(0.01 / 20),
        min_count=200,
    )


def test_the_bernoulli_ratio_is_scipys_binomial_likelihood_ratio() -> None:
    rng = np.random.default_rng(3)
    before = [(rng.random(200) < 0.1).astype(float) for _ in range(8)]
    after = [(rng.random(200) < 0.3).astype(float) for _ in range(2)]
    r = _scan("accuracy", _series(before + after), relative=False)
    assert r is not None and r.alarm
    assert r.since == 8.0  # the cut where the change is
    k1, n1 = sum(e.sum() for e in after), 400
    k0, n0 = sum(e.sum() for e in before), 1600
    separate = binom.logpmf(k1, n1, k1 / n1) + binom.logpmf(k0, n0, k0 / n0)
    pooled = binom.logpmf(k1, n1, (k0 + k1) / (n0 + n1)) + binom.logpmf(
        k0, n0, (k0 + k1) / (n0 + n1)
    )
    assert r.statistic == pytest.approx(separate - pooled, rel=1e-9)
    assert r.after == pytest.approx(1 - k1 / n1) and r.before == pytest.approx(1 - k0 / n0)
    assert r.drop == pytest.approx(k1 / n1 - k0 / n0)
    assert (r.after_n, r.before_n) == (n1, n0)


def test_the_loss_ratio_is_half_welchs_t_squared() -> None:
    rng = np.random.default_rng(4)
    losses = [rng.exponential(0.4, 150) for _ in range(6)] + [rng.exponential(0.6, 150)]
    series = [
        SubWindow(float(i), {"log_loss": (float(x.size), float(x.sum()), float((x * x).sum()))})
        for i, x in enumerate(losses)
    ]
    r = _scan("log_loss", series, relative=True)
    assert r is not None
    cut = int(r.since)
    t = ttest_ind(
        np.concatenate(losses[cut:]), np.concatenate(losses[:cut]), equal_var=False
    ).statistic
    assert r.statistic == pytest.approx(t * t / 2, rel=1e-9)
    before = np.concatenate(losses[:cut]).mean()
    assert r.drop == pytest.approx(np.concatenate(losses[cut:]).mean() / before - 1, rel=1e-9)


def test_a_real_but_small_drop_does_not_alarm_and_better_never_does() -> None:
    rng = np.random.default_rng(5)
    # 0.10 -> 0.13: detectable with 20,000 pairs, below the 0.05 minimum
    errs = [(rng.random(2000) < 0.10).astype(float) for _ in range(10)]
    errs += [(rng.random(2000) < 0.13).astype(float) for _ in range(10)]
    r = _scan("accuracy", _series(errs), relative=False)
    assert r is not None and r.statistic > 10 and not r.alarm
    better = [(rng.random(500) < 0.3).astype(float) for _ in range(5)]
    better += [(rng.random(500) < 0.05).astype(float) for _ in range(5)]
    r = _scan("accuracy", _series(better), relative=False)
    assert r is not None and r.statistic == 0 and not r.alarm


def test_too_few_labels_on_either_side_is_no_verdict() -> None:
    errs = [np.zeros(20), np.ones(20)]
    assert _scan("accuracy", _series(errs), relative=False) is None


def test_sub_windows_read_the_joins_sums_back() -> None:
    """from_pairs' sums per part (what the join writes) become the scan's series."""
    times = np.array([0, 359, 360, 3599, 1800])
    s = PerformanceSketch.from_pairs(
        "binary",
        [1, 0, 1, 0, 1],
        ["1", "1", "0", "0", "1"],
        np.array([0.9, 0.8, 0.2, 0.1, 0.6]),
        "1",
        parts=(times, 0, 3600, 10),
    )
    parts = sub_windows(0, 3600, 10, s.sub_windows)
    assert [p.start for p in parts] == [360.0 * j for j in range(10)]
    assert parts[0].sums["accuracy"] == (2.0, 1.0, 1.0)  # 0 and 359 s; the second wrong
    assert parts[1].sums["accuracy"] == (1.0, 1.0, 1.0)
    assert parts[9].sums["accuracy"] == (1.0, 0.0, 0.0)
    n, total, sq = parts[5].sums["log_loss"]
    assert (n, total, sq) == pytest.approx((1, -math.log(0.6), math.log(0.6) ** 2))
    assert "accuracy" not in parts[2].sums


def _page(means: list[float], k: float) -> list[float]:
    """Page's upper CUSUM, written out."""
    s, out = 0.0, []
    for x in means:
        s = max(0.0, s + x - k)
        out.append(s)
    return out


def _windows(rng: np.random.Generator, shifts: list[float], n: int = 2000) -> list[tuple]:
    rows = []
    for i, d in enumerate(shifts):
        x = rng.standard_normal(n) + d
        rows.append((i * 3600, n, float(x.sum()), float((x * x).sum())))
    return rows


def test_the_cusum_is_pages_recursion_and_catches_a_creeping_mean_by_a_quarter_sd() -> None:
    policy = CumulativePolicy()
    rng = np.random.default_rng(6)
    # a mean creeping 0.05 sd a window, within each window too
    rows = []
    for i in range(12):
        x = rng.standard_normal(2000) + 0.05 * i + np.linspace(0, 0.05, 2000)
        rows.append((i * 3600, 2000, float(x.sum()), float((x * x).sum())))
    want = _page([r[2] / r[1] for r in rows], policy.mean_allowance)
    caught = None
    for end in range(1, len(rows) + 1):
        r = _cusum(rows[:end])
        assert r is not None
        if r.direction == "up":
            assert r.value == pytest.approx(want[end - 1], abs=1e-12)
        if r.alarm and caught is None:
            caught = end
    assert caught is not None and 0.05 * caught <= 0.25 + 1e-9  # by +0.25 sd


@pytest.mark.parametrize(("shift", "caught_by"), [(0.1, None), (0.2, 3), (-0.5, 1)])
def test_lasting_shifts(shift: float, caught_by: int | None) -> None:
    rng = np.random.default_rng(7)
    rows = _windows(rng, [shift] * 20)
    first = None
    for end in range(1, 21):
        r = _cusum(rows[:end])
        if r is not None and r.alarm:
            first = end
            assert r.direction == ("up" if shift > 0 else "down")
            break
    if caught_by is None:
        assert first is None
    else:
        assert first is not None and first <= caught_by


def test_small_windows_need_more_than_noise() -> None:
    """Windows of 200 values: the sum can cross on noise, the run's z cannot."""
    rng = np.random.default_rng(8)
    alarms = 0
    for _ in range(300):
        rows = _windows(rng, [0.0] * 24, n=200)
        r = _cusum(rows)
        alarms += bool(r and r.alarm)
    assert alarms == 0


def test_a_rising_missing_share_is_caught() -> None:
    rng = np.random.default_rng(9)
    rows = [(i, 2000, int(rng.binomial(2000, 0.02 + 0.01 * i))) for i in range(10)]
    first = None
    for end in range(1, 11):
        r = _share(rows[:end])
        if r is not None and r.alarm:
            first = end
            break
    assert first is not None and first <= 5  # the share then 6 %, +4 points
    steady = [(i, 2000, int(rng.binomial(2000, 0.025))) for i in range(40)]
    r = _share(steady)
    assert r is not None and not r.alarm
