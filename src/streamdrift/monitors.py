"""Drift monitors: a window's sketches against the reference profile and the pooled
earlier windows (`baselines.py`), as plain numbers.

Pure functions: `window_drift` is what `inspect` shows and what the evaluator turns into
alerts, so the two can never disagree.
"""

from __future__ import annotations

import difflib
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from river.drift import ADWIN, PageHinkley
from scipy.stats import binomtest, norm, poisson

from streamdrift.baselines import REFERENCE
from streamdrift.categorical_depth import cardinality_excess
from streamdrift.config import DriftPolicy
from streamdrift.performance import (
    PerformanceSketch,
    calibration_error_spread,
    performance_metrics,
)
from streamdrift.profile import (
    LABEL,
    PREDICTION,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
)
from streamdrift.sequential import SUB_FIELDS, degradation_scan, sub_windows
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch
from streamdrift.statistics import categorical_drift, ks_p_value, numeric_drift

_NAN = float("nan")

#: Drift statistics already worked out, by their inputs. The evaluator reads a window
#: again whenever it was written to, and a window that only labels reached (they join for
#: hours) has the same feature counts as before: the same statistics, whose exact KS and
#: minimum-effect p-values cost ~0.7 ms per column. Bounded, least recently used first out.
_SEEN: OrderedDict[bytes, dict[str, float]] = OrderedDict()
SEEN_SIZE = 4096


def _remembered(key: bytes, work: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`work()`'s statistics, worked out once per `key` (the exact bytes of every input:
    equal keys are equal inputs); a copy each time, as callers add to it."""
    found = _SEEN.get(key)
    if found is None:
        found = _SEEN[key] = work()
        if len(_SEEN) > SEEN_SIZE:
            _SEEN.popitem(last=False)
    else:
        _SEEN.move_to_end(key)
    return dict(found)


def _key(*parts: Any) -> bytes:
    """The inputs' exact bytes, each with its length (arrays as float64, numbers by
    `repr`, so 0.0 and -0.0 differ as their results might)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            raw = part.encode()
        elif part is None or isinstance(part, float | int):
            raw = repr(part).encode()
        else:
            raw = np.ascontiguousarray(part, dtype=np.float64).tobytes()
        out += [len(raw).to_bytes(4, "little"), raw]
    return b"".join(out)


class BaselineResult(TypedDict):
    """A feature's window against one baseline: its own effect-size and significance
    gates. `available` is false when the baseline has too little history (fewer than
    the policy's `min_samples` values of the feature, or no window at all)."""

    available: bool
    value: float
    p_value: float
    drifted: bool
    sample_size: int


@dataclass(slots=True)
class FeatureDrift:
    """One feature in one window: its statistics and the policy's verdict.

    `statistics` are against the reference profile (what `inspect` tabulates); `value`
    and `p_value` are the verdict's: the smallest effect and the largest p-value over
    the baselines that judged it (`judged_by`), so "drifted" reads as `value >=
    threshold` and `p_value < alpha` with `sample_size >= min_samples`, which holds
    exactly when every one of them agrees. The p-value is the minimum-effect test's
    (`min_effect_p_value`) when Cohen's w judges, else the chi-square test's; both are
    in `statistics`. `baselines` holds each chosen baseline's own result, available or
    not. A disabled feature (`enabled` false) has statistics but no verdict."""

    feature: str
    kind: str
    sample_size: int
    missing: int
    statistics: dict[str, float]
    statistic: str
    value: float
    threshold: float
    p_value: float
    drifted: bool
    enabled: bool = True
    #: the significance line after the Bonferroni correction
    alpha: float = float("nan")
    baselines: dict[str, BaselineResult] = field(default_factory=dict)
    judged_by: list[str] = field(default_factory=list)


def judged_p_value(stats: dict[str, float]) -> float:
    """The p-value that judges: the minimum-effect test's where the statistics have one
    (Cohen's w judges, `DriftPolicy.min_effect`), else the chi-square test's."""
    if "min_effect_p_value" in stats:
        return stats["min_effect_p_value"]
    return stats.get("chi_square_p_value", float("nan"))


def gates_met(
    value: float, threshold: float, p_value: float, alpha: float, n: int, min_samples: int
) -> bool:
    """The drift verdict's three gates: enough values, an effect at or above the
    threshold (practically large) and a p-value below the corrected line (not chance).
    Nan fails every comparison, so a statistic that could not be computed never drifts.
    One function, so the benchmark of detection power judges as the worker does."""
    return n >= min_samples and value >= threshold and p_value < alpha


