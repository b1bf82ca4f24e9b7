"""Alerts: what one window shows, worded for the person who has to act on it.

Each function here turns a monitor's verdict on one window into the alert that window
would raise; `episodes` decides which of them are published (the first window of an
episode, a rise in severity, the end). The ids given here name the finding in its
window; the published alerts carry ids of their episode's transitions instead.
`condition_key` names the condition an alert is about, the unit of an episode.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from streamdrift.champion import ChallengerResult
from streamdrift.comparison import Outcome
from streamdrift.estimation import EstimationFinding
from streamdrift.events import Alert
from streamdrift.fairness import BoundCrossing, Estimate, FairnessReport
from streamdrift.group_fairness import FairnessFinding
from streamdrift.monitors import (
    ERROR_METRICS,
    RELATIVE_METRICS,
    SEQUENTIAL,
    FeatureDrift,
    PerformanceFinding,
    QualityFinding,
    VolumeFinding,
    importance_weighted_drift,
    outlier_share,
    rank_drifting,
    window_performance,
)
from streamdrift.performance import segment_metrics
from streamdrift.profile import LABEL, PREDICTION, ReferenceProfile
from streamdrift.sketch import WindowSketch


def alert_id(model: str, revision: int, alert_type: str, feature: str, window_start: int) -> str:
    """The same finding always gets the same id (so a re-evaluation or a second worker
    cannot raise it twice); a new reference (revision) is a new finding."""
    digest = hashlib.sha256(f"{model}|{revision}|{alert_type}|{feature}|{window_start}".encode())
    return digest.hexdigest()[:32]


def _profile_alert_id(
    profile: ReferenceProfile, alert_type: str, feature: str, window_start: int
) -> str:
    return alert_id(profile.model_id, profile.revision, alert_type, feature, window_start)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


_OUTPUT_ALERTS = {PREDICTION: "prediction_drift", LABEL: "label_drift"}


def output_alerts(
    profile: ReferenceProfile,
    window: WindowSketch,
    drift: dict[str, FeatureDrift],
    feature_drift: dict[str, FeatureDrift],
    now: float,
) -> list[Alert]:
    """`prediction_drift` / `label_drift` alerts, named after the model's columns."""
    alerts = []
    names = {
        PREDICTION: profile.prediction_column or "prediction",
        LABEL: profile.label_column or "label",
    }
    drifting = sorted((d for d in feature_drift.values() if d.drifted), key=lambda d: -d.value)
    for key, d in drift.items():
        if not d.drifted:
            continue
        kind = _OUTPUT_ALERTS[key]
        ref = profile.outputs()[key]
        what = "predictions" if key == PREDICTION else "labels (joined so far)"
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=_profile_alert_id(profile, kind, names[key], window.start),
                type=kind,  # type: ignore[arg-type]
                severity=_severity(profile, d),
                feature=names[key],
                statistic=d.statistic,
                value=d.value,
                threshold=d.threshold,
                sample_size=d.sample_size,
                reference_size=ref.count,
                message=(
                    f"{profile.model_id}: the distribution of {what} shifted in window "
                    f"{_span(profile, window)}: "
                    f"{d.statistic} {d.value:.3f} >= {d.threshold:g} (n={d.sample_size})"
                ),
                context={
                    "p_value": d.p_value,
                    "statistics": _finite(d.statistics),
                    "drifting_features": [
                        {"feature": f.feature, f.statistic: round(f.value, 6)} for f in drifting
                    ],
                    "route": "ml-team",
                },
            )
        )
    return alerts


