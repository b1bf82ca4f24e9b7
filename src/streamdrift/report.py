"""What `streamdrift inspect` shows: the model's windows, their drift and its alerts,
built from Redis state with the same monitor functions the evaluator uses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from streamdrift.baselines import REFERENCE, baseline_starts, read_baselines
from streamdrift.categorical_depth import categorical_depth
from streamdrift.conditions import challenger_results
from streamdrift.cumulative_monitor import (
    cumulative_findings,
    cumulative_report,
    watched_columns,
)
from streamdrift.errors import UnknownModelError
from streamdrift.estimation import estimated_metric, estimates, estimation_check, window_counts
from streamdrift.monitors import (
    FeatureDrift,
    headline_metric,
    importance_weighted_drift,
    output_drift,
    quality_findings,
    rank_drifting,
    sequential_scans,
    window_drift,
    window_performance,
)
from streamdrift.multivariate_monitor import multivariate_report
from streamdrift.performance import segment_metrics
from streamdrift.profile import ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store import Store


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def json_number(value: float) -> float | None:
    return None if value != value else round(value, 6)  # NaN -> null


def _baselines_used(
    profile: ReferenceProfile, plan: Mapping[str, list[int]], pooled: Mapping[str, WindowSketch]
) -> dict[str, dict[str, Any]]:
    """What each chosen baseline of a window is made of: the reference file, or the
    windows pooled (how many, from when to when, their events)."""
    out: dict[str, dict[str, Any]] = {}
    for name in profile.config.drift.baselines:
        if name == REFERENCE:
            out[name] = {"source": profile.source, "rows": profile.rows}
            continue
        starts = plan.get(name, [])
        sketch = pooled.get(name)
        out[name] = {
            "windows": len(starts) if sketch is not None else 0,
            "from": iso_time(starts[0]) if sketch is not None else None,
            "to": iso_time(starts[-1]) if sketch is not None else None,
            "events": sketch.count if sketch is not None else 0,
        }
    return out


def _verdict(d: FeatureDrift) -> dict[str, Any]:
    """A feature's verdict: by which baselines, with what figures, each baseline's own."""
    return {
        "enabled": d.enabled,
        "statistic": d.statistic,
        "value": json_number(d.value),
        "threshold": d.threshold,
        "p_value": json_number(d.p_value),
        "judged_by": d.judged_by,
        "baselines": {
            name: {k: json_number(v) if isinstance(v, float) else v for k, v in r.items()}
            for name, r in d.baselines.items()
        },
    }


def load_profile(store: Store, model: str) -> ReferenceProfile:
    profile = store.profiles.load(model)
    if profile is None:
        known = ", ".join(store.profiles.models()) or "none"
        raise UnknownModelError(
            f"model '{model}' is not registered",
            f"run `streamdrift register {model} --reference FILE` (registered: {known})",
        )
    return profile


def chosen_starts(
    all_starts: list[int],
    last: int | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[int]:
    """The windows starting in [since, until), then the last `last` of them."""
    starts = [
        s for s in all_starts if (since is None or s >= since) and (until is None or s < until)
    ]
    return starts[-last:] if last else starts


def _history(
    store: Store, profile: ReferenceProfile, all_starts: list[int], starts: list[int]
) -> Any:
    """The earlier windows' performance and moments the sequential detectors read, in
    one round trip as the evaluator reads them; then, per window start, the ones before
    it (oldest first)."""
    cfg = profile.config
    depth = max(cfg.performance.detector_windows, cfg.drift.cumulative.windows)
    width = cfg.window_seconds
    if not starts:
        return lambda _start: []
    first, last = min(starts), max(starts)
    wanted = [s for s in all_starts if first - depth * width <= s < last]
    read = store.windows.read_performance(profile, wanted, watched_columns(profile))

    def before(start: int) -> list[WindowSketch]:
        return [w for w in read if w.start < start and start - w.start <= depth * width]

    return before


def _sequential(
    profile: ReferenceProfile, window: WindowSketch, earlier: list[WindowSketch]
) -> dict[str, Any]:
    """The sequential detectors as the evaluator runs them on the window: the degradation
    scan of each metric (`monitors.sequential_scans`) and each column's CUSUMs."""
    k = profile.config.performance.detector_windows
    scans = sequential_scans(profile, earlier[-k:], window)
    return {
        "sequential": {
            m: {
                key: (bool(v) if key == "alarm" else iso_time(v) if key == "since" else v)
                for key, v in t.items()
            }
            for m, t in scans.items()
        },
        "cumulative": cumulative_report(cumulative_findings(profile, window, earlier)),
    }


