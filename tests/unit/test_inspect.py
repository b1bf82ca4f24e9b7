"""What `streamdrift inspect` lists first: the open episodes (the longest-running on
top), then the resolved ones (latest first), in the report and on the screen. Episodes
come from the real state machine; Redis is replaced by the state it would load."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from click.testing import CliRunner

from streamdrift import cli
from streamdrift.episodes import Episode, Observation, advance
from streamdrift.events import Alert
from streamdrift.report import _episodes
from streamdrift.store.episodes import EpisodeState

W = 600
T0 = 1_800_000_000 // W * W


def _alert(type_: str, feature: str, window: int) -> Alert:
    utc = datetime.fromtimestamp
    return Alert(
        alert_id="x" * 32,
        type=type_,
        severity="warning",
        model_id="m",
        model_version="1",
        feature=feature,
        statistic="psi",
        value=0.5,
        threshold=0.2,
        window_start=utc(window, tz=UTC),
        window_end=utc(window + W, tz=UTC),
        sample_size=1000,
        reference_size=5000,
        message=f"m: {type_} in '{feature}' in window {window}",
        created_at=utc(window + W, tz=UTC),
        context={"route": "ml-team"},
    )


def _state() -> tuple[EpisodeState, list[Alert]]:
    """Four episodes, stored in an order that is none of the expected ones: two
    resolved (f0 at T0 + 10 W, the volume one later) and two open (f1 since window 3,
    the outlier share since window 2, so it has lasted longer); and the alerts their
    transitions raised."""
    key = {"f0": "data_drift:f0", "f1": "data_drift:f1", "*": "outlier:share"}
    episodes: dict[str, Episode] = {}
    raised: list[Alert] = []

    def run(obs: list[Observation], now: float) -> None:
        raised.extend(
            advance(episodes, obs, model="m", revision=1, width=W, resolve_after=2, now=now)
        )

    def seen(k: str, type_: str, feature: str, i: int) -> Observation:
        return Observation(k, T0 + i * W, _alert(type_, feature, T0 + i * W), True, 0.5)

    def gone(k: str, i: int) -> Observation:
        return Observation(k, T0 + i * W, None, True)

    run(
        [seen(key["f0"], "data_drift", "f0", 0), gone(key["f0"], 1), gone(key["f0"], 2)],
        T0 + 10 * W,
    )
    run([seen(key["f1"], "data_drift", "f1", 3)], T0 + 11 * W)
    run([seen("volume:events", "volume", "events", 1)], T0 + 12 * W)
    run([gone("volume:events", 4), gone("volume:events", 5)], T0 + 20 * W)
    run([seen(key["*"], "outlier", "*", 2)], T0 + 21 * W)
    order = [key["f0"], key["f1"], "volume:events", key["*"]]
    return EpisodeState(episodes={k: episodes[k] for k in order}), raised


def _store(state: EpisodeState) -> SimpleNamespace:
    return SimpleNamespace(episodes=SimpleNamespace(load=lambda _model: state))


def test_the_report_lists_open_episodes_oldest_first_then_resolved_latest_first():
    state, _ = _state()
    rows = _episodes(_store(state), "m", W)  # type: ignore[arg-type]
    assert [(r["key"], r["status"]) for r in rows] == [
        ("outlier:share", "open"),
        ("data_drift:f1", "open"),
        ("volume:events", "resolved"),
        ("data_drift:f0", "resolved"),
    ]
    assert rows[0]["since"] < rows[1]["since"]
    assert rows[2]["resolved_at"] > rows[3]["resolved_at"]
    assert rows[1]["feature"] == "f1" and rows[1]["duration_seconds"] == W


def test_inspect_prints_the_open_episodes_before_anything_else(monkeypatch):
    """The screen: the open episodes' table right under the model's line, in the
    report's order, without the resolved ones; the windows and the alerts (resolved
    ones too) after it."""
    state, raised = _state()
    report = {
        "model_id": "m",
        "slice": None,
        "revision": 1,
        "reference": {"source": "ref.csv", "rows": 5000},
        "headline_metric": "roc_auc",
        "episodes": _episodes(_store(state), "m", W),  # type: ignore[arg-type]
        "estimation": None,
        "windows": [],
        "reference_performance": {},
        "dead_letters": {},
        "alerts": [a.model_dump(mode="json") for a in raised],
    }
    monkeypatch.setattr(cli, "_settings", lambda: None)
    monkeypatch.setattr(cli, "_store", lambda _settings: None)
    monkeypatch.setattr("streamdrift.report.model_report", lambda *_a, **_k: report)
    res = CliRunner().invoke(cli.main, ["inspect", "m"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("m revision 1, reference ref.csv")
    title = next(i for i, line in enumerate(lines) if "open episodes (2)" in line)
    windows = next(i for i, line in enumerate(lines) if line.strip() == "windows")
    listed = next(i for i, line in enumerate(lines) if line.startswith(f"{len(raised)} alert(s)"))
    assert 0 < title < windows < listed
    rows = [
        [c.strip() for c in line.strip("│ ").split("│")]
        for line in lines[title:windows]
        if line.startswith("│")
    ]
    since = [datetime.fromtimestamp(T0 + i * W, tz=UTC).isoformat()[:16] for i in (2, 3)]
    assert [r[:3] for r in rows] == [
        [since[0], "outlier", "*"],
        [since[1], "data_drift", "f1"],
    ]
    # the resolved episodes show only among the alerts, after the open ones
    alerts = lines[listed + 1 :]
    assert [line.split()[1] for line in alerts] == [a.status for a in raised]
    assert sum("resolved" in line for line in alerts) == 2
    assert not any("volume" in line or "'f0'" in line for line in lines[:listed])