def _numeric_statistics(
    ref: NumericProfile,
    base: NumericProfile | NumericSketch,
    sk: NumericSketch,
    min_effect: float | None = None,
) -> dict[str, float]:
    """The window's bins against the baseline's, both on the reference's edges. The
    outer bins' Wasserstein positions reach the farthest value either side has seen;
    its scale stays the reference's spread, so every baseline reads in the same units.
    With `min_effect`, the minimum-effect test's p-value too."""
    if isinstance(base, NumericSketch):
        counts = base.bins
        low, high = min(sk.minimum, base.minimum), max(sk.maximum, base.maximum)
    else:
        counts, low, high = np.asarray(base.counts), sk.minimum, sk.maximum
    positions = ref.bin_positions(low, high)
    scale = ref.std or None
    return _remembered(
        _key("numeric", counts, sk.bins, positions, scale, min_effect),
        lambda: numeric_drift(
            counts, sk.bins, positions, scale=scale, min_effect=min_effect, ks_p=False
        ),
    )


def _with_ks_p(stats: dict[str, float], ref: NumericProfile, sk: NumericSketch) -> None:
    """Adds the KS p-value against the reference: reported, never judged, and the one
    statistic whose cost grows with the window (`statistics.ks_p_value`)."""
    d, nr, nc = stats["ks"], float(np.sum(ref.counts)), float(np.sum(sk.bins))
    stats["ks_p_value"] = _remembered(
        _key("ks_p", d, nr, nc), lambda: {"p": ks_p_value(d, nr, nc)}
    )["p"]


def _categorical_statistics(
    ref: CategoricalProfile,
    base: CategoricalProfile | CategoricalSketch,
    cs: CategoricalSketch,
    min_effect: float | None = None,
) -> dict[str, float]:
    if isinstance(base, CategoricalSketch):
        base_counts, cur_counts = cs.aligned_with(base, ref)
    else:
        base_counts, cur_counts = cs.aligned(ref)
    return _remembered(
        _key("categorical", base_counts, cur_counts, min_effect),
        lambda: categorical_drift(base_counts, cur_counts, min_effect=min_effect),
    )


def _baseline_column(pooled: WindowSketch | None, name: str, kind: str) -> Any:
    if pooled is None:
        return None
    return (pooled.numeric if kind == "numeric" else pooled.categorical).get(name)


def _column_drift(
    name: str,
    ref: ColumnProfile,
    window: WindowSketch,
    policy: DriftPolicy,
    alpha: float,
    baselines: Mapping[str, WindowSketch] | None = None,
    enabled: bool = True,
    ks_p: bool = True,
) -> FeatureDrift | None:
    """One column's statistics and verdict; `ks_p` false: the KS p-value (against the
    reference) only if the column drifts, i.e. only where an alert shows it."""
    numeric = isinstance(ref, NumericProfile)
    sk = (window.numeric if numeric else window.categorical).get(name)
    if sk is None or sk.n == 0:
        return None

    min_effect = policy.min_effect(ref.kind)

    def against(base: Any) -> dict[str, float]:
        if numeric:
            return _numeric_statistics(ref, base, sk, min_effect)  # type: ignore[arg-type]
        return _categorical_statistics(ref, base, sk, min_effect)  # type: ignore[arg-type]

    stats = against(ref)
    if isinstance(sk, NumericSketch):
        stats.update(mean=sk.mean, std=sk.std, min=sk.minimum, max=sk.maximum)
    else:
        stats["unseen_categories"] = float(
            sum(1 for k in sk.counts if k not in ref.categories)  # type: ignore[union-attr]
        )
    statistic, threshold = policy.judge(ref.kind)
    n = sk.n

    def result(s: dict[str, float], size: int) -> BaselineResult:
        value, p = s[statistic], judged_p_value(s)
        drifted = gates_met(value, threshold, p, alpha, n, policy.min_samples)
        return BaselineResult(
            available=True, value=value, p_value=p, drifted=bool(drifted), sample_size=size
        )

    results: dict[str, BaselineResult] = {}
    if enabled:
        for b in policy.baselines:
            if b == REFERENCE:
                results[b] = result(stats, ref.count)
                continue
            column = _baseline_column((baselines or {}).get(b), name, ref.kind)
            size = column.n if column is not None else 0
            if size < policy.min_samples:
                results[b] = BaselineResult(
                    available=False, value=_NAN, p_value=_NAN, drifted=False, sample_size=size
                )
            else:
                results[b] = result(against(column), size)
        judged_by = [b for b, r in results.items() if r["available"]]
        if not judged_by and policy.until_history == "reference":
            # no chosen baseline has the history yet: the reference judges
            results[REFERENCE] = result(stats, ref.count)
            judged_by = [REFERENCE]
        if judged_by:
            value = min(results[b]["value"] for b in judged_by)
            p = max(results[b]["p_value"] for b in judged_by)
            drifted = all(results[b]["drifted"] for b in judged_by)
        else:  # until_history "wait": no verdict before the baselines have history
            value, p, drifted = stats[statistic], judged_p_value(stats), False
    else:
        judged_by, value, p, drifted = [], stats[statistic], judged_p_value(stats), False
    if isinstance(sk, NumericSketch) and (ks_p or drifted):
        _with_ks_p(stats, ref, sk)  # type: ignore[arg-type]
    return FeatureDrift(
        feature=name,
        kind=ref.kind,
        sample_size=n,
        missing=sk.missing,
        statistics=stats,
        statistic=statistic,
        value=value,
        threshold=threshold,
        p_value=p,
        drifted=drifted,
        enabled=enabled,
        alpha=alpha if enabled else _NAN,
        baselines=results,
        judged_by=judged_by,
    )