def model_report(
    store: Store,
    model: str,
    last: int | None = None,
    slice_name: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> dict[str, Any]:
    """The `inspect --json` document of one model, or of one slice of it ("v=2.0",
    "region=eu": its windows judged against its own reference); `since` and `until`
    (epoch seconds) keep the windows starting between them."""
    profile = load_profile(store, model)
    all_starts = store.windows.starts(model, profile.revision)
    starts = chosen_starts(all_starts, last, since, until)
    shown = store.windows.read(profile, starts, slices=True)
    # the windows the baselines pool, read at once, as the evaluator does for one window
    read = partial(store.windows.read, profile)
    pooled = read_baselines(read, profile.config, starts, all_starts, known=shown)
    slices = {w.start: _slice_summary(profile, w) for w in shown}
    champion = store.profiles.champion(model)
    if slice_name is not None:
        known = sorted({n for w in shown for n in w.slices})
        if known and slice_name not in known:
            raise UnknownModelError(
                f"model '{model}' has no slice '{slice_name}' in the windows kept",
                f"its slices are: {', '.join(known)}",
            )
        shown = [w.slices[slice_name] for w in shown if slice_name in w.slices]
        profile = profile.slice_profile(slice_name)
        pooled = {w.start: {} for w in shown}
    earlier = _history(store, profile, all_starts, starts) if slice_name is None else None
    windows = []
    for w in shown:
        drift = window_drift(profile, w, pooled[w.start])
        outputs = output_drift(profile, w, pooled[w.start])
        plan = baseline_starts(profile.config, w.start, all_starts)
        windows.append(
            {
                "start": iso_time(w.start),
                "end": iso_time(w.start + profile.config.window_seconds),
                "count": w.count,
                "invalid": dict(w.invalid),
                "versions": dict(w.versions),
                "drifting": [r["feature"] for r in rank_drifting(profile, drift)],
                "baselines": _baselines_used(profile, plan, pooled[w.start]),
                "features": {
                    name: {
                        "kind": d.kind,
                        "sample_size": d.sample_size,
                        "missing": d.missing,
                        "drifted": d.drifted,
                        **{k: json_number(v) for k, v in d.statistics.items()},
                        **_verdict(d),
                    }
                    for name, d in drift.items()
                },
                "importance_weighted_drift": importance_weighted_drift(profile, drift),
                "outputs": {
                    name.strip("_"): {
                        "drifted": d.drifted,
                        "sample_size": d.sample_size,
                        **{k: json_number(v) for k, v in d.statistics.items()},
                        **_verdict(d),
                    }
                    for name, d in outputs.items()
                },
                "performance": {
                    k: json_number(v) for k, v in window_performance(profile, w).items()
                },
                # scores are binned for estimation for the whole model only
                "estimated_performance": _estimated(profile, w) if slice_name is None else None,
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
                "multivariate": multivariate_report(profile, w, drift, pooled[w.start]),
                "categorical_depth": _depth(profile, w),
                "slices": slices.get(w.start, {}) if slice_name is None else {},
                "champion_challenger": [
                    r.as_dict() for r in challenger_results(profile, w, champion)
                ]
                if champion is not None and slice_name is None
                else [],
                **(_sequential(profile, w, earlier(w.start)) if slice_name is None else {}),
            }
        )
    return {
        "model_id": model,
        "slice": slice_name,
        "champion": champion,
        "revision": profile.revision,
        "reference": {"source": profile.source, "rows": profile.rows, "task": profile.task},
        "config": profile.config.model_dump(),
        "windows": windows,
        "dead_letters": store.counters.model_dlq(model),
        "join": store.counters.join_stats(model),
        "headline_metric": headline_metric(profile),
        "reference_performance": {
            k: json_number(v) for k, v in profile.reference_performance.items() if "[" not in k
        },
        "estimation": _estimation(profile),
        "episodes": _episodes(store, model, profile.config.window_seconds),
        # the windows shown, together: a HyperLogLog union, not a sum of their counts
        "distinct_values": store.windows.distinct(profile, starts),
        "alerts": store.alerts.all(model),
    }


def _depth(profile: ReferenceProfile, window: WindowSketch) -> dict[str, dict[str, Any]]:
    """Each categorical feature's entropy (bits) and distinct count against the
    reference's."""
    return {
        name: {
            "sample_size": d.sample_size,
            "entropy": json_number(d.entropy),
            "reference_entropy": json_number(d.reference_entropy),
            "entropy_change": json_number(d.entropy_change),
            "distinct": d.distinct,
            "reference_cardinality": d.reference_cardinality,
        }
        for name, d in categorical_depth(profile, window).items()
    }


def _slice_summary(profile: ReferenceProfile, w: WindowSketch) -> dict[str, Any]:
    """Each slice of a window side by side: its events, its headline metric, and the
    features drifting against its own reference."""
    metric = headline_metric(profile)
    out = {}
    for name in sorted(w.slices):
        sk = w.slices[name]
        view = profile.slice_profile(name)
        perf = window_performance(view, sk)
        drift = window_drift(view, sk, None) if sk.count else {}
        out[name] = {
            "count": sk.count,
            "labelled": int(perf.get("labelled", 0)),
            metric: json_number(perf[metric]) if metric in perf else None,
            "drifting": [r["feature"] for r in rank_drifting(view, drift)],
        }
    return out


def _estimated(profile: ReferenceProfile, w: WindowSketch) -> dict[str, Any] | None:
    """The window's performance estimated from its scores (CBPE), each metric with its
    band and, once labels joined, the realized value beside it."""
    calibration = profile.calibration
    if calibration is None:
        return None
    counts = window_counts(w, calibration)
    realized = window_performance(profile, w)
    finding = estimation_check(profile, w)
    return {
        "predictions": int(counts.sum()),
        "metrics": {
            m: {**e.as_dict(), "realized": json_number(realized[m]) if m in realized else None}
            for m, e in estimates(counts, calibration, profile.config.estimation.band).items()
        },
        "degraded": None if finding is None else finding.degraded,
    }


def _estimation(profile: ReferenceProfile) -> dict[str, Any] | None:
    """What performance estimation knows of the reference: the watched metric, whether
    the scores needed calibrating, and each metric estimated and realized there."""
    calibration = profile.calibration
    if calibration is None:
        return None
    return {
        "metric": estimated_metric(profile),
        "calibrated": calibration.calibrated,
        "rows": calibration.rows,
        "reference": {
            m: {
                "estimated": json_number(calibration.estimated.get(m, float("nan"))),
                "realized": json_number(calibration.realized.get(m, float("nan"))),
            }
            for m in calibration.estimated
        },
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
                "since": iso_time(e.since),
                "last_seen": iso_time(e.last),
                "duration_seconds": e.last + width - e.since,
                "peak": e.peak_value,
                "peak_statistic": e.peak_statistic or alert.get("statistic"),
                "route": alert.get("context", {}).get("route"),
                "message": alert.get("message"),
                "resolved_at": None if e.resolved_at is None else iso_time(e.resolved_at),
            }
        )
    opened = sorted((r for r in rows if r["status"] == "open"), key=lambda r: r["since"])
    closed = sorted(
        (r for r in rows if r["status"] != "open"), key=lambda r: r["resolved_at"], reverse=True
    )
    return opened + closed
