"""Sequential detection: a change found inside a window, as labels and events arrive,
and a slow change found across windows.

A per-window test waits for its window and judges it alone: it cannot see a model fail
a tenth of a window after the change, nor a feature mean that creeps a little further
every window. Two detectors close the gap. Both are pure functions over sums Redis
keeps, rebuilt at every evaluation: nothing is carried in a worker, so any worker may
evaluate and a crash loses nothing.

* `degradation_scan`: the labelled pairs of each sub-window (a tenth of a window by
  default, by the prediction's time: `PerformanceSketch.sub_windows`) form a series.
  For every cut of the series, the pairs after it are tested against the pairs before
  it by the one-sided generalized likelihood ratio of "worse after the cut": Bernoulli
  for the error rate; for a mean per-pair loss (log loss, absolute error), half the
  square of Welch's statistic, its large-sample equivalent with each side's own spread. The
  largest ratio over the cuts is an ADWIN-style cut test with a likelihood bound instead
  of ADWIN's Hoeffding bound, which needs about ten times more data for the same error
  rate; a series compared with its own past needs no reference to agree with it. The
  alarm needs the ratio past `threshold` nats and the drop past the policy's minimum, as
  the per-window test needs both (practically large and statistically real).
  `benchmarks/sequential.py` measures the false alarms per sub-window evaluation.

* `mean_cusum`: each window's mean of a numeric column, in the reference's standard
  deviations, accumulated by a two-sided tabular CUSUM (Page 1954) with an allowance of
  half a small effect (Cohen's d = 0.2, so `allowance` 0.1): a shift below the allowance
  never accumulates, a larger one, however slow, eventually crosses `threshold`. The
  alarm needs the run's mean excess over the allowance to be significant too, so small
  windows cannot cross on noise. The same for a column's missing share, in absolute
  share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy
from scipy.stats import norm

#: sub-window statistics the join keeps per metric: pairs counted, sum, sum of squares
#: (an error rate's square is itself)
SUB_FIELDS = {"accuracy": ("en", "e", "e"), "log_loss": ("ln", "l", "l2"), "mae": ("an", "a", "a2")}


@dataclass(frozen=True, slots=True)
class SubWindow:
    """One sub-window of labelled pairs: its start (event time) and, per metric, the pairs
    counted, the sum and the sum of squares of the per-pair loss (1 per error for
    accuracy)."""

    start: float
    sums: dict[str, tuple[float, float, float]]


def sub_windows(start: int, width: int, parts: int, sums: dict[str, float]) -> list[SubWindow]:
    """A window's sub-windows, from its perf hash's `q:<part>:<stat>` sums."""
    out = []
    for j in range(parts):
        per: dict[str, tuple[float, float, float]] = {}
        for metric, (n, s, s2) in SUB_FIELDS.items():
            count = sums.get(f"{j}:{n}", 0.0)
            if count:
                per[metric] = (count, sums.get(f"{j}:{s}", 0.0), sums.get(f"{j}:{s2}", 0.0))
        out.append(SubWindow(start + j * width / parts, per))
    return out


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The strongest cut of one metric's series: where the worse part begins (`since`,
    event time), its pairs and value, the pairs and value before it, the log-likelihood
    ratio (`statistic`, nats) and its z = sqrt(2 * statistic)."""

    metric: str
    statistic: float
    z: float
    since: float
    after_n: int
    after: float
    before_n: int
    before: float
    drop: float
    alarm: bool


