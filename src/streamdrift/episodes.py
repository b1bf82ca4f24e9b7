"""Alert episodes: one alert when a condition starts, one when it is over.

A per-window monitor repeats itself: a drift that lasts seven windows is seven alerts
per feature, and on-call learns to ignore the stream. Here every finding is a
*condition*, named by a key (`data_drift:f0`, `data_quality:missing_values:f3`,
`performance_degradation:roc_auc`, `outlier:share`, `volume:events`, ...), and the
windows a condition shows in form an *episode*:

- the first window it shows in opens the episode: one `open` alert;
- a window where it shows with a higher severity than published so far: one
  `escalated` alert per rise;
- once it has been checked and found absent in `resolve_after` complete windows after
  the last window it showed in: one `resolved` alert, with how long it lasted and its
  peak.

Absence only counts in a *complete* window (a later window has data, or its end has
passed and the model has been quiet a while), so a half-filled window that has not yet
shown the condition cannot end an episode early, and only where the condition was
actually checked (enough events, enough labels). A finding for a window the episode
has already been judged over (a late label in a resolved period) is old news and
raises nothing; one for a window before an open episode's first (its data lagged)
moves the episode's start back, so the `resolved` alert spans what really happened.

The state machine is pure (`advance`): the evaluator loads the episodes from Redis,
advances them with the observations of the windows it evaluates, and commits the new
state together with the claims of the alerts it raised in one atomic script. Alert
ids are digests of the episode and the transition, so an evaluation repeated after a
crash reaches the same alerts under the same ids and raises none of them twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamdrift.events import Alert

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def episode_id(model: str, revision: int, key: str, since: int) -> str:
    """Same model, reference, condition and first window: the same episode, whoever
    evaluates it and however often."""
    return _digest("episode", model, revision, key, since)


def transition_id(episode: str, status: str, severity: str = "") -> str:
    return _digest(episode, status, severity)


@dataclass(slots=True)
class Observation:
    """One condition checked in one window.

    `alert` is the alert the window raises when the condition shows (present); None
    when it was checked and is absent. `magnitude` orders how bad it is (larger is
    worse) for the episode's peak. `resolve_after` overrides the model's rule for
    conditions that end at once when seen absent (a silent model sending again)."""

    key: str
    window: int
    alert: Alert | None
    closed: bool = True
    magnitude: float = 0.0
    resolve_after: int | None = None


@dataclass(slots=True)
class Episode:
    key: str
    episode_id: str
    revision: int
    since: int
    last: int
    severity: str
    peak: float
    peak_value: float
    peak_window: int
    opened_at: float
    alert: dict[str, Any]
    clear: list[int] = field(default_factory=list)
    status: str = "open"
    resolved_at: float | None = None
    resolved_through: int | None = None
    #: the statistic of the peak's alert (a condition watched on several metrics names
    #: the one that was worst); None in episodes stored before it was kept
    peak_statistic: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Episode:
        return cls(**doc)

    @property
    def open(self) -> bool:
        return self.status == "open"


def _stamp(alert: Alert, ep: Episode, status: str, aid: str) -> Alert:
    return alert.model_copy(
        update={
            "alert_id": aid,
            "status": status,
            "episode_id": ep.episode_id,
            "since": _utc(ep.since),
        }
    )


def advance(
    episodes: dict[str, Episode],
    observations: list[Observation],
    *,
    model: str,
    revision: int,
    width: int,
    resolve_after: int,
    now: float,
) -> list[Alert]:
    """Apply the observations, oldest window first, to `episodes` (changed in place);
    returns the alerts the transitions raise: open, escalated, resolved."""
    raised: list[Alert] = []
    for obs in sorted(observations, key=lambda o: (o.window, o.key, o.alert is None)):
        ep = episodes.get(obs.key)
        if obs.alert is not None:
            if ep is None or not ep.open:
                if ep is not None and obs.window <= (ep.resolved_through or ep.last):
                    continue  # a late finding in a period already judged and resolved
                ep = _open(obs, model, revision, now)
                episodes[obs.key] = ep
                alert = _stamp(obs.alert, ep, "open", transition_id(ep.episode_id, "open"))
                ep.alert = alert.model_dump(mode="json")
                raised.append(alert)
                continue
            if obs.window > ep.last:
                ep.last = obs.window
                ep.clear = [c for c in ep.clear if c > obs.window]
            elif obs.window < ep.since:
                # found late in an earlier window (its labels, or a partition, lagged):
                # the episode began earlier than its open alert could know
                ep.since = obs.window
            if obs.magnitude > ep.peak:
                ep.peak, ep.peak_value, ep.peak_window = (
                    obs.magnitude,
                    obs.alert.value,
                    obs.window,
                )
                ep.peak_statistic = obs.alert.statistic
            if SEVERITY_RANK[obs.alert.severity] > SEVERITY_RANK[ep.severity]:
                ep.severity = obs.alert.severity
                aid = transition_id(ep.episode_id, "escalated", ep.severity)
                alert = _stamp(obs.alert, ep, "escalated", aid)
                ep.alert = alert.model_dump(mode="json")
                raised.append(alert)
        elif ep is not None and ep.open and obs.closed and obs.window > ep.last:
            if obs.window not in ep.clear:
                ep.clear = sorted([*ep.clear, obs.window])
            needed = resolve_after if obs.resolve_after is None else obs.resolve_after
            if len(ep.clear) >= needed:
                raised.append(resolve(ep, width, now))
    return raised


def _open(obs: Observation, model: str, revision: int, now: float) -> Episode:
    assert obs.alert is not None
    return Episode(
        key=obs.key,
        episode_id=episode_id(model, revision, obs.key, obs.window),
        revision=revision,
        since=obs.window,
        last=obs.window,
        severity=obs.alert.severity,
        peak=obs.magnitude,
        peak_value=obs.alert.value,
        peak_window=obs.window,
        opened_at=now,
        alert={},
        peak_statistic=obs.alert.statistic,
    )


def resolve(ep: Episode, width: int, now: float, reason: str = "") -> Alert:
    """Close the episode; the `resolved` alert repeats what the episode was about (type,
    feature, statistic, route) and says how long it lasted and how bad it got."""
    last = Alert.model_validate(ep.alert)
    ep.status, ep.resolved_at = "resolved", now
    ep.resolved_through = max([ep.last, *ep.clear])
    duration = ep.last + width - ep.since
    why = reason or f"not seen in {len(ep.clear)} complete window(s) since"
    statistic = ep.peak_statistic or last.statistic
    # the peak's own statistic, named when the last alert's was another
    named = f"{statistic} " if statistic != last.statistic else ""
    context = {
        **last.context,
        "duration_seconds": duration,
        "peak": {
            "value": ep.peak_value,
            "statistic": statistic,
            "window_start": _utc(ep.peak_window).isoformat(),
        },
        "last_seen": _utc(ep.last).isoformat(),
        "resolved_because": why,
    }
    return last.model_copy(
        update={
            "alert_id": transition_id(ep.episode_id, "resolved"),
            "status": "resolved",
            "severity": ep.severity,
            "since": _utc(ep.since),
            "window_start": _utc(ep.since),
            "window_end": _utc(ep.last + width),
            "created_at": _utc(now),
            "statistic": statistic,
            "value": ep.peak_value,
            "message": (
                f"resolved after {_duration(duration)}: {_first_line(last.message)} "
                f"(peak {named}{ep.peak_value:.3g} in window {_utc(ep.peak_window):%Y-%m-%d %H:%M} "
                f"UTC; {why})"
            ),
            "context": context,
        }
    )


def retire(episodes: dict[str, Episode], revision: int, width: int, now: float) -> list[Alert]:
    """Resolve the open episodes of an earlier reference: the model was registered
    again, its windows start over, and nothing would ever end those episodes."""
    return [
        resolve(ep, width, now, reason="the model's reference was replaced")
        for ep in episodes.values()
        if ep.open and ep.revision != revision
    ]


def excluded_windows(episodes: dict[str, Episode], prefix: str, width: int) -> set[int]:
    """Window starts inside the open episodes whose key starts with `prefix`: a
    rolling baseline must not learn a drift as the new normal while it lasts."""
    out: set[int] = set()
    for ep in episodes.values():
        if ep.open and ep.key.startswith(prefix):
            out.update(range(ep.since, ep.last + width, width))
    return out


def _first_line(message: str) -> str:
    return message.split("; ")[0]


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
