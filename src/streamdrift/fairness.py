"""Group fairness of a binary classifier from per-group confusion counts.

The state is one confusion count (tp, fp, tn, fn) per value of a sensitive segment — sums
that add up across batches and windows (`GroupCounts`, `group_counts`). `fairness_report`
turns them into, per group, its rates with Wilson intervals and its disparities against a
reference (privileged) group with intervals, plus the whole-population forms fairlearn
reports (max − min and min / max across groups) so that numbers can be matched with it.
`crossed_bounds` decides which configured bounds are crossed *with significance*: the
whole confidence interval must lie beyond the bound, so sampling noise in a small window
does not raise an alert, and small groups never raise one.

Conventions: a rate whose denominator is zero (a group with no positives has no TPR) is
``nan``, as are its intervals and the disparities built on it; nan never crosses a bound.
Malformed input (negative counts, an unknown metric) raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

__all__ = [
    "DEFAULT_MIN_GROUP_SIZE",
    "BoundCrossing",
    "Disparity",
    "Estimate",
    "FairnessBound",
    "FairnessMetric",
    "FairnessReport",
    "GroupCounts",
    "GroupFairness",
    "crossed_bounds",
    "fairness_report",
    "group_counts",
    "katz_ratio",
    "newcombe_difference",
    "wilson_interval",
]

DEFAULT_MIN_GROUP_SIZE = 30
"""Groups with fewer ids are reported but never cross a bound."""

_NAN = float("nan")


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """One group's confusion counts: true/false positives and negatives ("positive" is the
    favourable prediction, e.g. a loan granted). Counts of two windows add up."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "tn", "fn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            # numpy integers (from a bincount) become ints: sums and JSON stay plain
            object.__setattr__(self, name, int(value))

    @property
    def size(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def selected(self) -> int:
        """Ids predicted positive."""
        return self.tp + self.fp

    @property
    def positives(self) -> int:
        """Ids actually positive."""
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        """Ids actually negative."""
        return self.fp + self.tn

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return GroupCounts(
            self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn
        )


def group_counts(y_true: ArrayLike, y_pred: ArrayLike, groups: ArrayLike) -> dict[str, GroupCounts]:
    """The batch update: confusion counts per group value (keyed by ``str(value)``) from
    labels and predictions (truthy = positive) and the sensitive feature's values."""
    actual = np.asarray(y_true).astype(bool)
    predicted = np.asarray(y_pred).astype(bool)
    values = np.asarray(groups)
    if actual.ndim != 1 or predicted.shape != actual.shape or values.shape != actual.shape:
        raise ValueError(
            f"y_true, y_pred and groups must be 1-D of one length: "
            f"{actual.shape}, {predicted.shape}, {values.shape}"
        )
    names, index = np.unique(values, return_inverse=True)
    # cell code 0..3 = 2 * actual + predicted: tn, fp, fn, tp
    code = index * 4 + 2 * actual + predicted
    cells = np.bincount(code, minlength=4 * names.size).reshape(names.size, 4)
    return {
        str(name): GroupCounts(tp=int(c[3]), fp=int(c[1]), tn=int(c[0]), fn=int(c[2]))
        for name, c in zip(names, cells, strict=True)
    }


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate and its two-sided confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float


_UNDEFINED = Estimate(_NAN, _NAN, _NAN)


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(ndtri(0.5 + confidence / 2.0))


def _wilson(x: int, n: int, z: float) -> Estimate:
    if n <= 0:
        return _UNDEFINED
    p = x / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    # the bounds are exactly 0 and 1 at x = 0 and x = n; rounding would blur them
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return Estimate(p, low, high)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval (Wilson, *JASA* 22, 1927):
    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` — unlike the Wald interval it
    stays inside [0, 1] and keeps near-nominal coverage for small n and extreme p
    (Brown, Cai & DasGupta, *Statist. Sci.* 16, 2001). Same as
    ``scipy.stats.binomtest(successes, trials).proportion_ci(confidence, "wilson")``.
    Nan for zero trials."""
    return _wilson(successes, trials, _z(confidence))


def _newcombe(x1: int, n1: int, x2: int, n2: int, z: float) -> Estimate:
    if n1 <= 0 or n2 <= 0:
        return _UNDEFINED
    a, b = _wilson(x1, n1, z), _wilson(x2, n2, z)
    d = a.value - b.value
    low = d - math.hypot(a.value - a.low, b.high - b.value)
    high = d + math.hypot(a.high - a.value, b.value - b.low)
    return Estimate(d, low, high)


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> Estimate:
    """``x1/n1 − x2/n2`` for independent samples with Newcombe's hybrid score interval
    (Newcombe, *Stat. Med.* 17, 1998, method 10): from the Wilson limits ``l, u`` of each
    proportion, ``d − sqrt((p1−l1)² + (u2−p2)²)`` to ``d + sqrt((u1−p1)² + (p2−l2)²)``.
    Near-nominal coverage where the Wald interval fails (small n, rates near 0 or 1).
    Nan if either sample is empty."""
    return _newcombe(x1, n1, x2, n2, _z(confidence))


def _katz(x1: int, n1: int, x2: int, n2: int, z: float) -> Estimate:
    if n1 <= 0 or n2 <= 0:
        return _UNDEFINED
    p1, p2 = x1 / n1, x2 / n2
    value = p1 / p2 if p2 > 0.0 else (_NAN if p1 == 0.0 else math.inf)
    # an empty numerator or denominator has no log: ½ is added to every cell of the 2×2
    # table for the interval only
    a, c = float(x1), float(x2)
    m1, m2 = float(n1), float(n2)
    if x1 == 0 or x2 == 0:
        a, c, m1, m2 = a + 0.5, c + 0.5, m1 + 1.0, m2 + 1.0
    log_ratio = math.log((a / m1) / (c / m2))
    se = math.sqrt(max(0.0, 1.0 / a - 1.0 / m1 + 1.0 / c - 1.0 / m2))
    low = 0.0 if x1 == 0 else math.exp(log_ratio - z * se)
    high = math.inf if x2 == 0 else math.exp(log_ratio + z * se)
    return Estimate(value, low, high)


def katz_ratio(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> Estimate:
    """``(x1/n1) / (x2/n2)`` for independent samples with Katz's log interval (Katz,
    Baptista, Azen & Pike, *Biometrics* 34, 1978):
    ``exp(ln r ± z·sqrt(1/x1 − 1/n1 + 1/x2 − 1/n2))``, the delta method on the log scale.
    If ``x1`` or ``x2`` is 0 the interval is computed with ½ added to every cell of the
    2×2 table, and its open end is set to 0 (``x1 = 0``) or infinity (``x2 = 0``); the
    value is then 0, infinity, or nan (0/0). Nan if either sample is empty."""
    return _katz(x1, n1, x2, n2, _z(confidence))


# --------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class Disparity:
    """One group against the reference group ("this group minus/over the reference").

    ``equalized_odds_difference`` is ``max(|TPR diff|, |FPR diff|)`` over the defined ones
    (Hardt, Price & Srebro, NeurIPS 2016); it has no interval of its own — a bound on it
    is judged on the intervals of its two parts (`crossed_bounds`)."""

    demographic_parity_difference: Estimate  #: selection-rate difference, Newcombe
    disparate_impact: Estimate  #: selection-rate ratio, Katz
    equal_opportunity_difference: Estimate  #: true-positive-rate difference, Newcombe
    false_positive_rate_difference: Estimate  #: Newcombe
    equalized_odds_difference: float


@dataclass(frozen=True, slots=True)
class GroupFairness:
    """One group's rates with Wilson intervals, and its disparity against the reference
    (``None`` for the reference itself, or when the reference has no ids). ``small``:
    fewer ids than the report's ``min_group_size``; reported, never crossing a bound."""

    group: str
    counts: GroupCounts
    size: int
    small: bool
    selection_rate: Estimate  #: (tp + fp) / size
    true_positive_rate: Estimate  #: tp / (tp + fn)
    false_positive_rate: Estimate  #: fp / (fp + tn)
    precision: Estimate  #: tp / (tp + fp)
    versus_reference: Disparity | None


@dataclass(frozen=True, slots=True)
class FairnessReport:
    """Per-group fairness against ``reference``, and fairlearn's whole-population forms.

    The population fields are fairlearn's ``method="between_groups"`` aggregates over every
    group whose rate is defined, small groups included: ``demographic_parity_difference``
    = max − min selection rate, ``demographic_parity_ratio`` = min / max;
    ``equal_opportunity_*`` the same on TPR; ``equalized_odds_difference`` = the larger of
    the TPR and FPR differences, ``equalized_odds_ratio`` = the smaller of their ratios
    (fairlearn's ``agg="worst_case"``)."""

    reference: str | None
    confidence: float
    min_group_size: int
    groups: Mapping[str, GroupFairness]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equal_opportunity_difference: float
    equal_opportunity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float


def _largest(counts: Mapping[str, GroupCounts]) -> str | None:
    """The group with most ids (ties: the first name in sorted order)."""
    if not counts:
        return None
    return min(counts, key=lambda g: (-counts[g].size, g))


def _disparity(g: GroupCounts, ref: GroupCounts, z: float) -> Disparity:
    tpr = _newcombe(g.tp, g.positives, ref.tp, ref.positives, z)
    fpr = _newcombe(g.fp, g.negatives, ref.fp, ref.negatives, z)
    parts = [abs(d.value) for d in (tpr, fpr) if not math.isnan(d.value)]
    return Disparity(
        demographic_parity_difference=_newcombe(g.selected, g.size, ref.selected, ref.size, z),
        disparate_impact=_katz(g.selected, g.size, ref.selected, ref.size, z),
        equal_opportunity_difference=tpr,
        false_positive_rate_difference=fpr,
        equalized_odds_difference=max(parts) if parts else _NAN,
    )


def _spread(rates: Iterable[float]) -> tuple[float, float]:
    """(max − min, min / max) over the defined rates; nan if none (ratio nan if max 0)."""
    defined = [r for r in rates if not math.isnan(r)]
    if not defined:
        return _NAN, _NAN
    low, high = min(defined), max(defined)
    return high - low, (low / high if high > 0.0 else _NAN)


def fairness_report(
    counts: Mapping[str, GroupCounts],
    reference: str | None = None,
    confidence: float = 0.95,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> FairnessReport:
    """Fairness of one window from its per-group confusion counts.

    ``reference`` is the privileged group the others are compared with; ``None`` takes the
    largest group. A named reference with no ids in the window (absent, or all counts 0)
    leaves every ``versus_reference`` ``None``. Intervals are two-sided at ``confidence``:
    Wilson for each rate, Newcombe for differences, Katz for the ratio. The intervals are
    per comparison: with many groups and bounds, some interval misses by chance more
    often than ``1 − confidence`` — raise ``confidence`` to keep alerts rare.
    """
    z = _z(confidence)
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be non-negative, got {min_group_size}")
    chosen = _largest(counts) if reference is None else reference
    ref = counts.get(chosen) if chosen is not None else None
    if ref is not None and ref.size == 0:
        ref = None
    groups: dict[str, GroupFairness] = {}
    for name, c in counts.items():
        groups[name] = GroupFairness(
            group=name,
            counts=c,
            size=c.size,
            small=c.size < min_group_size,
            selection_rate=_wilson(c.selected, c.size, z),
            true_positive_rate=_wilson(c.tp, c.positives, z),
            false_positive_rate=_wilson(c.fp, c.negatives, z),
            precision=_wilson(c.tp, c.selected, z),
            versus_reference=None if ref is None or name == chosen else _disparity(c, ref, z),
        )
    dp_diff, dp_ratio = _spread(g.selection_rate.value for g in groups.values())
    tpr_diff, tpr_ratio = _spread(g.true_positive_rate.value for g in groups.values())
    fpr_diff, fpr_ratio = _spread(g.false_positive_rate.value for g in groups.values())
    return FairnessReport(
        reference=chosen,
        confidence=confidence,
        min_group_size=min_group_size,
        groups=groups,
        demographic_parity_difference=dp_diff,
        demographic_parity_ratio=dp_ratio,
        equal_opportunity_difference=tpr_diff,
        equal_opportunity_ratio=tpr_ratio,
        equalized_odds_difference=max(tpr_diff, fpr_diff),
        equalized_odds_ratio=min(tpr_ratio, fpr_ratio),
    )


# --------------------------------------------------------------------------- bounds

FairnessMetric = Literal[
    "disparate_impact",
    "demographic_parity_difference",
    "equal_opportunity_difference",
    "false_positive_rate_difference",
    "equalized_odds_difference",
]
_DIFFERENCES = (
    "demographic_parity_difference",
    "equal_opportunity_difference",
    "false_positive_rate_difference",
)


@dataclass(frozen=True, slots=True)
class FairnessBound:
    """A configured bound on a group's disparity against the reference.

    ``disparate_impact``: the selection-rate ratio must not fall below ``limit`` (0.8 is the
    four-fifths rule of the US Uniform Guidelines on Employee Selection Procedures, 29 CFR
    §1607.4(D)). The differences: their size must not exceed ``limit``, in either
    direction. ``equalized_odds_difference``: neither the TPR nor the FPR difference may
    exceed ``limit`` in size."""

    metric: FairnessMetric
    limit: float

    def __post_init__(self) -> None:
        if self.metric not in get_args(FairnessMetric):
            raise ValueError(f"unknown fairness metric {self.metric!r}")
        if self.metric == "disparate_impact":
            if not 0.0 < self.limit <= 1.0:
                raise ValueError(f"a disparate-impact limit is in (0, 1], got {self.limit}")
        elif not 0.0 <= self.limit < 1.0:
            raise ValueError(f"a difference limit is in [0, 1), got {self.limit}")


@dataclass(frozen=True, slots=True)
class BoundCrossing:
    """A bound crossed with significance by ``group`` against ``reference``.

    ``estimate`` is the quantity whose interval lies beyond the bound — for
    ``equalized_odds_difference`` that is one of its parts, named by ``decided_by``
    (otherwise ``decided_by == metric``)."""

    group: str
    reference: str
    metric: FairnessMetric
    limit: float
    decided_by: str
    estimate: Estimate


def _beyond(estimate: Estimate, limit: float) -> bool:
    """The whole interval lies outside [−limit, limit] (nan never does)."""
    return estimate.low > limit or estimate.high < -limit


def _crossing(d: Disparity, bound: FairnessBound) -> tuple[str, Estimate] | None:
    if bound.metric == "disparate_impact":
        hit = d.disparate_impact.high < bound.limit
        return (bound.metric, d.disparate_impact) if hit else None
    if bound.metric in _DIFFERENCES:
        estimate: Estimate = getattr(d, bound.metric)
        return (bound.metric, estimate) if _beyond(estimate, bound.limit) else None
    parts = [
        (name, e)
        for name, e in (
            ("equal_opportunity_difference", d.equal_opportunity_difference),
            ("false_positive_rate_difference", d.false_positive_rate_difference),
        )
        if _beyond(e, bound.limit)
    ]
    return max(parts, key=lambda part: abs(part[1].value)) if parts else None


def crossed_bounds(report: FairnessReport, bounds: Iterable[FairnessBound]) -> list[BoundCrossing]:
    """The bounds each group crosses *with significance*, group by group in report order.

    A ratio bound ``disparate_impact < limit`` is crossed only when the upper confidence
    limit of the ratio is below ``limit``; a difference bound ``|difference| > limit`` only
    when the whole interval lies beyond ``±limit``; an equalized-odds bound when the TPR or
    the FPR difference crosses it so. At a population exactly on the bound each fires with
    probability about ``(1 − confidence) / 2``; further inside, less. A group
    selected *more* often than the reference does not cross a ratio bound: the reference
    is meant to be the privileged group. Small groups, a small reference, and undefined
    (nan) quantities never cross.
    """
    bounds = list(bounds)
    ref_name = report.reference
    ref = report.groups.get(ref_name) if ref_name is not None else None
    if ref_name is None or ref is None or ref.small:
        return []
    crossings: list[BoundCrossing] = []
    for g in report.groups.values():
        if g.small or g.versus_reference is None:
            continue
        for bound in bounds:
            hit = _crossing(g.versus_reference, bound)
            if hit is not None:
                crossings.append(
                    BoundCrossing(g.group, ref_name, bound.metric, bound.limit, hit[0], hit[1])
                )
    return crossings
