"""Slow drift across windows, and the alerts it raises: a numeric feature's (or the
score's) mean that creeps a little further every window, a missing share that rises a
point at a time. Each window judged alone calls every step harmless; the CUSUMs of
`sequential` add the steps up (`DriftPolicy.cumulative`).

The alerts are the same conditions the per-window checks raise, so one change stays
one episode whichever check sees it first: `data_drift:<feature>` (statistic
`mean_cusum`), `prediction_drift:<prediction column>` and
`data_quality:missing_values:<feature>` (statistic `missing_values`, the detector named
in the context). A CUSUM only says a condition is present, while its sum is past the
threshold and the evaluated window itself is still beyond the allowance; whether it is
over is the per-window checks' call, as for every other drift.

Pure functions over window sketches, like `monitors`; the earlier windows' moments come
with the evaluator's history (`Windows.read_performance(..., columns=...)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from streamdrift.alerts import _profile_alert_id, _span, _utc, _window_fields
from streamdrift.events import Alert
from streamdrift.profile import LABEL, PREDICTION, NumericProfile, ReferenceProfile
from streamdrift.sequential import CusumResult, mean_cusum, share_cusum, z_for
from streamdrift.sketch import WindowSketch

#: the alert id's feature part: a cumulative finding is not the window test's finding
ID_SUFFIX = "|cumulative"


def watched_columns(profile: ReferenceProfile) -> list[str]:
    """The columns whose moments the cumulative checks read from earlier windows: the
    enabled features and the model's outputs (the label's arrive through the join).
    None for a model judging drift against rolling or seasonal baselines: a sum of
    shifts from the reference is exactly what such a model declared normal (a rhythm,
    a level that moves), and a sum against a baseline that moves with the drift would
    never grow."""
    cfg = profile.config
    if not cfg.drift.cumulative.enabled or cfg.drift.baselines != ["reference"]:
        return []
    names = [f for f in profile.features if cfg.feature_enabled(f)]
    return [*names, *(n for n in profile.outputs() if n != LABEL)]


def _shown(profile: ReferenceProfile, name: str) -> str:
    return (profile.prediction_column or "prediction") if name == PREDICTION else name


@dataclass(slots=True)
class ColumnCusum:
    """One column's CUSUMs after a window: of its mean (numeric columns; `shift` the
    window's own, in reference sds) and of its missing share (features; `share` the
    window's, `reference_share` the reference's), and whether each is raised: alarmed
    with the window itself beyond the allowance."""

    column: str
    mean: CusumResult | None = None
    shift: float = float("nan")
    mean_raised: bool = False
    missing: CusumResult | None = None
    share: float = float("nan")
    reference_share: float = 0.0
    missing_raised: bool = False


def cumulative_findings(
    profile: ReferenceProfile, window: WindowSketch, earlier: list[WindowSketch]
) -> list[ColumnCusum]:
    """Every watched column's CUSUMs after `window` (earlier windows oldest first)."""
    cfg = profile.config
    policy = cfg.drift.cumulative
    columns = watched_columns(profile)
    history = [w for w in earlier if w.start < window.start][-(policy.windows - 1) :]
    series = [*history, window]
    z_needed = z_for(cfg.drift.p_value / max(len(columns), 1))
    min_count = cfg.drift.min_samples
    out = []
    for name in columns:
        ref = profile.outputs().get(name) or profile.features[name]
        numeric = isinstance(ref, NumericProfile)
        found = ColumnCusum(_shown(profile, name))
        latest = window.numeric.get(name) if numeric else None
        if isinstance(ref, NumericProfile) and latest is not None:
            found.mean = r = mean_cusum(
                [
                    (w.start, s.n, s.total, s.total_sq)
                    for w in series
                    if (s := w.numeric.get(name)) is not None
                ],
                ref.mean,
                ref.std,
                allowance=policy.mean_allowance,
                threshold=policy.mean_threshold,
                z_needed=z_needed,
                min_count=min_count,
            )
            if latest.n and ref.std > 0:
                found.shift = (latest.total / latest.n - ref.mean) / ref.std
            if r is not None and r.alarm and latest.n >= min_count:
                toward = found.shift if r.direction == "up" else -found.shift
                found.mean_raised = toward > policy.mean_allowance
        sketch = window.numeric.get(name) if numeric else window.categorical.get(name)
        if name != PREDICTION and sketch is not None and window.count:
            total = ref.count + ref.missing
            found.reference_share = ref.missing / total if total else 0.0
            found.share = sketch.missing / window.count
            counts = []
            for w in series:
                sk = w.numeric.get(name) if numeric else w.categorical.get(name)
                if sk is not None and w.count:
                    counts.append((w.start, w.count, sk.missing))
            found.missing = m = share_cusum(
                counts,
                found.reference_share,
                allowance=policy.missing_allowance,
                threshold=policy.missing_threshold,
                z_needed=z_needed,
                min_count=min_count,
            )
            found.missing_raised = (
                m is not None
                and m.alarm
                and window.count >= min_count
                and found.share - found.reference_share > policy.missing_allowance
                # missing from most events: the schema lost it (`feature_missing`)
                and found.share - found.reference_share < cfg.quality.added_share
            )
        out.append(found)
    return out


