"""The episode state machine: one open and one resolved alert per episode, one
escalation per rise in severity, nothing for findings in a period already judged."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from streamdrift.episodes import (
    Episode,
    Observation,
    advance,
    episode_id,
    excluded_windows,
    retire,
    transition_id,
)
from streamdrift.events import Alert

W = 3600
T0 = 1_800_000_000 // W * W


def _alert(window: int, value: float = 0.5, severity: str = "warning") -> Alert:
    utc = datetime.fromtimestamp
    return Alert(
        alert_id="x" * 32,
        type="data_drift",
        severity=severity,
        model_id="m",
        model_version="1",
        feature="f0",
        statistic="psi",
        value=value,
        threshold=0.2,
        window_start=utc(window, tz=UTC),
        window_end=utc(window + W, tz=UTC),
        sample_size=1000,
        reference_size=5000,
        message=f"m: feature 'f0' drifted in window {window}; 1 of 3 features drifting",
        created_at=utc(window + W, tz=UTC),
        context={"route": "ml-team"},
    )


def _present(i: int, value: float = 0.5, severity: str = "warning") -> Observation:
    return Observation(
        "data_drift:f0", T0 + i * W, _alert(T0 + i * W, value, severity), True, value
    )


def _absent(i: int, closed: bool = True) -> Observation:
    return Observation("data_drift:f0", T0 + i * W, None, closed)


def _run(episodes: dict[str, Episode], obs: list[Observation], now: float = 2e9) -> list[Alert]:
    return advance(episodes, obs, model="m", revision=1, width=W, resolve_after=2, now=now)


def test_an_episode_opens_once_and_resolves_once():
    episodes: dict[str, Episode] = {}
    raised = _run(episodes, [_present(0, 0.3), _present(1, 0.9), _present(2, 0.4)])
    assert [a.status for a in raised] == ["open"]
    (opened,) = raised
    eid = episode_id("m", 1, "data_drift:f0", T0)
    assert opened.episode_id == eid and opened.alert_id == transition_id(eid, "open")
    assert opened.since == opened.window_start == datetime.fromtimestamp(T0, tz=UTC)
    # the same windows evaluated again (more events came): nothing new
    assert _run(episodes, [_present(2, 0.45)]) == []
    assert _run(episodes, [_absent(3)]) == []  # one clean window: a lull
    (resolved,) = _run(episodes, [_absent(4)])
    assert resolved.status == "resolved" and resolved.episode_id == eid
    assert resolved.alert_id == transition_id(eid, "resolved")
    assert resolved.context["duration_seconds"] == 3 * W
    assert resolved.value == 0.9  # the peak
    assert (
        resolved.context["peak"]["window_start"]
        == datetime.fromtimestamp(T0 + W, tz=UTC).isoformat()
    )
    assert resolved.window_start == opened.since
    assert resolved.window_end == datetime.fromtimestamp(T0 + 3 * W, tz=UTC)
    assert not episodes["data_drift:f0"].open
    assert _run(episodes, [_absent(5), _absent(6)]) == []


def test_a_lull_shorter_than_resolve_after_keeps_the_episode():
    episodes: dict[str, Episode] = {}
    raised = _run(episodes, [_present(0), _absent(1), _present(2), _absent(3), _present(4)])
    assert [a.status for a in raised] == ["open"]
    assert episodes["data_drift:f0"].clear == []
    assert episodes["data_drift:f0"].last == T0 + 4 * W


def test_absence_in_an_incomplete_window_does_not_end_an_episode():
    episodes: dict[str, Episode] = {}
    _run(episodes, [_present(0)])
    assert _run(episodes, [_absent(1), _absent(2, closed=False)]) == []
    assert episodes["data_drift:f0"].open
    # the window completes without the condition: now it counts
    (resolved,) = _run(episodes, [_absent(2)])
    assert resolved.status == "resolved"


def test_severity_rising_escalates_once():
    episodes: dict[str, Episode] = {}
    raised = _run(
        episodes,
        [
            _present(0, 0.3),
            _present(1, 0.6, "critical"),
            _present(2, 0.7, "critical"),
            _present(3, 0.3, "warning"),
        ],
    )
    assert [a.status for a in raised] == ["open", "escalated"]
    assert raised[1].severity == "critical"
    assert raised[1].alert_id == transition_id(raised[0].episode_id, "escalated", "critical")
    (resolved,) = _run(episodes, [_absent(4), _absent(5)])
    assert resolved.severity == "critical"  # an episode is as bad as it got


def test_late_findings_in_a_resolved_period_raise_nothing_and_a_return_is_new():
    episodes: dict[str, Episode] = {}
    first = _run(episodes, [_present(0), _absent(1), _absent(2)])
    assert [a.status for a in first] == ["open", "resolved"]
    # a late re-evaluation of window 1 finds the condition after all: already judged
    assert _run(episodes, [_present(1)]) == []
    (again,) = _run(episodes, [_present(5)])
    assert again.status == "open" and again.episode_id != first[0].episode_id
    assert again.since == datetime.fromtimestamp(T0 + 5 * W, tz=UTC)


def test_same_state_and_windows_give_the_same_alert_ids():
    """A crash before the commit: the next evaluator starts from the saved state and
    reaches the same transitions under the same ids (so claims dedupe them)."""
    base: dict[str, Episode] = {}
    _run(base, [_present(0)])
    obs = [_present(1, 0.9, "critical"), _absent(2), _absent(3)]
    a = _run(copy.deepcopy(base), obs, now=2e9)
    b = _run(copy.deepcopy(base), obs, now=2e9 + 500)
    assert [x.alert_id for x in a] == [x.alert_id for x in b]
    assert [x.status for x in a] == ["escalated", "resolved"]


def test_a_new_reference_retires_open_episodes():
    episodes: dict[str, Episode] = {}
    _run(episodes, [_present(0)])
    (resolved,) = retire(episodes, revision=2, width=W, now=2e9)
    assert resolved.status == "resolved"
    assert "reference was replaced" in resolved.context["resolved_because"]
    assert retire(episodes, revision=2, width=W, now=2e9) == []


def test_windows_of_open_episodes_are_excluded_from_rolling_baselines():
    episodes: dict[str, Episode] = {}
    _run(episodes, [_present(2), _present(4)])
    assert excluded_windows(episodes, "data_drift:", W) == {T0 + i * W for i in (2, 3, 4)}
    assert excluded_windows(episodes, "volume:", W) == set()


def test_a_window_found_late_before_the_episode_moves_its_start_back():
    episodes: dict[str, Episode] = {}
    (opened,) = _run(episodes, [_present(3)])
    assert _run(episodes, [_present(1), _present(2)]) == []
    (resolved,) = _run(episodes, [_absent(4), _absent(5)])
    assert opened.since == datetime.fromtimestamp(T0 + 3 * W, tz=UTC)
    assert resolved.since == resolved.window_start == datetime.fromtimestamp(T0 + W, tz=UTC)
    assert resolved.context["duration_seconds"] == 3 * W
    assert resolved.episode_id == opened.episode_id


def test_a_condition_watched_on_several_metrics_resolves_with_its_peaks_metric():
    """One performance episode whose windows fired on different metrics: the resolved
    alert repeats the alert it published (the open one) and reports the peak with the
    metric the peak was measured in."""

    def seen(i: int, statistic: str, value: float, magnitude: float) -> Observation:
        alert = _alert(T0 + i * W, value).model_copy(
            update={
                "type": "performance_degradation",
                "feature": "roc_auc",
                "statistic": statistic,
                "message": f"m: {statistic} {value:.3f} in window {i}",
            }
        )
        return Observation("performance_degradation:roc_auc", T0 + i * W, alert, True, magnitude)

    episodes: dict[str, Episode] = {}
    raised = _run(
        episodes,
        [
            seen(0, "calibration_error", 0.21, 3.0),
            seen(1, "log_loss", 0.93, 8.0),
            seen(2, "accuracy", 0.61, 2.0),
        ],
    )
    assert [a.status for a in raised] == ["open"] and raised[0].statistic == "calibration_error"
    key = "performance_degradation:roc_auc"
    (resolved,) = _run(episodes, [Observation(key, T0 + i * W, None) for i in (3, 4)])
    assert resolved.feature == "roc_auc"
    assert resolved.statistic == "log_loss" and resolved.value == 0.93
    assert resolved.context["peak"]["statistic"] == "log_loss"
    assert "calibration_error 0.210 in window 0 (peak log_loss 0.93 in window" in resolved.message
    # an episode stored before the peak's statistic was kept reads as before
    doc = episodes[key].to_json()
    del doc["peak_statistic"]
    assert Episode.from_json(doc).peak_statistic is None