def performance_alert(
    profile: ReferenceProfile,
    window: WindowSketch,
    finding: PerformanceFinding,
    feature_drift: dict[str, FeatureDrift],
    now: float,
    quality: list[QualityFinding] | None = None,
    outputs: dict[str, FeatureDrift] | None = None,
) -> Alert | None:
    """A `performance_degradation` alert when the finding says so, with its likely
    cause (see `likely_cause`) and the evidence for it. The alert is the headline
    metric's condition (`feature`, one episode whichever metric fires); `statistic`,
    `value` and the message are the metric that fired, and the context lists every
    metric tested."""
    if not finding.degraded or finding.worst is None:
        return None
    metric = finding.fired or finding.metric
    base = finding.fired_baselines[finding.worst]
    sequential = finding.worst == SEQUENTIAL
    if sequential:  # the labelled pairs since the scan's cut, not the window's
        value = base["value"]
    else:
        value = finding.value if metric == finding.metric else finding.metrics[metric]
    policy = profile.config.performance
    minimum = policy.minimum(metric)
    if metric not in ERROR_METRICS:
        threshold = base["baseline"] - minimum
    elif metric in RELATIVE_METRICS:
        threshold = base["baseline"] * (1 + minimum)
    else:  # calibration error: absolute, past the window's sampling bias
        threshold = base["baseline"] + minimum + base.get("bias", 0.0)
    drifting = sorted((d for d in feature_drift.values() if d.drifted), key=lambda d: -d.value)
    cause, evidence = likely_cause(profile, feature_drift, quality or [], outputs or {})
    if sequential:
        since = _utc(base["since"])
        found = (
            f"{profile.model_id}: {metric} {value:.3f} on the {int(base['after_labelled'])} "
            f"labelled predictions since {since:%Y-%m-%d %H:%M} UTC against "
            f"{base['baseline']:.3f} on the {int(base['labelled'])} before (sequential scan: "
            f"log-likelihood ratio {base['statistic']:.1f} >= {base['threshold']:.1f})"
        )
        labelled = int(base["after_labelled"])
    else:
        found = (
            f"{profile.model_id}: {metric} {value:.3f} in window "
            f"{_span(profile, window)} against "
            f"{base['baseline']:.3f} ({finding.worst}), {finding.labelled} labels, "
            f"p={base['p_value']:.2g}"
        )
        labelled = finding.labelled
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(
            profile,
            "performance_degradation",
            finding.metric,
            window.start,
        ),
        type="performance_degradation",
        severity="critical" if base["drop"] >= 2 * minimum else "warning",
        feature=finding.metric,
        statistic=metric,
        value=value,
        threshold=threshold,
        sample_size=labelled,
        reference_size=int(profile.reference_performance.get("labelled", 0)),
        message=f"{found}; likely cause: {_CAUSE_TEXT[cause]}",
        context={
            "metric": metric,
            "headline": finding.metric,
            "baseline": finding.worst,
            "detector": "sequential" if sequential else "window",
            "baselines": {k: _finite(v) for k, v in finding.fired_baselines.items()},
            "tests": {
                m: {k: _finite(v) for k, v in tests.items()} for m, tests in finding.tests.items()
            },
            "alpha": finding.alpha,
            "labelled": finding.labelled,
            "label_coverage": finding.metrics.get("label_coverage"),
            "detectors": finding.detectors,
            "cause": cause,
            "evidence": evidence,
            "drifting_features": [
                {"feature": d.feature, d.statistic: round(d.value, 6)} for d in drifting
            ],
            "metrics": _finite({k: v for k, v in finding.metrics.items() if "[" not in k}),
            "worst_segments": _worst_segments(profile, window),
            "route": "ml-team",
        },
    )