def cumulative_conditions(
    profile: ReferenceProfile,
    window: WindowSketch,
    earlier: list[WindowSketch],
    now: float,
) -> list[tuple[Alert, float]]:
    """The alerts of every column whose CUSUM is raised after `window`, each with its
    magnitude in thresholds."""
    policy = profile.config.drift.cumulative
    names = {_shown(profile, n): n for n in watched_columns(profile)}
    out: list[tuple[Alert, float]] = []
    for f in cumulative_findings(profile, window, earlier):
        name = names[f.column]
        if f.mean_raised and f.mean is not None:
            ref = profile.outputs().get(name) or profile.features[name]
            assert isinstance(ref, NumericProfile)
            alert = _mean_alert(profile, window, name, ref, f.mean, f.shift, now)
            out.append((alert, f.mean.value / policy.mean_threshold))
        if f.missing_raised and f.missing is not None:
            missing = round(f.share * window.count)
            alert = _missing_alert(
                profile, window, name, f.reference_share, f.missing, missing, now
            )
            out.append((alert, f.missing.value / policy.missing_threshold))
    return out


def cumulative_report(findings: list[ColumnCusum]) -> dict[str, dict[str, Any]]:
    """What `inspect` shows of the CUSUMs: per column, each sum, its direction, run and
    z, and whether it is raised."""
    out: dict[str, dict[str, Any]] = {}
    for f in findings:
        doc: dict[str, Any] = {}
        if f.mean is not None:
            doc["mean"] = {
                **_result(f.mean),
                "window_shift": _finite(f.shift),
                "raised": f.mean_raised,
            }
        if f.missing is not None:
            doc["missing"] = {
                **_result(f.missing),
                "window_share": _finite(f.share),
                "reference_share": f.reference_share,
                "raised": f.missing_raised,
            }
        if doc:
            out[f.column] = doc
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _result(r: CusumResult) -> dict[str, Any]:
    return {
        "cusum": r.value,
        "direction": r.direction,
        "since": _span_start(r.since) if r.windows else None,
        "run_windows": r.windows,
        "run_shift": r.shift,
        "z": _finite(r.z),
        "alarm": r.alarm,
    }


def _context(r: CusumResult, width: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "detector": "cusum",
        "cusum": r.value,
        "direction": r.direction,
        "since": _span_start(r.since),
        "run_windows": r.windows,
        "run_shift": r.shift,
        "z": r.z,
        "window_seconds": width,
        **extra,
    }


def _span_start(start: int) -> str:
    return _utc(start).isoformat()


def _mean_alert(
    profile: ReferenceProfile,
    window: WindowSketch,
    name: str,
    ref: NumericProfile,
    r: CusumResult,
    shift: float,
    now: float,
) -> Alert:
    policy = profile.config.drift.cumulative
    output = name == PREDICTION
    kind = "prediction_drift" if output else "data_drift"
    shown = _shown(profile, name)
    latest = window.numeric[name]
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(profile, kind, shown + ID_SUFFIX, window.start),
        type=kind,
        # a sum grows while the shift lasts: no escalation for lasting alone
        severity="warning",
        feature=shown,
        statistic="mean_cusum",
        value=r.value,
        threshold=policy.mean_threshold,
        sample_size=latest.n,
        reference_size=ref.count,
        message=(
            f"{profile.model_id}: the mean of '{shown}' has crept {r.direction} for "
            f"{r.windows} window(s) since {_span_start(r.since)[:16]}: "
            f"{r.shift:+.2f} reference sd over them, {shift:+.2f} in window "
            f"{_span(profile, window)} (CUSUM {r.value:.2f} >= {policy.mean_threshold:g}, "
            f"allowance {policy.mean_allowance:g} sd a window; z {r.z:.1f})"
        ),
        context=_context(
            r,
            profile.config.window_seconds,
            {
                "kind": "numeric",
                "window_shift": shift,
                "window_mean": latest.total / latest.n,
                "allowance": policy.mean_allowance,
                "reference": {"mean": ref.mean, "std": ref.std},
                "route": "ml-team",
            },
        ),
    )


def _missing_alert(
    profile: ReferenceProfile,
    window: WindowSketch,
    name: str,
    share: float,
    r: CusumResult,
    missing: int,
    now: float,
) -> Alert:
    policy = profile.config.drift.cumulative
    now_share = missing / window.count
    return Alert(
        **_window_fields(profile, window, now),
        alert_id=_profile_alert_id(
            profile, "data_quality", f"missing_values:{name}{ID_SUFFIX}", window.start
        ),
        type="data_quality",
        severity="warning",
        feature=name,
        statistic="missing_values",
        value=now_share,
        threshold=share + policy.missing_allowance,
        sample_size=window.count,
        reference_size=profile.rows,
        message=(
            f"{profile.model_id}: missing values in '{name}' have risen for {r.windows} "
            f"window(s) since {_span_start(r.since)[:16]}: {share + r.shift:.1%} over them, "
            f"{now_share:.1%} in window {_span(profile, window)}, reference {share:.1%} "
            f"(CUSUM {r.value:.3f} >= {policy.missing_threshold:g})"
        ),
        context=_context(
            r,
            profile.config.window_seconds,
            {
                "kind": "missing_values",
                "events": missing,
                "reference_share": share,
                "allowance": policy.missing_allowance,
                "route": "data-team",
            },
        ),
    )
