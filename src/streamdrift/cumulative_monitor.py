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


def cumulative_conditions(
    profile: ReferenceProfile,
    window: WindowSketch,
    earlier: list[WindowSketch],
    now: float,
) -> list[tuple[Alert, float]]:
    """The alerts of every column whose CUSUM alarms after `window` (earlier windows
    oldest first), each with its magnitude in thresholds."""
    cfg = profile.config
    policy = cfg.drift.cumulative
    columns = watched_columns(profile)
    if not columns:
        return []
    history = [w for w in earlier if w.start < window.start][-(policy.windows - 1) :]
    series = [*history, window]
    n_tests = max(len(columns), 1)
    z_needed = z_for(cfg.drift.p_value / n_tests)
    min_count = cfg.drift.min_samples
    out: list[tuple[Alert, float]] = []
    for name in columns:
        ref = profile.outputs().get(name) or profile.features[name]
        numeric = isinstance(ref, NumericProfile)
        if numeric and name in window.numeric:
            moments = [
                (w.start, s.n, s.total, s.total_sq)
                for w in series
                if (s := w.numeric.get(name)) is not None
            ]
            r = mean_cusum(
                moments,
                ref.mean,
                ref.std,
                allowance=policy.mean_allowance,
                threshold=policy.mean_threshold,
                z_needed=z_needed,
                min_count=min_count,
            )
            latest = window.numeric[name]
            if r is not None and r.alarm and latest.n >= min_count:
                shift = (latest.total / latest.n - ref.mean) / ref.std
                if (shift if r.direction == "up" else -shift) > policy.mean_allowance:
                    alert = _mean_alert(profile, window, name, ref, r, shift, now)
                    out.append((alert, r.value / policy.mean_threshold))
        if name == PREDICTION:
            continue
        sketch = window.numeric.get(name) if numeric else window.categorical.get(name)
        if sketch is None or window.count < min_count:
            continue
        total = ref.count + ref.missing
        share = ref.missing / total if total else 0.0
        counts = []
        for w in series:
            sk = w.numeric.get(name) if numeric else w.categorical.get(name)
            if sk is not None and w.count:
                counts.append((w.start, w.count, sk.missing))
        m = share_cusum(
            counts,
            share,
            allowance=policy.missing_allowance,
            threshold=policy.missing_threshold,
            z_needed=z_needed,
            min_count=min_count,
        )
        if (
            m is not None
            and m.alarm
            and sketch.missing / window.count - share > policy.missing_allowance
        ):
            alert = _missing_alert(profile, window, name, share, m, sketch.missing, now)
            out.append((alert, m.value / policy.missing_threshold))
    return out


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
        severity="critical" if r.value >= 2.5 * policy.mean_threshold else "warning",
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