def estimated_performance_alert(
    profile: ReferenceProfile,
    window: WindowSketch,
    finding: EstimationFinding,
    feature_drift: dict[str, FeatureDrift],
    now: float,
) -> Alert | None:
    """An `estimated_performance_degradation` alert when the window's estimated metric
    (CBPE, from the scores alone) fell below the reference's beyond its band: the inputs
    moved to where the model does worse, before any label says so. The drifting
    features are where they moved; the realized value, once labels joined, is beside."""
    if not finding.degraded:
        return None
    policy = profile.config.estimation
    m, est = finding.metric, finding.estimate
    realized = window_performance(profile, window)
    drifting = sorted((d for d in feature_drift.values() if d.drifted), key=lambda d: -d.value)
    moved = ", ".join(d.feature for d in drifting[:3])
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, "estimated_performance_degradation", m, window.start),
        type="estimated_performance_degradation",
        severity="critical" if finding.drop >= 2 * policy.min_degradation else "warning",
        feature=m,
        statistic=f"estimated_{m}",
        value=est.value,
        threshold=finding.threshold,
        sample_size=finding.predictions,
        reference_size=profile.calibration.rows if profile.calibration else profile.rows,
        message=(
            f"{profile.model_id}: estimated {m} {est.value:.3f} "
            f"[{est.lower:.3f}, {est.upper:.3f}] in window {_span(profile, window)} against "
            f"{finding.reference:.3f} on the reference, from the scores of "
            f"{finding.predictions:,} predictions (no labels needed)"
            + (f"; inputs drifting: {moved}" if moved else "")
        ),
        context={
            "metric": m,
            "method": "cbpe",
            "estimate": est.as_dict(),
            "reference": {
                "estimated": finding.reference,
                "realized": finding.reference_realized,
                "calibrated": bool(profile.calibration and profile.calibration.calibrated),
            },
            "drop": finding.drop,
            "z": finding.z,
            "band": policy.band,
            "estimates": {k: e.as_dict() for k, e in finding.estimates.items()},
            "realized": _finite({k: v for k, v in realized.items() if k in finding.estimates}),
            "labelled": int(realized.get("labelled", 0)),
            "drifting_features": [
                {"feature": d.feature, d.statistic: round(d.value, 6)} for d in drifting
            ],
            "route": "ml-team",
        },
    )


_CAUSE_TEXT = {
    "output_problem": "the model's outputs are broken (see evidence)",
    "data_quality": "broken input data in the same window (see evidence)",
    "data_drift": "data drift: inputs shifted in the same window",
    "concept_drift": "concept drift: inputs, data quality and outputs look as usual",
    "unknown": "unknown: too few events to check the inputs",
}

#: quality findings that say the model's outputs, not its inputs, are wrong
_OUTPUT_KINDS = {"invalid_output", "unseen_class"}


