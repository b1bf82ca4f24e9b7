"""Alerts: from drift verdicts to events on the alerts topic, each raised once.

The alert_id is a digest of (model, type, feature, window start), so the same finding
always has the same id. Redis records each id before it is published (`claim_alert`);
a second evaluator, or the same one after a crash, finds the claim and raises nothing
new. A claim whose publisher died before the broker acknowledged it is re-sent with the
same id by the next evaluation, so an alert is never lost and never has two ids.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from streamdrift.events import Alert
from streamdrift.monitors import FeatureDrift
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch


def alert_id(model: str, alert_type: str, feature: str, window_start: int) -> str:
    digest = hashlib.sha256(f"{model}|{alert_type}|{feature}|{window_start}".encode())
    return digest.hexdigest()[:32]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


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
    version = window.versions.most_common(1)[0][0] if window.versions else None
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
                alert_id=alert_id(profile.model_id, "data_drift", d.feature, window.start),
                type="data_drift",
                severity=severity,
                model_id=profile.model_id,
                model_version=version,
                feature=d.feature,
                statistic=d.statistic,
                value=d.value,
                threshold=d.threshold,
                window_start=_utc(window.start),
                window_end=_utc(end),
                sample_size=d.sample_size,
                reference_size=ref.count,
                message=(
                    f"{profile.model_id}: feature '{d.feature}' drifted in window "
                    f"{_utc(window.start):%Y-%m-%d %H:%M}–{_utc(end):%H:%M} UTC: "
                    f"{d.statistic} {d.value:.3f} >= {d.threshold:g} "
                    f"(n={d.sample_size}, p={d.p_value:.2g}); "
                    f"{len(drifted)} of {len(drift)} features drifting"
                ),
                created_at=_utc(now),
                context=context,
            )
        )
    return alerts


def encode(alert: Alert) -> bytes:
    return orjson.dumps(alert.model_dump(mode="json"))
