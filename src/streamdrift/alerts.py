"""Alerts: from drift verdicts to events on the alerts topic, each raised once.

The alert_id is a digest of (model, type, feature, window start), so the same finding
always has the same id. Redis records each id before it is published (`claim_alert`);
a second evaluator, or the same one after a crash, finds the claim and raises nothing
new. A claim whose publisher died before the broker acknowledged it is re-sent with the
same id by the next evaluation, so an alert is never lost and never has two ids.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from streamdrift.events import Alert
from streamdrift.monitors import (
    ERROR_METRICS,
    FeatureDrift,
    PerformanceFinding,
    QualityFinding,
    outlier_share,
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
    end = window.start + profile.config.window_seconds
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
                severity=_severity(profile, d.value),
                feature=names[key],
                statistic=d.statistic,
                value=d.value,
                threshold=d.threshold,
                sample_size=d.sample_size,
                reference_size=ref.count,
                message=(
                    f"{profile.model_id}: the distribution of {what} shifted in window "
                    f"{_utc(window.start):%Y-%m-%d %H:%M}–{_utc(end):%H:%M} UTC: "
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
) -> Alert | None:
    """A `performance_degradation` alert when the finding says so. Its context says
    whether the window's inputs drifted too (data drift) or not (a hint of concept
    drift: the feature→label relation changed)."""
    if not finding.degraded or finding.worst is None:
        return None
    base = finding.baselines[finding.worst]
    policy = profile.config.performance
    lower_is_worse = finding.metric not in ERROR_METRICS
    threshold = (
        base["baseline"] - policy.min_degradation
        if lower_is_worse
        else (base["baseline"] * (1 + policy.min_degradation))
    )
    drifting = sorted((d for d in feature_drift.values() if d.drifted), key=lambda d: -d.value)
    cause = (
        "data drift: inputs shifted in the same window"
        if drifting
        else "concept drift suspected: no input drift in the same window"
    )
    end = window.start + profile.config.window_seconds
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(
            profile,
            "performance_degradation",
            finding.metric,
            window.start,
        ),
        type="performance_degradation",
        severity="critical" if base["drop"] >= 2 * policy.min_degradation else "warning",
        feature=finding.metric,
        statistic=finding.metric,
        value=finding.value,
        threshold=threshold,
        sample_size=finding.labelled,
        reference_size=int(profile.reference_performance.get("labelled", 0)),
        message=(
            f"{profile.model_id}: {finding.metric} {finding.value:.3f} in window "
            f"{_utc(window.start):%Y-%m-%d %H:%M}–{_utc(end):%H:%M} UTC against "
            f"{base['baseline']:.3f} ({finding.worst}), {finding.labelled} labels, "
            f"p={base['p_value']:.2g}; {cause}"
        ),
        context={
            "metric": finding.metric,
            "baseline": finding.worst,
            "baselines": {k: _finite(v) for k, v in finding.baselines.items()},
            "labelled": finding.labelled,
            "label_coverage": finding.metrics.get("label_coverage"),
            "detectors": finding.detectors,
            "cause": "data_drift" if drifting else "concept_drift",
            "drifting_features": [
                {"feature": d.feature, d.statistic: round(d.value, 6)} for d in drifting
            ],
            "metrics": _finite({k: v for k, v in finding.metrics.items() if "[" not in k}),
            "worst_segments": _worst_segments(profile, window),
            "route": "ml-team",
        },
    )


#: who acts on which data-quality problem
_QUALITY_ROUTE = {"invalid_output": "ml-team", "unseen_class": "ml-team"}


def quality_episode(
    seen: tuple[int, int] | None, start: int, width: int
) -> tuple[int, tuple[int, int] | None]:
    """Which episode a finding in window `start` belongs to: `(episode start, new state)`.

    `seen` is the finding's last episode, (first, last window). An episode goes on while
    the finding shows in adjacent windows, so a broken column raises one alert, not one
    an hour; a window without it in between (the problem was fixed) ends the episode,
    and the problem coming back starts a new one, with its own alert. A late window long
    before the current episode is an old episode of its own and leaves the state alone.
    """
    if seen is None:
        return start, (start, start)
    first, last = seen
    if first - width <= start <= last + width:
        return first, (first, max(last, start))
    if start < first:
        return start, None
    return start, (start, start)


def quality_alerts(
    profile: ReferenceProfile,
    window: WindowSketch,
    findings: list[QualityFinding],
    now: float,
    episodes: dict[str, tuple[int, int]],
) -> list[Alert]:
    """One `data_quality` alert per change (kind and feature) and episode (see
    `quality_episode`, which updates `episodes`): the same broken column does not page
    again every hour, but does page again if it breaks again after a fix. The alert says
    since when, how many events, and an example."""
    alerts = []
    for f in findings:
        key = f"{f.kind}:{f.feature}"
        since, state = quality_episode(
            episodes.get(key), window.start, profile.config.window_seconds
        )
        if state is not None:
            episodes[key] = state
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=_profile_alert_id(profile, "data_quality", key, since),
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
                    f"{profile.model_id}: {f.kind.replace('_', ' ')} in '{f.feature}' since "
                    f"{_utc(since):%Y-%m-%d %H:%M} UTC: {f.detail}"
                ),
                context={
                    "kind": f.kind,
                    "events": f.events,
                    "since": _utc(since).isoformat(),
                    "example": f.example,
                    "detail": f.detail,
                    "route": _QUALITY_ROUTE.get(f.kind, "data-team"),
                },
            )
        )
    return alerts


def outlier_alerts(profile: ReferenceProfile, window: WindowSketch, now: float) -> list[Alert]:
    """One alert per outlying event kept for the window (at most
    `outlier_alerts_per_window`: the rest are counted, not paged), naming the prediction
    and what makes it extreme; and one more when the window's outlier share is
    significantly above the configured rate (binomial test), a sign of a shifted segment
    or an attack rather than a stray event."""
    model = profile.outliers
    if model is None or window.count == 0:
        return []
    end = window.start + profile.config.window_seconds
    common = {
        "type": "outlier",
        "statistic": "robust_mahalanobis",
        "threshold": model.threshold,
        "reference_size": profile.rows,
    }
    alerts = []
    for ex in window.outlier_examples:
        top = ex["features"][0]["feature"] if ex["features"] else "*"
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=_profile_alert_id(profile, "outlier", ex["prediction_id"], window.start),
                severity="warning",
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
                    "rate": model.rate,
                    "route": "ml-team",
                },
                **common,
            )
        )
    share = outlier_share(profile, window)
    if share is not None:
        alerts.append(
            Alert(
                **_window_fields(profile, window, now),
                alert_id=_profile_alert_id(profile, "outlier", "__share__", window.start),
                severity="critical" if share["share"] >= 10 * model.rate else "warning",
                feature="*",
                value=share["share"],
                sample_size=window.count,
                message=(
                    f"{profile.model_id}: {window.outliers} outliers in "
                    f"{window.count} events ({share['share']:.2%}, expected "
                    f"{model.rate:.2%}, p={share['p_value']:.2g}) in window "
                    f"{_utc(window.start):%Y-%m-%d %H:%M}–{_utc(end):%H:%M} UTC"
                ),
                context={**share, "outliers": window.outliers, "route": "ml-team"},
                **{**common, "statistic": "outlier_share", "threshold": model.rate},
            )
        )
    return alerts


def _worst_segments(profile: ReferenceProfile, window: WindowSketch) -> list[dict]:
    """The slices where the model does worst in the window (root cause: where to look)."""
    if window.performance is None:
        return []
    floor = profile.config.performance.min_labels // 4
    rows = [
        {"segment": k, **v}
        for k, v in segment_metrics(window.performance, profile.task).items()
        if v["labelled"] >= floor
    ]
    key = "mae" if profile.task == "regression" else "accuracy"
    rows.sort(key=lambda r: r[key], reverse=profile.task == "regression")
    return rows[:5]


def _window_fields(profile: ReferenceProfile, window: WindowSketch, now: float) -> dict:
    """What every alert says of where it comes from: model, version, window, time."""
    return {
        "model_id": profile.model_id,
        "model_version": _version(window),
        "window_start": _utc(window.start),
        "window_end": _utc(window.start + profile.config.window_seconds),
        "created_at": _utc(now),
    }


def _severity(profile: ReferenceProfile, value: float) -> str:
    policy = profile.config.drift
    return "critical" if value >= policy.threshold * policy.critical_factor else "warning"


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
    """One `data_drift` alert per drifted feature of the window, most drifted first; each
    names the window's other drifting features so on-call sees the whole picture."""
    drifted = sorted((d for d in drift.values() if d.drifted), key=lambda d: -d.value)
    if not drifted:
        return []
    policy = profile.config.drift
    end = window.start + profile.config.window_seconds
    ranked = [{"feature": d.feature, d.statistic: round(d.value, 6)} for d in drifted]
    alerts = []
    for d in drifted:
        ref = profile.features[d.feature]
        severity = "critical" if d.value >= policy.threshold * policy.critical_factor else "warning"
        context: dict[str, Any] = {
            "kind": d.kind,
            "p_value": d.p_value,
            "statistics": {k: v for k, v in d.statistics.items() if v == v},  # drop NaN
            "drifting_features": ranked,
            "drifting_share": round(len(drifted) / max(len(drift), 1), 4),
            "missing": d.missing,
            "reference": {"source": profile.source, "revision": profile.revision},
            "route": "ml-team",
        }
        if ref.kind == "numeric":
            context["reference"].update(mean=ref.mean, std=ref.std, min=ref.min, max=ref.max)
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
                    f"{_utc(window.start):%Y-%m-%d %H:%M}–{_utc(end):%H:%M} UTC: "
                    f"{d.statistic} {d.value:.3f} >= {d.threshold:g} "
                    f"(n={d.sample_size}, p={d.p_value:.2g}); "
                    f"{len(drifted)} of {len(drift)} features drifting"
                ),
                context=context,
            )
        )
    return alerts


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