def likely_cause(
    profile: ReferenceProfile,
    feature_drift: dict[str, FeatureDrift],
    quality: list[QualityFinding],
    outputs: dict[str, FeatureDrift],
) -> tuple[str, list[str]]:
    """Why a window's performance dropped, judged on the same window before blaming
    concept drift: outputs no model should give (`output_problem`), broken input data
    (`data_quality`), shifted inputs (`data_drift`); `concept_drift` only when all three
    were checked and look normal, `unknown` when the inputs could not be checked. The
    evidence lists every finding that points somewhere, the chosen cause's first."""
    shown_prediction = profile.prediction_column or "prediction"
    output_findings = [
        f for f in quality if f.kind in _OUTPUT_KINDS or f.feature == shown_prediction
    ]
    input_findings = [f for f in quality if f not in output_findings]
    drifting = sorted((d for d in feature_drift.values() if d.drifted), key=lambda d: -d.value)
    evidence: dict[str, list[str]] = {
        "output_problem": [f"{f.kind} in '{f.feature}': {f.detail}" for f in output_findings],
        "data_quality": [f"{f.kind} in '{f.feature}': {f.detail}" for f in input_findings],
        "data_drift": [f"'{d.feature}' drifted: {d.statistic} {d.value:.3f}" for d in drifting],
    }
    prediction = outputs.get(PREDICTION)
    if prediction is not None and prediction.drifted:
        line = f"prediction distribution shifted: {prediction.statistic} {prediction.value:.3f}"
        evidence["data_drift" if drifting else "output_problem"].append(line)
    for cause in ("output_problem", "data_quality", "data_drift"):
        if evidence[cause]:
            ordered = evidence[cause] + [
                e for c, lines in evidence.items() if c != cause for e in lines
            ]
            return cause, ordered
    checked = [
        d for d in feature_drift.values() if d.sample_size >= profile.config.drift.min_samples
    ]
    if len(checked) < max(1, len(profile.features) // 2):
        return "unknown", [
            f"{len(checked)} of {len(profile.features)} features had enough events to check"
        ]
    return "concept_drift", [
        f"{len(checked)} features checked: none drifted; no data-quality or output problem"
    ]


#: who acts on which data-quality problem
_QUALITY_ROUTE = {"invalid_output": "ml-team", "unseen_class": "ml-team"}


def quality_alerts(
    profile: ReferenceProfile,
    window: WindowSketch,
    findings: list[QualityFinding],
    now: float,
) -> list[Alert]:
    """One `data_quality` alert per problem (kind and feature) in the window: how many
    events, and an example; who acts on it (`route`) depends on the kind."""
    alerts = []
    for f in findings:
        key = f"{f.kind}:{f.feature}"
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=_profile_alert_id(profile, "data_quality", key, window.start),
                type="data_quality",
                severity="critical"
                if f.kind.startswith("feature_") or f.kind in ("type_change", "invalid_output")
                else "warning",
                feature=f.feature,
                statistic=f.kind,
                value=f.share,
                threshold=f.threshold,
                sample_size=window.count,
                reference_size=profile.rows,
                message=(
                    f"{profile.model_id}: {f.kind.replace('_', ' ')} in '{f.feature}' in "
                    f"window {_utc(window.start):%Y-%m-%d %H:%M} UTC: {f.detail}"
                ),
                context={
                    "kind": f.kind,
                    "events": f.events,
                    "example": f.example,
                    "detail": f.detail,
                    "route": _QUALITY_ROUTE.get(f.kind, "data-team"),
                },
            )
        )
    return alerts


def outlier_event_alerts(
    profile: ReferenceProfile, window: WindowSketch, now: float
) -> list[Alert]:
    """One alert per outlying event recorded for the window (at most
    `outlier_alerts_per_window`), naming the prediction and what makes it extreme.
    Published only with `outlier_alerts: "events"`: at the calibrated rate, a healthy
    stream has outliers every window, and single events are evidence to look at
    (`inspect`), not pages."""
    model = profile.outliers
    if model is None or window.count == 0:
        return []
    alerts = []
    for ex in window.outlier_examples:
        top = ex["features"][0]["feature"] if ex["features"] else "*"
        aid = _profile_alert_id(profile, "outlier", ex["prediction_id"], window.start)
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=aid,
                episode_id=aid,
                since=_utc(window.start),
                type="outlier",
                statistic="robust_mahalanobis",
                threshold=model.threshold,
                reference_size=profile.rows,
                severity="info",
                feature=top,
                value=ex["score"],
                sample_size=1,
                message=(
                    f"{profile.model_id}: prediction {ex['prediction_id']} is an outlier "
                    f"(score {ex['score']:.2f} > {model.threshold:.2f}), mostly through "
                    + ", ".join(f"{f['feature']} (z={f['z']:+.1f})" for f in ex["features"])
                ),
                context={
                    "prediction_id": ex["prediction_id"],
                    "features": ex["features"],
                    "rate": model.expected_rate,
                    "route": "ml-team",
                },
            )
        )
    return alerts


