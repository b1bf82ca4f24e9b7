"""How an alert reads in a chat message, a page and a mail subject: one wording for all.

A person sees the status first (a resolved alert must not look like a new problem),
then the severity, the kind of problem and where it is (model, feature)."""

from __future__ import annotations

from datetime import datetime

from streamdrift.notify.received import ReceivedAlertModel


def subject(alert: ReceivedAlertModel) -> str:
    """`RESOLVED data_drift: fraud / amount` or `OPEN critical data_drift: fraud / amount`;
    a resolved alert's severity is the one it ended with, which says nothing now."""
    status = alert.status.upper()
    if alert.status == "resolved":
        return f"{status} {alert.type}: {where(alert)}"
    return f"{status} {alert.severity} {alert.type}: {where(alert)}"


def where(alert: ReceivedAlertModel) -> str:
    """The model, and the feature when the alert is about one."""
    return f"{alert.model_id} / {alert.feature}" if alert.feature else alert.model_id


def measured(alert: ReceivedAlertModel) -> str:
    """`psi 0.93 (threshold 0.2)`."""
    return f"{alert.statistic} {alert.value:.4g} (threshold {alert.threshold:.4g})"


def window(alert: ReceivedAlertModel) -> str:
    return f"{_utc(alert.window_start)} – {_utc(alert.window_end)}"


def lasted(alert: ReceivedAlertModel) -> str | None:
    """How long a resolved episode lasted, from its first window to the resolution."""
    if alert.since is None or alert.status != "resolved":
        return None
    try:
        seconds = max((alert.created_at - alert.since).total_seconds(), 0.0)
    except TypeError:  # one of the two without a time zone: no honest answer
        return None
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
