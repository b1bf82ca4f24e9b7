"""What one window shows: every monitor's verdict, as conditions present or checked.

An episode needs two kinds of news from a window: the conditions that show in it (each
with the alert it would raise and how bad it is), and the conditions that were checked
and did not show (what ends an episode). A condition that could not be checked (too
few events, labels still arriving) is neither: it neither opens nor ends anything.
Pure functions over sketches read from Redis, like `monitors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streamdrift.alerts import (
    MODEL_LEVEL,
    drift_alerts,
    outlier_event_alerts,
    outlier_share_alert,
    output_alerts,
    performance_alert,
    quality_alerts,
    volume_alert,
)
from streamdrift.events import Alert
from streamdrift.monitors import (
    output_drift,
    performance_check,
    quality_findings,
    volume_check,
    window_drift,
)
from streamdrift.multivariate_monitor import multivariate_conditions
from streamdrift.profile import LABEL, PREDICTION, ReferenceProfile
from streamdrift.sketch import WindowSketch


@dataclass(slots=True)
class WindowConditions:
    window: int
    #: (alert, magnitude): the conditions that show, how bad (larger is worse)
    present: list[tuple[Alert, float]] = field(default_factory=list)
    #: condition keys checked in this window; a key ending in "*" covers a family
    checked: list[str] = field(default_factory=list)
    #: alerts outside episodes: single outlying events, when asked for
    events: list[Alert] = field(default_factory=list)

    def covers(self, key: str) -> bool:
        return any(key == c or (c.endswith("*") and key.startswith(c[:-1])) for c in self.checked)


@dataclass(slots=True)
class History:
    """What the window is judged against besides the reference: the earlier windows'
    counts and performance (`recent`, oldest first), and event counts of the windows
    the volume check compares with."""

    recent: list[WindowSketch] = field(default_factory=list)
    rolling_counts: list[int] = field(default_factory=list)
    seasonal_counts: list[int] = field(default_factory=list)


def labels_settled(
    profile: ReferenceProfile, window: WindowSketch, recent: list[WindowSketch]
) -> bool:
    """Have the window's labels mostly arrived? Its label coverage against the typical
    coverage of earlier windows (a model labelling 10 % of its predictions settles at
    10 %). A window whose labels are still arriving cannot end a performance episode:
    its metric on the first labels is not yet the window's."""
    if window.performance is None or not window.count:
        return False
    coverage = window.performance.labelled / window.count
    earlier = sorted(
        w.performance.labelled / w.count
        for w in recent
        if w.performance is not None and w.count and w.start < window.start
    )
    typical = earlier[len(earlier) // 2] if earlier else 1.0
    return coverage >= profile.config.episodes.settled_label_coverage * typical


def window_conditions(
    profile: ReferenceProfile,
    window: WindowSketch,
    history: History,
    now: float,
    *,
    closed: bool,
    followed: bool,
    baselines: dict[str, WindowSketch] | None = None,
    quiet: bool = True,
) -> WindowConditions:
    """Every monitor on one window: data quality, feature drift, outlier share,
    prediction and label drift, performance, and volume. Volume is judged only on a
    complete window (`closed`) that a later window follows (`followed`): a window still
    filling is short because it is filling, and the last window of a stream that stopped is
    short because the stream stopped, which is the freshness check's news. `quiet`: no
    apply (no label joined) touched the window lately."""
    cfg = profile.config
    out = WindowConditions(window.start)
    drift = window_drift(profile, window, baselines)
    findings = quality_findings(profile, window)
    outputs = output_drift(profile, window, baselines)

    for alert in quality_alerts(profile, window, findings, now):
        out.present.append((alert, alert.value))
    if window.count >= cfg.quality.min_events:
        out.checked.append("data_quality:*")

    for alert in drift_alerts(profile, window, drift, now):
        out.present.append((alert, alert.value / alert.threshold if alert.threshold else 0.0))
    out.checked += [
        f"data_drift:{d.feature}"
        for d in drift.values()
        if d.judged_by and d.sample_size >= cfg.feature_policy(d.feature).min_samples
    ]
    if cfg.feature_importance and any(d.judged_by for d in drift.values()):
        out.checked.append(f"data_drift:{MODEL_LEVEL}")

    # multivariate drift: reconstruction error, changed correlations (multivariate_monitor)
    present, checked = multivariate_conditions(profile, window, drift, now, baselines)
    out.present += present
    out.checked += checked

    share = outlier_share_alert(profile, window, now)
    if share is not None:
        out.present.append((share, share.value / max(share.threshold, 1e-12)))
    if profile.outliers is not None and window.count >= cfg.quality.min_events:
        out.checked.append("outlier:share")
    if cfg.outlier_alerts == "events":
        out.events = outlier_event_alerts(profile, window, now)

    # labels keep coming after the window's predictions: their absence of a problem
    # counts once the window is complete, no label joined it lately (`quiet`), and its
    # coverage is the model's usual
    settled = closed and quiet and labels_settled(profile, window, history.recent)
    for alert in output_alerts(profile, window, outputs, drift, now):
        out.present.append((alert, alert.value / max(alert.threshold, 1e-12)))
    shown = {
        LABEL: profile.label_column or "label",
        PREDICTION: profile.prediction_column or "prediction",
    }
    for name, d in outputs.items():
        if d.judged_by and d.sample_size >= cfg.drift.min_samples and (name != LABEL or settled):
            kind = "label_drift" if name == LABEL else "prediction_drift"
            out.checked.append(f"{kind}:{shown[name]}")

    if window.performance is not None:
        earlier = [w for w in history.recent if w.start < window.start]
        k = cfg.performance.detector_windows
        finding = performance_check(profile, window, earlier[-k:])
        if finding is not None:
            alert = performance_alert(
                profile, window, finding, drift, now, quality=findings, outputs=outputs
            )
            if alert is not None:
                base = finding.baselines[finding.worst or "reference"]
                out.present.append((alert, base["drop"]))
            if settled:
                out.checked.append(f"performance_degradation:{finding.metric}")

    if closed and followed:
        volume = volume_check(
            profile, window.count, history.rolling_counts, history.seasonal_counts
        )
        if volume is not None:
            if volume.abnormal:
                alert = volume_alert(profile, window, volume, now)
                out.present.append((alert, abs(math.log(max(volume.ratio, 1e-6)))))
            out.checked.append("volume:events")
    return out
