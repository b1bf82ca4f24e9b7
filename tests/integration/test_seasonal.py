"""A stream with a daily rhythm, end to end on the real broker and Redis: judged against
a reference from one time of day it alerts all day long; judged against the same time
on earlier days it is quiet, and still catches a real change.

The "day" is 24 windows of a minute (season_seconds 1440), so four days of history are
96 windows, well inside the retention, produced in seconds."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts

pytestmark = pytest.mark.integration

WINDOW = 60
DAY = 24 * WINDOW
DAYS = 4
PER_WINDOW = 300
#: on the last day, from this window of the day on, `amount` moves 1.5 sd up
DRIFT_FROM = 12


def _rows(rng: np.random.Generator, ts: np.ndarray, drift: np.ndarray | None = None):
    """`load` follows the day (mean 10 + 6 cos(2π · time of day), sd 2), and so does the
    mix of `channel`; `amount` does not, unless `drift` says so."""
    c = np.cos(2 * np.pi * (ts % DAY) / DAY)
    load = rng.normal(10 + 6 * c, 2.0)
    amount = rng.normal(50.0, 10.0, ts.size)
    if drift is not None:
        amount[drift] += 15.0
    u = rng.random(ts.size)
    web, app = 0.5 + 0.3 * c, 0.35 - 0.2 * c
    channel = np.where(u < web, "web", np.where(u < web + app, "app", "store"))
    return load, amount, channel


def _reference(path: Path) -> Path:
    """20,000 rows from the night only: 0.45 to 0.55 of the day, where load is lowest."""
    rng = np.random.default_rng(1)
    ts = rng.uniform(0.45 * DAY, 0.55 * DAY, 20_000)
    load, amount, channel = _rows(rng, ts)
    pcsv.write_csv(pa.table({"load": load, "amount": amount, "channel": channel}), path)
    return path


def _stream(model_id: str, start: int, drift: bool):
    rng = np.random.default_rng(2)  # the same traffic for every model
    offsets = (np.arange(PER_WINDOW) + 0.5) * WINDOW / PER_WINDOW
    ts = np.concatenate([start + k * WINDOW + offsets for k in range(DAYS * 24)])
    moved = (ts >= start + (DAYS - 1) * DAY + DRIFT_FROM * WINDOW) if drift else None
    load, amount, channel = _rows(rng, ts, moved)
    for i in range(ts.size):
        event = {
            "prediction_id": f"{model_id}-{i}",
            "model_id": model_id,
            "model_version": "1",
            "timestamp": float(ts[i]),
            "features": {
                "load": round(float(load[i]), 4),
                "amount": round(float(amount[i]), 4),
                "channel": str(channel[i]),
            },
            "prediction": {"score": 0.5, "label": 0},
        }
        yield event["prediction_id"].encode(), orjson.dumps(event)


def _register(settings, model_id: str, reference: Path, config: Path, baselines: list[str], *extra):
    config.write_bytes(
        orjson.dumps(
            {
                "window_seconds": WINDOW,
                # evaluated once, when the worker stops, every window whole
                "evaluation_interval_seconds": 600,
                "outlier_alerts_per_window": 0,
                "drift": {"baselines": baselines, "season_seconds": DAY, "seasons": 3},
            }
        )
    )
    res = cli(
        settings,
        "register",
        model_id,
        "--reference",
        str(reference),
        "--config",
        str(config),
        *extra,
    )
    assert res.returncode == 0, res.stderr
    assert f"drift against {' and '.join(baselines)}" in res.stdout
    return res.stdout


def _drift_alerts(alerts: list[dict], model_id: str) -> set[tuple[str, int]]:
    """(feature, window) of the drift episodes opened."""
    return {
        (a["feature"], int(datetime.fromisoformat(a["window_start"]).timestamp()))
        for a in alerts
        if a["type"] == "data_drift" and a["model_id"] == model_id and a["status"] == "open"
    }


def _drifting(settings, model_id: str) -> set[tuple[str, int]]:
    """(feature, window) of every drift verdict, as `inspect` shows them."""
    doc = orjson.loads(cli(settings, "inspect", model_id, "--json").stdout)
    return {
        (f, int(datetime.fromisoformat(w["start"]).timestamp()))
        for w in doc["windows"]
        for f in w["drifting"]
    }


def test_a_daily_rhythm_is_not_drift_but_a_change_on_the_day_is(settings, store, tmp_path):
    reference = _reference(tmp_path / "night.csv")
    # feature importance beside the reference file, and another given to one model
    (tmp_path / "night.csv.importance.json").write_bytes(orjson.dumps({"load": 1}))
    given = tmp_path / "importance.json"
    given.write_bytes(orjson.dumps({"amount": 3, "load": 1, "channel": 1}))
    uid = settings.consumer_group.rsplit("-", 1)[1]
    by_reference, by_season, drifted = f"ref-{uid}", f"season-{uid}", f"drift-{uid}"
    said = _register(settings, by_reference, reference, tmp_path / "a.json", ["reference"])
    # the first line says what was registered; the columns follow (what it understood)
    first = said.splitlines()[0]
    assert first.endswith("; feature importance from night.csv.importance.json")
    _register(settings, by_season, reference, tmp_path / "b.json", ["seasonal"])
    said = _register(
        settings,
        drifted,
        reference,
        tmp_path / "c.json",
        ["seasonal"],
        "--feature-importance",
        str(given),
    )
    assert said.splitlines()[0].endswith("; feature importance from importance.json")

    start = int(time.time() // DAY * DAY - DAYS * DAY)  # whole days, all in the past
    total = 0
    for model_id, drift in ((by_reference, False), (by_season, False), (drifted, True)):
        total += produce(settings, _stream(model_id, start, drift))
    stats = Worker(settings).run(max_seconds=240, install_signals=False, until_messages=total)
    assert stats.counted == total

    alerts = read_alerts(settings, now=True)
    last_day = [start + (DAYS - 1) * DAY + k * WINDOW for k in range(24)]
    first_day = {start + k * WINDOW for k in range(24)}

    # against the night's reference, the day's rhythm is drift in most windows of the
    # day: one episode, since the first day (windows between resolve it now and then)
    verdicts = _drifting(settings, by_reference)
    windows = {w for _, w in verdicts if w in last_day}
    assert len(windows) >= 16, sorted((w - last_day[0]) // WINDOW for w in windows)
    assert {f for f, _ in verdicts} <= {"load", "channel"}
    opened = _drift_alerts(alerts, by_reference)
    # ("*": the importance-weighted figure, from the importance beside the reference)
    assert opened and {f for f, _ in opened} <= {"load", "channel", "*"}

    # against the same time on earlier days: silent on the last day; on the first day,
    # with no earlier day yet, the reference judges
    verdicts = _drifting(settings, by_season)
    assert {(f, w) for f, w in verdicts if w in last_day} == set()
    assert {w for _, w in verdicts} <= first_day and verdicts
    assert {w for _, w in _drift_alerts(alerts, by_season)} <= first_day

    # and a real change on the last day is caught, in each window it lasts, alone: one
    # episode, opened by its first window
    verdicts = _drifting(settings, drifted)
    assert {(f, w) for f, w in verdicts if w in last_day} == {
        ("amount", w) for w in last_day[DRIFT_FROM:]
    }
    found = _drift_alerts(alerts, drifted)
    assert {(f, w) for f, w in found if w in last_day} == {("amount", last_day[DRIFT_FROM])}
    found = verdicts

    # inspect judges as the evaluator did, and says against what
    doc = orjson.loads(cli(settings, "inspect", drifted, "--json").stdout)
    windows_by_start = {
        int(datetime.fromisoformat(w["start"]).timestamp()): w for w in doc["windows"]
    }
    shown = {(f, s) for s, w in windows_by_start.items() for f in w["drifting"] if s in last_day}
    assert shown == {(f, w) for f, w in found if w in last_day}
    latest = windows_by_start[last_day[-1]]
    assert latest["baselines"]["seasonal"]["windows"] == 3
    assert latest["baselines"]["seasonal"]["events"] == 3 * PER_WINDOW
    load = latest["features"]["load"]
    assert load["judged_by"] == ["seasonal"] and not load["drifted"]
    assert load["psi"] > 0.2  # against the reference it would be drift
    assert (
        load["baselines"]["seasonal"]["available"] and load["baselines"]["seasonal"]["value"] < 0.2
    )
    assert latest["features"]["amount"]["drifted"]
    # amount carries 3/5 of the importance and moved far beyond its line (capped at 3)
    weighted = latest["importance_weighted_drift"]
    assert weighted["drifted"] and weighted["value"] >= 0.6 * 3
    assert weighted["top"][0]["feature"] == "amount"
    assert weighted["top"][0]["importance"] == pytest.approx(0.6)
    quiet = orjson.loads(cli(settings, "inspect", by_season, "--json", "--last", "1").stdout)
    assert quiet["windows"][0]["importance_weighted_drift"]["drifted"] is False
    first = windows_by_start[start]
    assert first["baselines"]["seasonal"]["windows"] == 0
    assert first["features"]["load"]["judged_by"] == ["reference"]
    assert first["features"]["load"]["baselines"]["seasonal"]["available"] is False

    table = cli(settings, "inspect", drifted, "--last", "1")
    assert table.returncode == 0, table.stderr
    assert "judged against: seasonal (3 windows," in table.stdout
    assert f"{3 * PER_WINDOW:,} events)" in table.stdout
    assert f"importance-weighted drift {weighted['value']:.3f} (threshold 0.5, DRIFTED)" in (
        table.stdout
    )
    features = _table(table.stdout, "feature")
    assert (features["load"]["judged by"], features["load"]["drifted"]) == ("seasonal", "")
    assert (features["amount"]["judged by"], features["amount"]["drifted"]) == ("seasonal", "YES")


def _table(text: str, first: str) -> dict[str, dict[str, str]]:
    """The rows of the rich table whose first column is `first`: name -> header -> cell."""
    lines = text.splitlines()
    top = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("┃") and line.strip("┃").split("┃")[0].strip() == first
    )
    headers = [h.strip() for h in lines[top].strip("┃").split("┃")]
    rows = {}
    for line in lines[top + 2 :]:
        if not line.startswith("│"):
            break
        cells = [c.strip() for c in line.strip("│").split("│")]
        rows[cells[0]] = dict(zip(headers, cells, strict=True))
    return rows