def window_drift(
    profile: ReferenceProfile,
    window: WindowSketch,
    baselines: Mapping[str, WindowSketch] | None = None,
    ks_p: bool = True,
) -> dict[str, FeatureDrift]:
    """Drift of every feature of `window`, with each feature's policy's verdict.

    `baselines` are the pooled earlier windows of the window-based baselines the policy
    chooses (`baselines.read_baselines`), by name; one missing is unavailable. A feature
    drifts only when every chosen baseline that is available agrees (each with its own
    effect-size and significance gates); with none available, the reference judges.
    The significance gate is Bonferroni-corrected over the model's enabled features, so
    adding features does not add false alarms. Disabled features get statistics
    against the reference and no verdict. `ks_p` false (evaluation): the KS p-value only
    for the features that drift (`_column_drift`)."""
    cfg = profile.config
    enabled = {name: cfg.feature_enabled(name) for name in profile.features}
    family = max(sum(enabled.values()), 1)
    out: dict[str, FeatureDrift] = {}
    for name, ref in profile.features.items():
        policy = cfg.feature_policy(name)
        alpha = policy.p_value / family
        d = _column_drift(name, ref, window, policy, alpha, baselines, enabled[name], ks_p)
        if d is not None:
            out[name] = d
    return out


def output_drift(
    profile: ReferenceProfile,
    window: WindowSketch,
    baselines: Mapping[str, WindowSketch] | None = None,
    ks_p: bool = True,
) -> dict[str, FeatureDrift]:
    """Drift of the prediction (prediction drift, the label-free proxy) and of the joined
    labels (label drift), with the same statistics, policy and baselines as features;
    the two form their own family for the significance correction."""
    policy: DriftPolicy = profile.config.drift
    alpha = policy.p_value / 2
    out = {}
    for name, ref in profile.outputs().items():
        d = _column_drift(name, ref, window, policy, alpha, baselines, ks_p=ks_p)
        if d is not None:
            out[name] = d
    return out


def importance_ratio(d: FeatureDrift, cap: float) -> float:
    """A feature's drift in thresholds (`value / threshold`), at most `cap`; 0 when its
    shift is not significant (too few values, or p at or above its corrected line), so
    chance wobbles of small windows add nothing."""
    policy_met = d.enabled and d.p_value < d.alpha and d.value == d.value
    if not policy_met or d.threshold <= 0:
        return 0.0
    return min(max(d.value, 0.0) / d.threshold, cap)


def importance_weighted_drift(
    profile: ReferenceProfile, drift: Mapping[str, FeatureDrift], top: int = 5
) -> dict[str, Any] | None:
    """The model-level drift figure, weighted by feature importance; None when the
    profile has no `feature_importance`.

        importance_weighted_drift = sum_f w_f * min(value_f / threshold_f, cap)

    over the enabled features with a verdict in the window, `w_f` the normalised
    importance (features without one weigh 0), `value_f` and `threshold_f` the feature's
    statistic and threshold (its own policy's), `cap` = `drift.importance_cap`; a
    feature whose shift is not significant (p at or above its Bonferroni line, or fewer
    than `min_samples` values) adds 0. 1.0 means: as if every feature sat on its drift
    line. `drifted` when it reaches `drift.importance_threshold`. `top` lists the
    largest contributions; `evaluated` the importance share of the features that had
    values in the window."""
    weights = profile.config.feature_importance
    if not weights:
        return None
    policy = profile.config.drift
    total = sum(weights.values())
    value, evaluated, parts = 0.0, 0.0, []
    for name, raw in weights.items():
        d = drift.get(name)
        w = raw / total
        if d is None or not d.enabled or w == 0:
            continue
        evaluated += w
        if d.sample_size < profile.config.feature_policy(name).min_samples:
            continue
        ratio = importance_ratio(d, policy.importance_cap)
        if ratio > 0:
            value += w * ratio
            parts.append(
                {
                    "feature": name,
                    "importance": w,
                    "statistic": d.statistic,
                    "value": d.value,
                    "threshold": d.threshold,
                    "ratio": ratio,
                    "contribution": w * ratio,
                    "drifted": d.drifted,
                }
            )
    parts.sort(key=lambda c: -c["contribution"])
    return {
        "value": value,
        "threshold": policy.importance_threshold,
        "drifted": value >= policy.importance_threshold,
        "cap": policy.importance_cap,
        "evaluated": evaluated,
        "top": parts[:top],
    }