def outlier_share_alert(
    profile: ReferenceProfile, window: WindowSketch, now: float
) -> Alert | None:
    """The window's outlier share when significantly above the calibrated rate
    (binomial test): a shifted segment or an attack, not a stray event."""
    model = profile.outliers
    share = outlier_share(profile, window)
    if model is None or share is None:
        return None
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, "outlier", "__share__", window.start),
        type="outlier",
        severity="critical" if share["share"] >= 10 * model.expected_rate else "warning",
        feature="*",
        statistic="outlier_share",
        value=share["share"],
        threshold=model.expected_rate,
        sample_size=window.count,
        reference_size=profile.rows,
        message=(
            f"{profile.model_id}: {window.outliers} outliers in "
            f"{window.count} events ({share['share']:.2%}, expected "
            f"{model.expected_rate:.2%}, p={share['p_value']:.2g}) in window "
            f"{_span(profile, window)}"
        ),
        context={
            **share,
            "outliers": window.outliers,
            "examples": [
                {"prediction_id": ex["prediction_id"], "score": ex["score"]}
                for ex in window.outlier_examples
            ],
            "route": "ml-team",
        },
    )


def volume_alert(
    profile: ReferenceProfile, window: WindowSketch, finding: VolumeFinding, now: float
) -> Alert:
    """Traffic collapsed or surged: a broken upstream, a lost partition, a retry storm.
    For the people who run the pipes (route ops)."""
    low = finding.ratio < 1
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, "volume", "events", window.start),
        type="volume",
        severity="critical"
        if finding.ratio <= finding.min_ratio / 2 or finding.ratio >= 2 * finding.max_ratio
        else "warning",
        feature="events",
        statistic="events_ratio",
        value=finding.ratio,
        threshold=finding.min_ratio if low else finding.max_ratio,
        sample_size=window.count,
        reference_size=int(finding.expected),
        message=(
            f"{profile.model_id}: {window.count:,} events in window "
            f"{_span(profile, window)}, expected about "
            f"{finding.expected:,.0f} ({finding.ratio:.0%}; {finding.baseline} baseline of "
            f"{finding.history} windows, p={finding.p_value:.2g})"
        ),
        context={
            "expected": finding.expected,
            "ratio": finding.ratio,
            "p_value": finding.p_value,
            "baseline": finding.baseline,
            "history_windows": finding.history,
            "direction": "drop" if low else "surge",
            "route": "ops",
        },
    )


