"""Multivariate drift as the windows show it, and the `multivariate_drift` alerts it
raises (route ml-team), each an episode:

- ``multivariate_drift:reconstruction_error`` — the window's reconstruction errors
  (`reconstruction.py`) are judged like a numeric feature: the model's drift policy
  (effect size and chi-square against the reference's cross-fitted errors, or the
  rolling or seasonal baselines it chooses), as a family of its own. It speaks when the
  inputs do not: in a window where one of its features drifts on its own (or goes
  missing far more often), the error moves with that feature and `data_drift` (or
  `data_quality`) already names it, so the condition is not judged there (neither
  raised nor ended; `inspect` shows the error and the features that explain it). One
  real change, one alert;
- ``multivariate_drift:correlation`` — one or more pairs of the watched features
  changed their correlation (`correlation.py`: Fisher's z against the drift policy's
  baselines, significantly beyond a minimum change, Holm over the pairs). One episode
  for the model's correlation structure, not one per pair: a feature whose relation to
  the others broke changes all its pairs at once. The alert names the pair that changed
  most (`feature` "<a>|<b>") and lists every flagged pair with both names in
  `context.pairs`.

Pure functions over window sketches, like `monitors`; `conditions.window_conditions`
calls `multivariate_conditions`, and `inspect` shows `multivariate_report`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamdrift.alerts import _profile_alert_id, _span, _window_fields
from streamdrift.baselines import REFERENCE
from streamdrift.correlation import PairChange, pair_changes, pair_name
from streamdrift.events import Alert
from streamdrift.monitors import FeatureDrift, _column_drift
from streamdrift.profile import RECONSTRUCTION, ReferenceProfile
from streamdrift.sketch import WindowSketch

ALERT_TYPE = "multivariate_drift"
#: the `feature` of reconstruction-error alerts, and the two conditions' kinds
RECONSTRUCTION_ERROR = "reconstruction_error"
CORRELATION = "correlation"


def condition(kind: str) -> str:
    """The episode key of a kind of multivariate drift."""
    return f"{ALERT_TYPE}:{kind}"


def reconstruction_drift(
    profile: ReferenceProfile,
    window: WindowSketch,
    baselines: Mapping[str, WindowSketch] | None = None,
    ks_p: bool = True,
) -> FeatureDrift | None:
    """The window's reconstruction-error column against the reference's errors (and the
    chosen window baselines), with the model's drift policy; None without the column
    or without errors in the window. `ks_p` as for `monitors.window_drift`."""
    column = profile.derived_columns().get(RECONSTRUCTION)
    if column is None or not profile.config.multivariate.reconstruction:
        return None
    policy = profile.config.drift
    return _column_drift(
        RECONSTRUCTION, column, window, policy, policy.p_value, baselines, ks_p=ks_p
    )


@dataclass(slots=True)
class CorrelationFinding:
    """The window's judged pairs (enough events on both sides), the flagged ones
    (largest change first), the baselines that judged them, and the gates."""

    pairs: list[PairChange]
    flagged: list[PairChange]
    judged_by: list[str]
    alpha: float
    min_change: float
    chosen_by: str


def correlation_drift(
    profile: ReferenceProfile,
    window: WindowSketch,
    baselines: Mapping[str, WindowSketch] | None = None,
) -> CorrelationFinding | None:
    """Which watched pairs changed their correlation, against the baselines the drift
    policy chooses, as features are judged: the reference's correlations, or those of
    the pooled rolling or seasonal windows (a baseline with fewer than `min_samples`
    events of a pair cannot judge it; with none, the reference does unless the policy
    waits). A pair is flagged when every baseline that judged it flags it; the one with
    the weakest evidence is shown. None when no pair could be judged."""
    mv, policy = profile.multivariate, profile.config.multivariate
    model = mv.correlation if mv is not None else None
    if model is None or window.correlation is None or not policy.correlation:
        return None
    gates = {
        "alpha": policy.correlation_p_value,
        "min_change": policy.min_correlation_change,
        "min_samples": policy.min_samples,
    }
    reference = (model.arrays()[2], np.asarray(model.counts, dtype=np.int64))
    results: dict[str, list[PairChange]] = {}
    drift = profile.config.drift
    for name in drift.baselines:
        pooled = (baselines or {}).get(name)
        sums = pooled.correlation if pooled is not None else None
        base = (
            reference
            if name == REFERENCE
            else (None if sums is None else (sums.correlation(), sums.n))
        )
        if base is not None:
            results[name] = pair_changes(
                model.features, *base, window.correlation, baseline=name, **gates
            )
    if not any(results.values()) and drift.until_history == "reference":
        results[REFERENCE] = pair_changes(
            model.features, *reference, window.correlation, baseline=REFERENCE, **gates
        )
    by_pair: dict[tuple[str, str], list[PairChange]] = {}
    for changes in results.values():
        for c in changes:
            by_pair.setdefault(c.features, []).append(c)
    if not by_pair:
        return None
    pairs = []
    for judged in by_pair.values():
        shown = max(judged, key=lambda c: c.p_beyond)
        shown.flagged = all(c.flagged for c in judged)
        pairs.append(shown)
    flagged = sorted((p for p in pairs if p.flagged), key=lambda p: -abs(p.change))
    judged_by = [name for name, changes in results.items() if changes]
    return CorrelationFinding(
        pairs,
        flagged,
        judged_by,
        policy.correlation_p_value,
        policy.min_correlation_change,
        model.chosen_by,
    )


def _pair(p: PairChange) -> dict[str, Any]:
    return {
        "features": list(p.features),
        "reference": round(p.reference, 6),
        "window": round(p.window, 6),
        "change": round(p.change, 6),
        "z": round(p.z, 6),
        "p_value": p.p_value,
        "p_beyond_min_change": p.p_beyond,
        "sample_size": p.sample_size,
        "reference_size": p.reference_size,
        "baseline": p.baseline,
    }


def _drifting(feature_drift: Mapping[str, FeatureDrift]) -> list[dict[str, Any]]:
    ranked = sorted((d for d in feature_drift.values() if d.drifted), key=lambda d: -d.value)
    return [{"feature": d.feature, d.statistic: round(d.value, 6)} for d in ranked]


def reconstruction_alert(
    profile: ReferenceProfile,
    window: WindowSketch,
    d: FeatureDrift,
    feature_drift: Mapping[str, FeatureDrift],
    now: float,
) -> Alert:
    mv = profile.multivariate
    assert mv is not None and mv.reconstruction is not None
    ref = mv.reconstruction_error
    assert ref is not None
    model = mv.reconstruction
    drifting = _drifting(feature_drift)
    policy = profile.config.drift
    against = " and ".join(d.judged_by) or "reference"
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, ALERT_TYPE, RECONSTRUCTION_ERROR, window.start),
        type=ALERT_TYPE,
        severity="critical" if d.value >= d.threshold * policy.critical_factor else "warning",
        feature=RECONSTRUCTION_ERROR,
        statistic=d.statistic,
        value=d.value,
        threshold=d.threshold,
        sample_size=d.sample_size,
        reference_size=ref.count,
        message=(
            f"{profile.model_id}: the data reconstruction error of {len(model.features)} "
            f"numeric features shifted in window {_span(profile, window)} against the "
            f"{against}: {d.statistic} {d.value:.3f} >= {d.threshold:g} "
            f"(mean {d.statistics.get('mean', float('nan')):.3f}, reference "
            f"{ref.mean:.3f}; n={d.sample_size}, p={d.p_value:.2g}), none of them drifting "
            "on its own: how the features move together changed"
        ),
        context={
            "kind": RECONSTRUCTION_ERROR,
            "p_value": d.p_value,
            "statistics": {k: v for k, v in d.statistics.items() if v == v},
            "judged_by": d.judged_by,
            "baselines": {
                b: {k: v for k, v in r.items() if v == v} for b, r in d.baselines.items()
            },
            "reference": {"mean": ref.mean, "std": ref.std, "max": ref.max},
            "features": model.features,
            "components": len(model.components),
            "explained_variance": model.explained_variance,
            "drifting_features": drifting,
            "route": "ml-team",
        },
    )


def correlation_alert(
    profile: ReferenceProfile,
    window: WindowSketch,
    finding: CorrelationFinding,
    feature_drift: Mapping[str, FeatureDrift],
    now: float,
) -> Alert:
    top = finding.flagged[0]
    a, b = top.features
    more = len(finding.flagged) - 1
    critical = abs(top.change) >= finding.min_change * profile.config.drift.critical_factor
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, ALERT_TYPE, CORRELATION, window.start),
        type=ALERT_TYPE,
        severity="critical" if critical else "warning",
        feature=pair_name(a, b),
        statistic="correlation_change",
        value=abs(top.change),
        threshold=finding.min_change,
        sample_size=top.sample_size,
        reference_size=top.reference_size,
        message=(
            f"{profile.model_id}: the correlation of '{a}' and '{b}' changed from "
            f"{top.reference:+.2f} ({top.baseline}) to {top.window:+.2f} in window "
            f"{_span(profile, window)} (Fisher z {top.z:+.1f}; beyond ±{finding.min_change:g}: "
            f"p={top.p_beyond:.2g}, n={top.sample_size})"
            + (f"; {more} more pair(s) changed" if more else "")
            + f"; {len(finding.pairs)} pairs judged"
        ),
        context={
            "kind": CORRELATION,
            "features": [a, b],
            "p_value": top.p_beyond,
            "pairs": [_pair(p) for p in finding.flagged],
            "pairs_judged": len(finding.pairs),
            "alpha": finding.alpha,
            "correction": "holm",
            "judged_by": finding.judged_by,
            "chosen_by": finding.chosen_by,
            "drifting_features": _drifting(feature_drift),
            "route": "ml-team",
        },
    )


def explained_by(
    profile: ReferenceProfile, window: WindowSketch, feature_drift: Mapping[str, FeatureDrift]
) -> list[str]:
    """The reconstruction model's features that changed on their own in the window:
    drifted, or missing more often than in the reference by the quality policy's
    `missing_increase` (a dropped or renamed feature among them). Missing values are
    imputed with the reference mean, so the error then tells of the imputation."""
    mv = profile.multivariate
    model = mv.reconstruction if mv is not None else None
    if model is None or not window.count:
        return []
    increase = profile.config.quality.missing_increase
    out = []
    for f in model.features:
        ref, sk = profile.features[f], window.numeric.get(f)
        reference_missing = ref.missing / max(ref.count + ref.missing, 1)
        more_missing = sk is not None and sk.missing / window.count - reference_missing >= increase
        if more_missing or (f in feature_drift and feature_drift[f].drifted):
            out.append(f)
    return out


def multivariate_conditions(
    profile: ReferenceProfile,
    window: WindowSketch,
    feature_drift: Mapping[str, FeatureDrift],
    now: float,
    baselines: Mapping[str, WindowSketch] | None = None,
) -> tuple[list[tuple[Alert, float]], list[str]]:
    """The multivariate-drift conditions that show in the window (alert, how bad: the
    effect in thresholds), and the condition keys that were checked in it."""
    present: list[tuple[Alert, float]] = []
    checked: list[str] = []
    d = reconstruction_drift(profile, window, baselines, ks_p=False)
    judged = d is not None and d.judged_by and d.sample_size >= profile.config.drift.min_samples
    if d is not None and judged and not explained_by(profile, window, feature_drift):
        checked.append(condition(RECONSTRUCTION_ERROR))
        if d.drifted:
            alert = reconstruction_alert(profile, window, d, feature_drift, now)
            present.append((alert, d.value / d.threshold))
    finding = correlation_drift(profile, window, baselines)
    if finding is not None:
        checked.append(condition(CORRELATION))
        if finding.flagged:
            alert = correlation_alert(profile, window, finding, feature_drift, now)
            present.append((alert, abs(finding.flagged[0].change) / finding.min_change))
    return present, checked


def multivariate_report(
    profile: ReferenceProfile,
    window: WindowSketch,
    feature_drift: Mapping[str, FeatureDrift],
    baselines: Mapping[str, WindowSketch] | None = None,
) -> dict[str, Any] | None:
    """What `inspect --json` shows of a window's multivariate drift; None without the
    model. `explained_by`: the features changed on their own (drifted, or missing far
    more often) that the reconstruction error moves with (no alert of its own then)."""
    if profile.multivariate is None:
        return None

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and v != v else v

    out: dict[str, Any] = {"reconstruction_error": None, "correlation": None}
    d = reconstruction_drift(profile, window, baselines)
    if d is not None:
        out["reconstruction_error"] = {
            "sample_size": d.sample_size,
            "missing": d.missing,
            "drifted": d.drifted,
            "statistic": d.statistic,
            "value": clean(d.value),
            "threshold": d.threshold,
            "p_value": clean(d.p_value),
            "judged_by": d.judged_by,
            "explained_by": explained_by(profile, window, feature_drift),
            **{k: clean(v) for k, v in d.statistics.items()},
        }
    finding = correlation_drift(profile, window, baselines)
    if finding is not None:
        out["correlation"] = {
            "pairs_judged": len(finding.pairs),
            "changed": [_pair(p) for p in finding.flagged],
            "pairs": [{**_pair(p), "flagged": p.flagged} for p in finding.pairs],
            "chosen_by": finding.chosen_by,
            "judged_by": finding.judged_by,
        }
    return out