def rank_drifting(
    profile: ReferenceProfile, drift: Mapping[str, FeatureDrift]
) -> list[dict[str, Any]]:
    """The drifted features, most important drift first: by importance × (value /
    threshold) when the profile has feature importance, else by value / threshold.
    Each entry: feature, its statistic's value, importance (None without), score."""
    weights = profile.config.feature_importance
    total = sum(weights.values()) if weights else 0.0
    ranked = []
    for d in drift.values():
        if not d.drifted:
            continue
        ratio = d.value / d.threshold
        importance = (weights or {}).get(d.feature, 0.0) / total if weights else None
        score = ratio * importance if importance is not None else ratio
        ranked.append(
            (
                -score,
                -ratio,
                d.feature,
                {
                    "feature": d.feature,
                    d.statistic: round(d.value, 6),
                    "importance": None if importance is None else round(importance, 6),
                    "score": round(score, 6),
                },
            )
        )
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked]


# ---- performance degradation ----------------------------------------------------------

#: metrics where larger is worse
ERROR_METRICS = {"mae", "rmse", "log_loss", "brier", "calibration_error", "mape"}
#: error metrics whose drop is relative to the baseline, as their units differ between
#: models; calibration error is a gap between probabilities, absolute like accuracy
RELATIVE_METRICS = ERROR_METRICS - {"calibration_error"}


@dataclass(slots=True)
class PerformanceFinding:
    """A window's performance against its baselines, and the verdict.

    `metric` is the headline, the condition's name; `value` and `baselines` are its own.
    `tests` holds the comparisons of every metric tested (the headline's among them),
    each at level `alpha`; `fired` is the one that found the window degraded, and
    `worst` its baseline with the largest significant drop."""

    metric: str
    value: float
    labelled: int
    baselines: dict[str, dict[str, float]]
    degraded: bool
    worst: str | None
    detectors: dict[str, bool]
    metrics: dict[str, float]
    fired: str | None = None
    tests: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    alpha: float = float("nan")

    @property
    def fired_baselines(self) -> dict[str, dict[str, float]]:
        """The comparisons of the metric that fired (the headline's when none did)."""
        return self.tests.get(self.fired, self.baselines) if self.fired else self.baselines


def headline_metric(profile: ReferenceProfile) -> str:
    configured = profile.config.performance.metric
    if configured:
        return configured
    if profile.task == "regression":
        return "mae"
    if profile.positive_class and isinstance(profile.prediction, NumericProfile):
        return "roc_auc"
    return "accuracy"


def watched_metrics(profile: ReferenceProfile) -> list[str]:
    """The metrics a degradation is alerted on: the configured metric alone, else for a
    scored binary model the policy's `watched` (the headline first), else the headline."""
    policy = profile.config.performance
    metric = headline_metric(profile)
    if policy.metric or metric != "roc_auc":
        return [metric]
    watched = list(policy.watched)
    return [metric, *(m for m in watched if m != metric)] if metric in watched else watched


def window_performance(profile: ReferenceProfile, window: WindowSketch) -> dict[str, float]:
    if window.performance is None:
        return {}
    return performance_metrics(
        window.performance,
        profile.task,
        profile.positive_class,
        window.count or None,
        profile.score_edges,
    )