def freshness_alert(
    profile: ReferenceProfile, last_seen: float, silence: float, now: float
) -> Alert:
    """The model has sent nothing for `silence` seconds: its service is down, or its
    events go somewhere else. Its window is the one the last event was applied in."""
    width = profile.config.window_seconds
    start = int(last_seen // width * width)
    quiet = now - last_seen
    return Alert(
        alert_id=_profile_alert_id(profile, "freshness", "events", start),
        type="freshness",
        severity="critical",
        model_id=profile.model_id,
        model_version=None,
        feature="events",
        statistic="seconds_since_last_event",
        value=quiet,
        threshold=silence,
        window_start=_utc(start),
        window_end=_utc(start + width),
        sample_size=0,
        reference_size=0,
        created_at=_utc(now),
        message=(
            f"{profile.model_id}: no events for {quiet / 60:.0f} min (since "
            f"{_utc(last_seen):%Y-%m-%d %H:%M} UTC; allowed {silence / 60:.0f} min)"
        ),
        context={"last_event_at": _utc(last_seen).isoformat(), "route": "ops"},
    )


def condition_key(alert: Alert) -> str:
    """The condition an alert is about: the unit of an episode. A data-quality problem
    is its kind in its column; an outlier share is one condition per model. A slice's
    own condition ends in "@[<slice>]" (see `conditions._add_slices`)."""
    if alert.type == "data_quality":
        key = f"data_quality:{alert.statistic}:{alert.feature}"
    elif alert.type == "outlier":
        key = "outlier:share"
    elif alert.type == "multivariate_drift":  # reconstruction_error, or correlation (any pair)
        key = f"multivariate_drift:{alert.context.get('kind', alert.feature)}"
    else:
        key = f"{alert.type}:{alert.feature}"
    where = alert.context.get("slice")
    return f"{key}@[{where}]" if where else key


def _worst_segments(profile: ReferenceProfile, window: WindowSketch) -> list[dict]:
    """The segments that weigh most in the window's poor performance (root cause: where
    to look), by impact: their share of the labelled pairs times how much worse than the
    whole window they do (accuracy lower, MAE higher). Segment keys declared as slices
    get the same ranking on their full metrics (`conditions._add_slices`)."""
    if window.performance is None:
        return []
    floor = profile.config.performance.min_labels // 4
    metrics = segment_metrics(window.performance, profile.task)
    key = "mae" if profile.task == "regression" else "accuracy"
    total = sum(v["labelled"] for v in metrics.values()) or 1
    whole = sum(v[key] * v["labelled"] for v in metrics.values()) / total if metrics else 0.0
    rows = []
    for k, v in metrics.items():
        if v["labelled"] < floor:
            continue
        gap = v[key] - whole if profile.task == "regression" else whole - v[key]
        share = v["labelled"] / window.performance.labelled
        rows.append({"segment": k, **v, "gap": gap, "impact": share * gap})
    rows.sort(key=lambda r: -r["impact"])
    return rows[:5]


def _span(profile: ReferenceProfile, window: WindowSketch) -> str:
    """How a message names its window: `2026-11-22 10:00–11:00 UTC`."""
    end = window.start + profile.config.window_seconds
    return f"{_utc(window.start):%Y-%m-%d %H:%M}–{_utc(end):%H:%M} UTC"


def _window_fields(profile: ReferenceProfile, window: WindowSketch, now: float) -> dict:
    """What every alert says of where it comes from: model, version, window, time."""
    return {
        "model_id": profile.model_id,
        "model_version": _version(window),
        "window_start": _utc(window.start),
        "window_end": _utc(window.start + profile.config.window_seconds),
        "created_at": _utc(now),
    }


def _severity(profile: ReferenceProfile, d: FeatureDrift) -> str:
    """Critical at `critical_factor` times the threshold that judged: the column's own,
    which differs by statistic and kind."""
    factor = profile.config.drift.critical_factor
    return "critical" if d.value >= d.threshold * factor else "warning"


def _version(window: WindowSketch) -> str | None:
    return window.versions.most_common(1)[0][0] if window.versions else None


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if isinstance(v, int | float) and v == v}


def drift_alerts(
    profile: ReferenceProfile,
    window: WindowSketch,
    drift: dict[str, FeatureDrift],
    now: float,
) -> list[Alert]:
    """One `data_drift` alert per drifted feature of the window, the most important
    drift first (importance × drift, or drift alone); each names the window's other
    drifting features and the baselines that judged it, so on-call sees the whole
    picture."""
    ranked = rank_drifting(profile, drift)
    if not ranked:
        return []
    judged = [d for d in drift.values() if d.enabled]
    alerts = []
    for entry in ranked:
        d = drift[entry["feature"]]
        ref = profile.features[d.feature]
        policy = profile.config.feature_policy(d.feature)
        severity = "critical" if d.value >= d.threshold * policy.critical_factor else "warning"
        context: dict[str, Any] = {
            "kind": d.kind,
            "p_value": d.p_value,
            "statistics": {k: v for k, v in d.statistics.items() if v == v},  # drop NaN
            "judged_by": d.judged_by,
            "baselines": {b: _finite(dict(r)) for b, r in d.baselines.items()},
            "drifting_features": ranked,
            "drifting_share": round(len(ranked) / max(len(judged), 1), 4),
            "importance": entry["importance"],
            "missing": d.missing,
            "reference": {"source": profile.source, "revision": profile.revision},
            "route": "ml-team",
        }
        if ref.kind == "numeric":
            context["reference"].update(mean=ref.mean, std=ref.std, min=ref.min, max=ref.max)
        against = " and ".join(d.judged_by) or "reference"
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=_profile_alert_id(profile, "data_drift", d.feature, window.start),
                type="data_drift",
                severity=severity,
                feature=d.feature,
                statistic=d.statistic,
                value=d.value,
                threshold=d.threshold,
                sample_size=d.sample_size,
                reference_size=ref.count,
                message=(
                    f"{profile.model_id}: feature '{d.feature}' drifted in window "
                    f"{_span(profile, window)} against the "
                    f"{against}: {d.statistic} {d.value:.3f} >= {d.threshold:g} "
                    f"(n={d.sample_size}, p={d.p_value:.2g}); "
                    f"{len(ranked)} of {len(judged)} features drifting"
                ),
                context=context,
            )
        )
    weighted = importance_weighted_drift(profile, drift)
    if weighted is not None and weighted["drifted"]:
        alerts.append(_weighted_drift_alert(profile, window, weighted, now))
    return alerts


