"""What `streamdrift inspect` shows: the model's windows, their drift and its alerts,
built from Redis state with the same monitor functions the evaluator uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamdrift.errors import UnknownModelError
from streamdrift.monitors import (
    headline_metric,
    output_drift,
    quality_findings,
    window_drift,
    window_performance,
)
from streamdrift.performance import segment_metrics
from streamdrift.store import Store


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _clean(value: float) -> float | None:
    return None if value != value else round(value, 6)  # NaN -> null


def model_report(store: Store, model: str, last: int | None = None) -> dict[str, Any]:
    """The `inspect --json` document of one model."""
    profile = store.profiles.load(model)
    if profile is None:
        known = ", ".join(store.profiles.models()) or "none"
        raise UnknownModelError(
            f"model '{model}' is not registered",
            f"run `streamdrift register {model} --reference FILE` (registered: {known})",
        )
    starts = store.windows.starts(model, profile.revision)
    if last:
        starts = starts[-last:]
    windows = []
    for w in store.windows.read(profile, starts):
        drift = window_drift(profile, w)
        outputs = output_drift(profile, w)
        windows.append(
            {
                "start": _iso(w.start),
                "end": _iso(w.start + profile.config.window_seconds),
                "count": w.count,
                "invalid": dict(w.invalid),
                "versions": dict(w.versions),
                "drifting": sorted(
                    (d.feature for d in drift.values() if d.drifted), key=lambda f: -drift[f].value
                ),
                "features": {
                    name: {
                        "kind": d.kind,
                        "sample_size": d.sample_size,
                        "missing": d.missing,
                        "drifted": d.drifted,
                        **{k: _clean(v) for k, v in d.statistics.items()},
                    }
                    for name, d in drift.items()
                },
                "outputs": {
                    name.strip("_"): {
                        "drifted": d.drifted,
                        "sample_size": d.sample_size,
                        **{k: _clean(v) for k, v in d.statistics.items()},
                    }
                    for name, d in outputs.items()
                },
                "performance": {k: _clean(v) for k, v in window_performance(profile, w).items()},
                "outliers": w.outliers,
                "outlier_examples": w.outlier_examples,
                "quality": [
                    {
                        "kind": q.kind,
                        "feature": q.feature,
                        "events": q.events,
                        "share": round(q.share, 6),
                        "detail": q.detail,
                    }
                    for q in quality_findings(profile, w)
                ],
                "segments": (segment_metrics(w.performance, profile.task) if w.performance else {}),
            }
        )
    return {
        "model_id": model,
        "revision": profile.revision,
        "reference": {"source": profile.source, "rows": profile.rows, "task": profile.task},
        "config": profile.config.model_dump(),
        "windows": windows,
        "dead_letters": store.counters.model_dlq(model),
        "join": store.counters.join_stats(model),
        "headline_metric": headline_metric(profile),
        "reference_performance": {
            k: _clean(v) for k, v in profile.reference_performance.items() if "[" not in k
        },
        "episodes": _episodes(store, model, profile.config.window_seconds),
        "alerts": store.alerts.all(model),
    }


def _episodes(store: Store, model: str, width: int) -> list[dict[str, Any]]:
    """Open episodes first (oldest first: the longest-running problem on top), then
    the resolved ones, latest first."""
    state = store.episodes.load(model)
    rows = []
    for e in state.episodes.values():
        alert = e.alert
        rows.append(
            {
                "key": e.key,
                "episode_id": e.episode_id,
                "status": e.status,
                "type": alert.get("type"),
                "feature": alert.get("feature"),
                "severity": e.severity,
                "since": _iso(e.since),
                "last_seen": _iso(e.last),
                "duration_seconds": e.last + width - e.since,
                "peak": e.peak_value,
                "route": alert.get("context", {}).get("route"),
                "message": alert.get("message"),
                "resolved_at": None if e.resolved_at is None else _iso(e.resolved_at),
            }
        )
    opened = sorted((r for r in rows if r["status"] == "open"), key=lambda r: r["since"])
    closed = sorted(
        (r for r in rows if r["status"] != "open"), key=lambda r: r["resolved_at"], reverse=True
    )
    return opened + closed