def _standard_error(metric: str, m: dict[str, float]) -> float:
    """Standard error of a metric from the window's own sums: Hanley & McNeil (1982) for
    ROC-AUC, the sample spread of absolute errors for MAE, of per-pair log losses for log
    loss (where the window has their squares), for calibration error the bound
    1 / (2 sqrt(n)) (see `calibration_error_spread` for a window's own), binomial
    otherwise."""
    n = m.get("labelled", 0.0)
    value = m.get(metric, float("nan"))
    if not n or value != value:
        return float("nan")
    if metric == "roc_auc":
        n_pos, n_neg = m.get("positives", 0.0), m.get("negatives", 0.0)
        if not n_pos or not n_neg:
            return float("nan")
        q1, q2 = value / (2 - value), 2 * value * value / (1 + value)
        var = (
            value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)
        ) / (n_pos * n_neg)
        return math.sqrt(max(var, 0.0))
    if metric == "mae":
        spread = m.get("rmse", 0.0) ** 2 - value**2
        return math.sqrt(max(spread, 0.0) / n)
    if metric == "rmse":
        return value / math.sqrt(2 * n)  # normal approximation
    scored = m.get("positives", 0.0) + m.get("negatives", 0.0)
    if metric == "log_loss" and "log_loss_sd" in m and scored:
        return m["log_loss_sd"] / math.sqrt(scored)
    if metric == "calibration_error" and scored:
        # Σ w_b² p_b(1 − p_b) / n_b ≤ Σ w_b / (4 n) = 1 / (4 n), whatever the bins
        return 0.5 / math.sqrt(scored)
    p = min(max(value, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / n)


def _spread(
    profile: ReferenceProfile, metric: str, m: dict[str, float], sketch: PerformanceSketch | None
) -> tuple[float, float]:
    """(standard error, sampling bias bound) of `metric` in a sample; for calibration
    error of a sample whose sketch is at hand, read from its calibration bins."""
    if metric == "calibration_error" and sketch is not None and sketch.scored:
        bias, se = calibration_error_spread(
            sketch.positive_hist, sketch.negative_hist, profile.score_edges, sketch.score_sums
        )
        return se, bias
    return _standard_error(metric, m), 0.0


def _compare(
    metric: str,
    now: dict[str, float],
    base: dict[str, float],
    now_spread: tuple[float, float] | None = None,
    base_spread: tuple[float, float] | None = None,
) -> dict[str, float]:
    """One-sided z-test that `now` is worse than `base`, and the size of the drop. A
    spread is (standard error, bias bound) as `_spread` gives it: the window's sampling
    bias (calibration error reads larger in a small sample) is discounted from its
    value; the baseline's own bias is left in it, which only makes the test stricter."""
    v, b = now.get(metric, float("nan")), base.get(metric, float("nan"))
    se_now, bias = now_spread or (_standard_error(metric, now), 0.0)
    se_base = (base_spread or (_standard_error(metric, base), 0.0))[0]
    se = math.hypot(se_now, se_base)
    worse = v - bias - b if metric in ERROR_METRICS else b - v
    drop = worse / abs(b) if metric in RELATIVE_METRICS and b else worse
    if se != se:
        z = float("nan")
    elif se == 0:  # both exact (e.g. all right before, all wrong now): any worsening is real
        z = math.copysign(math.inf, worse) if worse else 0.0
    else:
        z = worse / se
    p = float(norm.sf(z)) if z == z else float("nan")
    out = {"baseline": b, "drop": drop, "z": z, "p_value": p, "labelled": base.get("labelled", 0)}
    if bias:
        out["bias"] = bias
    return out


#: a detector that fired within this many of the latest windows counts as "fired now"
DETECTOR_LOOKBACK = 3


def _detectors(metric: str, series: list[float], min_degradation: float) -> dict[str, bool]:
    """river's ADWIN and Page–Hinkley over the per-window metric series, rebuilt from
    Redis at each evaluation (nothing pickled): did either flag a change within the last
    DETECTOR_LOOKBACK windows? ADWIN needs several windows on each side of a change, so
    it speaks for gradual decline over a long series; Page–Hinkley reacts sooner. For
    relative error metrics the threshold is relative to the series' starting level, as
    the policy's minimum degradation is."""
    mode = "up" if metric in ERROR_METRICS else "down"
    scale = abs(series[0]) if series and metric in RELATIVE_METRICS and series[0] else 1.0
    threshold = min_degradation * scale
    ph = PageHinkley(min_instances=3, delta=threshold / 4, threshold=threshold, mode=mode)
    adwin = ADWIN(delta=0.01, clock=1, min_window_length=1, grace_period=2)
    fired = {"page_hinkley": -1, "adwin": -1}
    for i, x in enumerate(series):
        ph.update(x)
        adwin.update(x / scale)
        if ph.drift_detected:
            fired["page_hinkley"] = i
        if adwin.drift_detected:
            fired["adwin"] = i
    recent = len(series) - DETECTOR_LOOKBACK
    return {name: i >= 0 and i >= recent for name, i in fired.items()}


#: the baseline name of the sequential scan's comparison: the stream before its cut
SEQUENTIAL = "sequential"


def sequential_scans(
    profile: ReferenceProfile, recent: list[WindowSketch], window: WindowSketch
) -> dict[str, dict[str, float]]:
    """The sequential scan (`sequential.degradation_scan`) of each watched metric the
    join keeps sub-window sums of, over the sub-windows of `recent` and `window` (oldest
    first), as comparisons beside `_compare`'s: baseline (the metric before the cut),
    value (after it), drop, z, p_value (of that one cut), labelled (before), and the
    scan's own: statistic, threshold, since (event time of the cut), after_labelled and
    alarm (1.0 or 0.0). The threshold grows by ln(metrics scanned): Bonferroni. The worse
    part begins at most `span_windows` windows back (by default in the window itself,
    each window's scan finding the onsets in it): the scan finds an onset; whether a
    degradation lasts is the window tests' call (a cut long past would keep a recovered
    model "worse since then" for as long as the old damage outweighs the new calm)."""
    cfg = profile.config
    seq = cfg.performance.sequential
    scanned = [m for m in watched_metrics(profile) if m in SUB_FIELDS]
    if not seq.enabled or not scanned or window.performance is None:
        return {}
    series = []
    for w in [*recent, window]:
        if w.performance is not None and w.performance.sub_windows:
            series += sub_windows(
                w.start, cfg.window_seconds, seq.sub_windows, w.performance.sub_windows
            )
    threshold = seq.threshold + math.log(len(scanned))
    out: dict[str, dict[str, float]] = {}
    for m in scanned:
        r = degradation_scan(
            m,
            series,
            threshold=threshold,
            minimum=cfg.performance.minimum(m),
            relative=m in RELATIVE_METRICS,
            min_after=seq.min_labels,
            min_before=cfg.performance.min_labels,
            earliest=window.start - (seq.span_windows - 1) * cfg.window_seconds,
        )
        if r is None:
            continue
        out[m] = {
            "baseline": r.before,
            "value": r.after,
            "drop": r.drop,
            "z": r.z,
            "p_value": float(norm.sf(r.z)),
            "labelled": r.before_n,
            "after_labelled": r.after_n,
            "statistic": r.statistic,
            "threshold": threshold,
            "since": r.since,
            "alarm": float(r.alarm),
        }
    return out


def performance_check(
    profile: ReferenceProfile,
    window: WindowSketch,
    recent: list[WindowSketch],
    peers: PerformanceSketch | None = None,
    interim: bool = False,
) -> PerformanceFinding | None:
    """Is the window's performance worse than the reference's, or than the pooled recent
    windows', or (for one version: `peers`) than the other versions' in the same window,
    by a margin that matters and beyond chance? None without enough labels.

    Each watched metric (`watched_metrics`) the window has is tested against each
    baseline at p_value / (metrics tested): Bonferroni over the metrics, so the chance
    that any of them fires on a window as good as its baseline stays within p_value per
    baseline. The headline fires when it is degraded, else the degraded metric of the
    smallest p-value (of the largest z, where p-values underflow). An `interim` window
    (its labels still arriving) is looked at again and again as they come: it is tested
    at a tenth of that (`sequential.sub_windows` looks, Bonferroni), so the looks add no
    false alarms; the sequential scan, calibrated with every look, is not."""
    policy = profile.config.performance
    metric = headline_metric(profile)
    now = window_performance(profile, window)
    labelled = int(now.get("labelled", 0))
    watched = watched_metrics(profile)
    scans = sequential_scans(profile, recent, window)
    if labelled < policy.min_labels or metric not in now:
        # too few labels for the window's own test; the scan may already know
        alarms = {m: t for m, t in scans.items() if t["alarm"]}
        if not alarms:
            return None
        fired = max(alarms, key=lambda m: (alarms[m]["statistic"], -watched.index(m)))
        return PerformanceFinding(
            metric=metric,
            value=now.get(metric, float("nan")),
            labelled=labelled,
            baselines={},
            degraded=True,
            worst=SEQUENTIAL,
            detectors={},
            metrics=now,
            fired=fired,
            tests={m: {SEQUENTIAL: t} for m, t in scans.items()},
            alpha=policy.p_value / max(len(watched), 1),
        )
    family = [m for m in watched if m in now]
    tested = [metric, *(m for m in family if m != metric)]
    alpha = policy.p_value / max(len(family), 1)
    if interim:  # labels still arriving: one of the window's looks
        alpha /= policy.sequential.sub_windows
    clock = len(watched) > 1

    samples: dict[str, tuple[dict[str, float], PerformanceSketch | None]] = {}
    if profile.reference_performance:
        samples["reference"] = (profile.reference_performance, None)
    earlier = [w.performance for w in recent[-policy.recent_windows :] if w.performance is not None]
    if earlier:
        pooled = earlier[0]
        for s in earlier[1:]:
            pooled = pooled + s
        recent_metrics = performance_metrics(
            pooled, profile.task, profile.positive_class, score_edges=profile.score_edges
        )
        if recent_metrics.get("labelled", 0) >= policy.min_labels:
            samples["recent"] = (recent_metrics, pooled)
    if peers is not None:
        others = performance_metrics(
            peers, profile.task, profile.positive_class, score_edges=profile.score_edges
        )
        if others.get("labelled", 0) >= policy.min_labels:
            samples["other_versions"] = (others, peers)

    tests: dict[str, dict[str, dict[str, float]]] = {}
    for m in tested:
        spread = _spread(profile, m, now, window.performance)
        tests[m] = {}
        for name, (base, sketch) in samples.items():
            if m not in base:
                continue
            if clock and m == "log_loss" and not ("log_loss_sd" in now and "log_loss_sd" in base):
                continue  # no spread to test with: written before the sums of squares
            tests[m][name] = _compare(m, now, base, spread, _spread(profile, m, base, sketch))
        if m in scans:
            tests[m][SEQUENTIAL] = scans[m]

    significant: dict[str, str] = {}  # metric -> its worst significant baseline
    for m in family:
        for name, b in tests[m].items():
            if name == SEQUENTIAL:
                if not b["alarm"]:
                    continue
            elif not (b["drop"] >= policy.minimum(m) and b["p_value"] < alpha):
                continue
            if m not in significant or b["drop"] > tests[m][significant[m]]["drop"]:
                significant[m] = name
    fired: str | None = None
    if metric in significant:
        fired = metric
    elif significant:
        # the smallest p-value; past underflow (p = 0) the largest z
        fired = min(
            significant,
            key=lambda m: (
                tests[m][significant[m]]["p_value"],
                -tests[m][significant[m]]["z"],
                family.index(m),
            ),
        )
    watch = fired or metric
    series = []
    for w in [*recent, window]:
        values = window_performance(profile, w)
        if values.get("labelled", 0) >= policy.min_labels and watch in values:
            series.append(values[watch])
    return PerformanceFinding(
        metric=metric,
        value=now[metric],
        labelled=labelled,
        baselines=tests.get(metric, {}),
        degraded=fired is not None,
        worst=significant.get(fired) if fired else None,
        detectors=_detectors(watch, series, policy.minimum(watch)),
        metrics=now,
        fired=fired,
        tests=tests,
        alpha=alpha,
    )


# ---- data quality ---------------------------------------------------------------------


@dataclass(slots=True)
class QualityFinding:
    """One data-quality problem seen in a window: what, where, how many, an example."""

    kind: str
    feature: str
    events: int
    share: float
    threshold: float
    detail: str
    example: object = None


def _missing_share(ref: object) -> float:
    total = ref.count + ref.missing  # type: ignore[attr-defined]
    return ref.missing / total if total else 0.0  # type: ignore[attr-defined]


def quality_findings(profile: ReferenceProfile, window: WindowSketch) -> list[QualityFinding]:
    """The window's data-quality problems against the reference: features dropped, added
    or renamed (schema change), wrong-typed values, missing values, values outside the
    reference range, unseen categories, repeated prediction ids, and outputs no model
    should give."""
    policy = profile.config.quality
    n = window.count
    if n < policy.min_events:
        return []
    out: list[QualityFinding] = []
    dropped: dict[str, int] = {}
    for name, ref in {**profile.features, **profile.outputs()}.items():
        if name == LABEL:
            continue  # labels arrive through the join, not with the window's events
        output = name == PREDICTION
        shown = (profile.prediction_column or "prediction") if output else name
        numeric = isinstance(ref, NumericProfile)
        sk = window.numeric.get(name) if numeric else window.categorical.get(name)
        if sk is None:
            continue
        present = sk.n
        missing = sk.missing
        increase = missing / n - _missing_share(ref)
        if not output and increase >= policy.added_share:
            dropped[name] = missing
        elif (
            increase >= policy.missing_increase
            and binomtest(
                missing, n, min(_missing_share(ref) + 1e-3, 1.0), alternative="greater"
            ).pvalue
            < 1e-3
        ):
            out.append(
                QualityFinding(
                    "missing_values",
                    shown,
                    missing,
                    missing / n,
                    policy.missing_increase,
                    f"{missing / n:.1%} missing, reference {_missing_share(ref):.1%}",
                )
            )
        if numeric and present:
            oor = sk.out_of_range  # type: ignore[union-attr]
            if oor and oor / present >= policy.out_of_range_share:
                low, high = sk.minimum, sk.maximum  # type: ignore[union-attr]
                binary_score = output and profile.task == "binary"
                bounds = "[0, 1]" if binary_score else f"[{ref.min:g}, {ref.max:g}]"
                out.append(
                    QualityFinding(
                        "invalid_output" if binary_score else "out_of_range",
                        shown,
                        oor,
                        oor / present,
                        policy.out_of_range_share,
                        f"{oor} values outside {bounds} (with a {policy.range_margin:.0%} margin); "
                        f"seen {low:g} to {high:g}",
                        low if low < ref.min else high,
                    )
                )
        if not numeric and present:
            unseen = {
                k: c
                for k, c in sk.counts.items()  # type: ignore[union-attr]
                if k not in ref.categories
            }  # type: ignore[union-attr]
            count = sum(unseen.values())
            if ref.other == 0 and count / present >= policy.unseen_share:  # type: ignore[union-attr]
                top = sorted(unseen, key=lambda k: -unseen[k])[:5]
                out.append(
                    QualityFinding(
                        "unseen_class" if output else "unseen_categories",
                        shown,
                        count,
                        count / present,
                        policy.unseen_share,
                        f"{count} values in categories the reference never had: {', '.join(top)}",
                        top[0],
                    )
                )
    added = {k: c for k, c in window.extra.items() if c / n >= policy.added_share}
    for old, gone in list(dropped.items()):
        twin = _renamed_to(old, gone, added, profile, window)
        if twin is not None:
            out.append(
                QualityFinding(
                    "feature_renamed",
                    old,
                    added.pop(twin),
                    1.0,
                    policy.added_share,
                    f"'{old}' is missing and '{twin}' appeared instead",
                    twin,
                )
            )
            del dropped[old]
    for old, gone in dropped.items():
        out.append(
            QualityFinding(
                "feature_missing",
                old,
                gone,
                gone / n,
                policy.added_share,
                f"'{old}' is missing from {gone / n:.0%} of events",
            )
        )
    for new, count in added.items():
        out.append(
            QualityFinding(
                "feature_added",
                new,
                count,
                count / n,
                policy.added_share,
                f"'{new}' is not in the reference ({count / n:.0%} of events)",
            )
        )
    for key, count in window.invalid.items():
        reason, _, feature = key.partition(":")
        if reason == "wrong_type" and feature and count >= policy.wrong_type_events:
            out.append(
                QualityFinding(
                    "type_change",
                    feature,
                    count,
                    count / (n + count),
                    policy.wrong_type_events,
                    f"{count} events with a value of the wrong type for "
                    f"'{feature}' (sent to the dead-letter topic)",
                )
            )
    for c in cardinality_excess(profile, window):  # an id leaking into a category
        out.append(
            QualityFinding(
                "cardinality",
                c.feature,
                c.distinct,
                c.ratio,
                policy.cardinality_factor or 0.0,
                f"{c.distinct:,} distinct values, {c.ratio:.0f}x the reference's "
                f"{c.reference_cardinality:,}: an identifier or free text in a category?",
                c.example,
            )
        )
    if window.duplicates and window.duplicates / n >= policy.duplicate_share:
        out.append(
            QualityFinding(
                "duplicate_ids",
                "prediction_id",
                window.duplicates,
                window.duplicates / n,
                policy.duplicate_share,
                f"{window.duplicates} events repeat a prediction_id already seen "
                "(the producer sends some predictions twice)",
                window.duplicate_example,
            )
        )
    return out


def _renamed_to(
    old: str, gone: int, added: dict[str, int], profile: ReferenceProfile, window: WindowSketch
) -> str | None:
    """The new feature that most plausibly replaces `old`: about as many events carry it
    as lack `old`, and, for numbers, its mean lies within half a reference standard
    deviation of `old`'s; among several, the closest name (difflib)."""
    ref = profile.features[old]
    candidates = []
    for name, count in added.items():
        if abs(count - gone) > 0.1 * max(gone, 1):
            continue
        numbers = window.extra_numbers.get(name, 0)
        if isinstance(ref, NumericProfile):
            if numbers < 0.9 * count:
                continue
            mean = window.extra_sums.get(name, 0.0) / numbers
            if abs(mean - ref.mean) > 0.5 * (ref.std or 1.0):
                continue
        elif numbers:
            continue  # numbers cannot stand for a categorical feature
        candidates.append(name)
    if not candidates:
        return None
    close = difflib.get_close_matches(old, candidates, n=1, cutoff=0.0)
    return close[0] if close else candidates[0]


def outlier_share(profile: ReferenceProfile, window: WindowSketch) -> dict[str, float] | None:
    """The window's outlier share when significantly above the reference's (and at
    least twice the configured rate); None otherwise.

    The threshold was calibrated on the reference rows, so the rate it really flags is
    known only as well as those rows tell: about `rate x rows` of them lay beyond it
    (two for 2,000 rows at 0.1 %). The test compares the window with the reference as
    two samples, conditionally on the outliers of both (binomial: of the k + k_ref
    outliers, does the window hold more than its share n / (n + rows)?), so a small
    reference, whose threshold may really flag twice the rate, cannot page on every
    large window, while a large one is nearly the one-sample test against the rate."""
    model = profile.outliers
    n, k = window.count, window.outliers
    if model is None or n < profile.config.quality.min_events or k == 0:
        return None
    share = k / n
    rows = max(profile.rows, 1)
    expected = model.expected_rate  # the configured rate, or the share ties allow
    if profile.reference_outliers is not None:  # a slice: its own reference's share
        expected = max(profile.reference_outliers / rows, model.expected_rate / 10)
    if share < 2 * expected:
        return None
    k_ref = max(1, round(expected * rows))
    p = binomtest(k, k + k_ref, n / (n + rows), alternative="greater").pvalue
    if p >= 1e-3:
        return None
    return {"share": share, "expected": expected, "p_value": float(p), "reference_rows": rows}


# ---- volume ---------------------------------------------------------------------------


@dataclass(slots=True)
class VolumeFinding:
    """A complete window's event count against what its history leads to expect."""

    count: int
    expected: float
    ratio: float
    p_value: float
    baseline: str
    history: int
    min_ratio: float
    max_ratio: float
    abnormal: bool


def volume_check(
    profile: ReferenceProfile, count: int, rolling: list[int], seasonal: list[int]
) -> VolumeFinding | None:
    """Is the count far from the expected one, by a ratio that matters and beyond
    Poisson chance? The expected count is the median of the history (robust to the odd
    burst); the seasonal history, when configured and available, wins over the rolling
    one, since traffic with a daily rhythm is judged against the same hour. None
    without enough history."""
    policy = profile.config.volume
    if not policy.enabled:
        return None
    name, history = "rolling", rolling
    if policy.season_seconds and seasonal:
        name, history = "seasonal", seasonal
    if len(history) < (1 if name == "seasonal" else policy.min_history):
        return None
    expected = float(np.median(history))
    if expected <= 0:
        return None
    ratio = count / expected
    if ratio < 1:
        p = float(poisson.cdf(count, expected))
        large = ratio <= policy.min_ratio
    else:
        p = float(poisson.sf(count - 1, expected))
        large = ratio >= policy.max_ratio
    return VolumeFinding(
        count=count,
        expected=expected,
        ratio=ratio,
        p_value=p,
        baseline=name,
        history=len(history),
        min_ratio=policy.min_ratio,
        max_ratio=policy.max_ratio,
        abnormal=large and p < policy.p_value,
    )