def _weighted_drift_alert(
    profile: ReferenceProfile, window: WindowSketch, weighted: dict[str, Any], now: float
) -> Alert:
    """The model-level figure: many small drifts in important features can matter more
    than one large drift in a feature the model barely uses."""
    policy = profile.config.drift
    top = ", ".join(f"{t['feature']}" for t in weighted.get("top", []))
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, "data_drift", MODEL_LEVEL, window.start),
        type="data_drift",
        severity="critical"
        if weighted["value"] >= weighted["threshold"] * policy.critical_factor
        else "warning",
        feature=MODEL_LEVEL,
        statistic="importance_weighted_drift",
        value=weighted["value"],
        threshold=weighted["threshold"],
        sample_size=window.count,
        reference_size=profile.rows,
        message=(
            f"{profile.model_id}: importance-weighted drift {weighted['value']:.3f} >= "
            f"{weighted['threshold']:g} in window {_span(profile, window)}, "
            f"mostly through {top or 'no single feature'}"
        ),
        context={**_finite_any(weighted), "route": "ml-team"},
    )


def fairness_alert(
    profile: ReferenceProfile, window: WindowSketch, finding: FairnessFinding, now: float
) -> Alert | None:
    """A `fairness` alert when a group crosses a configured bound with significance:
    the crossing furthest beyond its bound, with every group's rates and intervals as
    evidence (route ml-team)."""
    if not finding.crossings:
        return None

    def beyond(c: BoundCrossing) -> float:
        if c.metric == "disparate_impact":
            return c.limit / max(c.estimate.high, 1e-12)
        return abs(c.estimate.value) / max(c.limit, 1e-12)

    worst = max(finding.crossings, key=beyond)
    report = finding.report
    size = report.groups[worst.group].size
    shown = "selection-rate ratio" if worst.metric == "disparate_impact" else worst.decided_by
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, "fairness", finding.key, window.start),
        type="fairness",
        severity="critical" if beyond(worst) >= 1.25 else "warning",
        feature=finding.key,
        statistic=worst.metric,
        value=worst.estimate.value,
        threshold=worst.limit,
        sample_size=size,
        reference_size=report.groups[worst.reference].size,
        message=(
            f"{profile.model_id}: {finding.key}={worst.group} against "
            f"{finding.key}={worst.reference} in window {_span(profile, window)}: "
            f"{shown} {worst.estimate.value:.3f} "
            f"({report.confidence:.0%} CI {worst.estimate.low:.3f}–{worst.estimate.high:.3f}), "
            f"bound {worst.limit:g}, {size} labelled"
        ),
        context={
            "sensitive_key": finding.key,
            "group": worst.group,
            "reference_group": worst.reference,
            "decided_by": worst.decided_by,
            "interval": [worst.estimate.low, worst.estimate.high],
            "crossings": [
                {
                    "group": c.group,
                    "metric": c.metric,
                    "decided_by": c.decided_by,
                    "value": c.estimate.value,
                    "interval": [c.estimate.low, c.estimate.high],
                    "limit": c.limit,
                }
                for c in finding.crossings
            ],
            "groups": fairness_groups(report),
            "route": "ml-team",
        },
    )