def _bernoulli_glr(n1: np.ndarray, k1: np.ndarray, n2: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """log LR of two binomial samples with their own rates against one pooled rate."""
    p1, p2 = k1 / n1, k2 / n2
    p = (k1 + k2) / (n1 + n2)
    ll = (
        xlogy(k1, p1)
        + xlogy(n1 - k1, 1 - p1)
        + xlogy(k2, p2)
        + xlogy(n2 - k2, 1 - p2)
        - xlogy(k1 + k2, p)
        - xlogy(n1 + n2 - k1 - k2, 1 - p)
    )
    return np.maximum(ll, 0.0)


def _welch_glr(
    n1: np.ndarray, s1: np.ndarray, q1: np.ndarray, n2: np.ndarray, s2: np.ndarray, q2: np.ndarray
) -> np.ndarray:
    """Half the square of Welch's two-sample statistic: each side's mean with its own
    variance. A pooled variance would let a long calm past vouch for a short part after
    the cut whose losses are heavy-tailed (a few confident mistakes), and call a handful
    of them a change."""
    m1, m2 = s1 / n1, s2 / n2
    v1 = np.maximum(q1 - n1 * m1 * m1, 0.0) / np.maximum(n1 - 1, 1)
    v2 = np.maximum(q2 - n2 * m2 * m2, 0.0) / np.maximum(n2 - 1, 1)
    se2 = v1 / n1 + v2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(se2 > 0, (m1 - m2) ** 2 / (2 * se2), 0.0)
    return np.asarray(out)


def degradation_scan(
    metric: str,
    series: Sequence[SubWindow],
    *,
    threshold: float,
    minimum: float,
    relative: bool,
    min_after: int,
    min_before: int,
    earliest: float = -math.inf,
) -> ScanResult | None:
    """The strongest "worse after the cut" of `metric` over `series` (oldest first; the
    cut's after-part always runs to the end, and begins no earlier than `earliest`).
    None while no cut has `min_before` pairs before and `min_after` after. The drop is
    the after-part's loss less the before-part's (relative to it for `relative`
    metrics); the alarm needs the statistic at least `threshold` and the drop at least
    `minimum`."""
    rows = [(sw.start, *sw.sums[metric]) for sw in series if metric in sw.sums]
    if len(rows) < 2:
        return None
    starts = np.array([r[0] for r in rows])
    n, s, q = (np.array([r[i] for r in rows], dtype=np.float64) for i in (1, 2, 3))
    # cut c: before = rows[:c], after = rows[c:]
    before_n, before_s, before_q = (np.cumsum(a)[:-1] for a in (n, s, q))
    after_n, after_s, after_q = (np.cumsum(a[::-1])[::-1][1:] for a in (n, s, q))
    ok = (before_n >= min_before) & (after_n >= min_after) & (starts[1:] >= earliest)
    if not ok.any():
        return None
    before_v, after_v = before_s / before_n, after_s / after_n
    worse = after_v > before_v
    if metric == "accuracy":
        stat = _bernoulli_glr(after_n, after_s, before_n, before_s)
    else:
        stat = _welch_glr(after_n, after_s, after_q, before_n, before_s, before_q)
    stat = np.where(ok & worse, stat, 0.0)
    c = int(np.argmax(stat))
    if not ok[c]:
        c = int(np.flatnonzero(ok)[-1])
    gap = float(after_v[c] - before_v[c])
    base = float(before_v[c])
    drop = gap / base if relative and base else gap
    g = float(stat[c])
    # accuracy reads as a rate of right answers, the losses as themselves
    flip = metric == "accuracy"
    return ScanResult(
        metric=metric,
        statistic=g,
        z=math.sqrt(2 * g),
        since=float(starts[c + 1]),
        after_n=int(after_n[c]),
        after=float(1 - after_v[c] if flip else after_v[c]),
        before_n=int(before_n[c]),
        before=float(1 - before_v[c] if flip else before_v[c]),
        drop=drop,
        alarm=g >= threshold and drop >= minimum,
    )


@dataclass(frozen=True, slots=True)
class CusumResult:
    """A column's CUSUM after its latest window: `value` the larger of the upward and
    downward sums (in the reference's standard deviations, or in share for missing
    values), `direction` "up" or "down", the run behind it (windows since the sum last
    stood at 0, its first window `since`), the run's mean shift and that shift's z
    against the allowance."""

    value: float
    direction: str
    since: int
    windows: int
    shift: float
    z: float
    alarm: bool


def mean_cusum(
    windows: Sequence[tuple[int, int, float, float]],
    mean: float,
    std: float,
    *,
    allowance: float,
    threshold: float,
    z_needed: float,
    min_count: int,
) -> CusumResult | None:
    """Two-sided CUSUM of standardized window means. `windows`: (start, values, sum,
    sum of squares) oldest first; windows with fewer than `min_count` values are passed
    over. None when the reference has no spread or no window counts."""
    if not std > 0 or not math.isfinite(std):
        return None
    ups = _cusum_runs(windows, mean, std, allowance, min_count, +1)
    downs = _cusum_runs(windows, mean, std, allowance, min_count, -1)
    if ups is None or downs is None:
        return None
    best = max(ups, downs, key=lambda r: r.value)
    z = best.z
    return CusumResult(
        value=best.value,
        direction=best.direction,
        since=best.since,
        windows=best.windows,
        shift=best.shift,
        z=z,
        alarm=best.value >= threshold and z >= z_needed,
    )


def _cusum_runs(
    windows: Sequence[tuple[int, int, float, float]],
    mean: float,
    std: float,
    allowance: float,
    min_count: int,
    sign: int,
) -> CusumResult | None:
    total = 0.0
    run: list[tuple[int, int, float, float]] = []
    seen = False
    for w in windows:
        _, n, s, q = w
        if n < min_count:
            continue
        seen = True
        d = sign * (s / n - mean) / std
        total = max(0.0, total + d - allowance)
        run = [*run, w] if total > 0 else []
    if not seen:
        return None
    if not run:
        return CusumResult(0.0, "up" if sign > 0 else "down", 0, 0, 0.0, 0.0, False)
    n = sum(w[1] for w in run)
    s = sum(w[2] for w in run)
    q = sum(w[3] for w in run)
    m = s / n
    sd = math.sqrt(max(q / n - m * m, 0.0) * n / max(n - 1, 1))
    shift = sign * (m - mean) / std
    se = (sd / std) / math.sqrt(n) if sd > 0 else 0.0
    z = (shift - allowance) / se if se > 0 else (math.inf if shift > allowance else 0.0)
    return CusumResult(
        value=total,
        direction="up" if sign > 0 else "down",
        since=run[0][0],
        windows=len(run),
        shift=shift,
        z=z,
        alarm=False,
    )


def share_cusum(
    windows: Sequence[tuple[int, int, int]],
    share: float,
    *,
    allowance: float,
    threshold: float,
    z_needed: float,
    min_count: int,
) -> CusumResult | None:
    """Upward CUSUM of a share (missing values): `windows` as (start, events, missing)
    oldest first, `share` the reference's; the run's excess over the allowance tested as
    a binomial share by its normal approximation."""
    total = 0.0
    run: list[tuple[int, int, int]] = []
    seen = False
    for w in windows:
        _, n, k = w
        if n < min_count:
            continue
        seen = True
        total = max(0.0, total + k / n - share - allowance)
        run = [*run, w] if total > 0 else []
    if not seen:
        return None
    if not run:
        return CusumResult(0.0, "up", 0, 0, 0.0, 0.0, False)
    n = sum(w[1] for w in run)
    k = sum(w[2] for w in run)
    p = k / n
    base = min(max(share + allowance, 1e-12), 1 - 1e-12)
    se = math.sqrt(base * (1 - base) / n)
    z = (p - share - allowance) / se
    return CusumResult(
        value=total,
        direction="up",
        since=run[0][0],
        windows=len(run),
        shift=p - share,
        z=z,
        alarm=total >= threshold and z >= z_needed,
    )


def z_for(p_value: float) -> float:
    """The one-sided normal quantile a p-value asks for."""
    return float(norm.isf(p_value))