def fairness_groups(report: FairnessReport) -> dict[str, dict[str, Any]]:
    """Each group's rates with their intervals, as alerts and `inspect` show them."""

    def est(e: Estimate) -> list[float | None]:
        return [None if x != x else round(x, 6) for x in (e.value, e.low, e.high)]

    out: dict[str, dict[str, Any]] = {}
    for name, g in report.groups.items():
        row: dict[str, Any] = {
            "size": g.size,
            "small": g.small,
            "selection_rate": est(g.selection_rate),
            "true_positive_rate": est(g.true_positive_rate),
            "false_positive_rate": est(g.false_positive_rate),
            "precision": est(g.precision),
        }
        d = g.versus_reference
        if d is not None:
            row["disparate_impact"] = est(d.disparate_impact)
            row["demographic_parity_difference"] = est(d.demographic_parity_difference)
            row["equal_opportunity_difference"] = est(d.equal_opportunity_difference)
            row["equalized_odds_difference"] = (
                None
                if d.equalized_odds_difference != d.equalized_odds_difference
                else round(d.equalized_odds_difference, 6)
            )
        out[name] = row
    return out


def challenger_alert(
    profile: ReferenceProfile, window: WindowSketch, r: ChallengerResult, now: float
) -> Alert | None:
    """A `challenger_comparison` alert when a challenger is significantly better or worse
    than the champion on the same labelled ids (route ml-team): worse is a warning (the
    challenger must not be promoted), better is news (severity info)."""
    if r.outcome not in (Outcome.BETTER, Outcome.WORSE):
        return None
    worse = r.outcome is Outcome.WORSE
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, "challenger_comparison", r.challenger, window.start),
        type="challenger_comparison",
        severity="warning" if worse else "info",
        feature=r.challenger,
        statistic=r.metric,
        value=r.challenger_value,
        threshold=r.champion_value,
        sample_size=r.pairs,
        reference_size=r.pairs,
        message=(
            f"{profile.model_id}: challenger {r.challenger} is significantly "
            f"{r.outcome.value} than champion {r.champion} on {r.metric} in window "
            f"{_span(profile, window)}: {r.challenger_value:.3f} against "
            f"{r.champion_value:.3f} on {r.pairs} common labelled ids ({r.test}, "
            f"p={r.p_value:.2g})"
        ),
        context={**r.as_dict(), "route": "ml-team"},
    ).model_copy(update={"model_version": r.challenger})


#: the `feature` of model-level drift alerts
MODEL_LEVEL = "*"


def _finite_any(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not (isinstance(v, float) and v != v)}


def encode(alert: Alert) -> bytes:
    return orjson.dumps(alert.model_dump(mode="json"))


#: the model_id of system alerts that concern no model in particular
ALL_MODELS = "*"


def system_alert(
    kind: str,
    subject: str,
    message: str,
    context: dict[str, Any],
    model: str = ALL_MODELS,
    now: float | None = None,
) -> Alert:
    """A `system` alert for the people who run streamdrift (route: ops): Redis lost its
    state, a topic was created again. Its id is a digest of what happened, not of who
    saw it, so the workers of a fleet that all notice raise the same alert."""
    now = time.time() if now is None else now
    key = "|".join(str(context.get(k, "")) for k in sorted(context) if k != "worker")
    digest = hashlib.sha256(f"system|{kind}|{subject}|{key}".encode()).hexdigest()[:32]
    return Alert(
        alert_id=digest,
        episode_id=digest,  # one event, its own episode: nothing resolves it
        since=_utc(now),
        type="system",
        severity="critical",
        model_id=model,
        model_version=None,
        feature=subject,
        statistic=kind,
        value=1.0,
        threshold=0.0,
        window_start=_utc(now),
        window_end=_utc(now),
        sample_size=0,
        reference_size=0,
        message=message,
        created_at=_utc(now),
        context={**context, "route": "ops"},
    )
