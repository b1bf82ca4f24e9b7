"""Multivariate drift and categorical depth end to end, on the real broker and Redis: a
correlation that flips sign with every input's distribution unchanged raises
`multivariate_drift` naming both features (and the reconstruction error drifts with
it); an identifier leaking into a category is a `cardinality` finding; a stationary
stream raises neither."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import jsonschema
import orjson
import pytest

from streamdrift import synthetic
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts, register_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 600
EVENTS = 10_000
WINDOWS = 4


def _register(settings, model_id: str, tmp_path: Path) -> None:
    ref = synthetic.write_pair_reference(tmp_path / "reference.csv")
    register_model(settings, model_id, ref, "--prediction-column", "score", window_seconds=WINDOW)


def _run(settings, model_id: str, **changes: float) -> list[int]:
    """Produce the pair model's stream over four whole windows, count it with a worker,
    and return the window starts."""
    start = (time.time() // WINDOW - WINDOWS - 1) * WINDOW
    events = synthetic.pair_events(model_id, EVENTS, start, WINDOWS * WINDOW, **changes)
    produce(settings, events)
    stats = Worker(settings).run(max_seconds=90, install_signals=False, until_messages=EVENTS)
    assert stats.counted == EVENTS
    return [int(start) + k * WINDOW for k in range(WINDOWS)]


def _table_row(text: str, header_word: str, first_cell: str) -> dict[str, str]:
    """The row of a rich table printed by `inspect` whose first cell is `first_cell`,
    as header -> cell, from the table whose header holds `header_word`."""
    lines = text.splitlines()
    # rich draws the header's separators heavy (┃), the rows' light (│)
    head = next(i for i, line in enumerate(lines) if "┃" in line and header_word in line)
    headers = [h.strip() for h in lines[head].split("┃")[1:-1]]
    for line in lines[head + 1 :]:
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == first_cell:
            return dict(zip(headers, cells, strict=True))
    raise AssertionError(f"no row {first_cell!r} under {header_word!r}:\n{text}")


def _start(alert: dict) -> int:
    return int(datetime.fromisoformat(alert["window_start"]).timestamp())


def _inspect(settings, model_id: str) -> dict:
    report = cli(settings, "inspect", model_id, "--json")
    assert report.returncode == 0, report.stderr
    return orjson.loads(report.stdout)


def test_a_flipped_correlation_raises_multivariate_drift_naming_both_features(
    settings, store, model_id, tmp_path
):
    _register(settings, model_id, tmp_path)
    starts = _run(settings, model_id, flip_at=0.5)
    alerts = read_alerts(settings, now=True)
    schema = orjson.loads((ROOT / "schemas" / "alert.schema.json").read_bytes())
    for a in alerts:
        jsonschema.validate(a, schema)
    # every input keeps its distribution: no feature drifts, nor the score (amount and
    # age make it); the robust Mahalanobis outlier share sees the joint change too
    assert {a["type"] for a in alerts} <= {"multivariate_drift", "outlier"}, [
        a["message"] for a in alerts
    ]
    found = {a["context"]["kind"]: a for a in alerts if a["type"] == "multivariate_drift"}
    assert set(found) == {"correlation", "reconstruction_error"}
    assert all(a["status"] == "open" for a in found.values())
    assert all(_start(a) == starts[2] for a in found.values())  # one episode each

    corr = found["correlation"]
    assert corr["feature"] == "amount|balance"
    assert corr["context"]["features"] == ["amount", "balance"]
    assert "'amount' and 'balance'" in corr["message"]
    (pair,) = corr["context"]["pairs"]
    assert pair["features"] == ["amount", "balance"]
    assert pair["reference"] == pytest.approx(0.8, abs=0.03)
    assert pair["window"] == pytest.approx(-0.8, abs=0.05)
    assert corr["context"]["route"] == "ml-team" and corr["severity"] == "critical"

    error = found["reconstruction_error"]
    assert error["statistic"] == "cohen_w" and error["value"] >= error["threshold"] == 0.3
    assert error["context"]["drifting_features"] == []
    assert error["context"]["route"] == "ml-team"

    open_keys = {e.key for e in store.episodes.load(model_id).open()}
    assert {"multivariate_drift:correlation", "multivariate_drift:reconstruction_error"} <= (
        open_keys
    )
    doc = _inspect(settings, model_id)
    windows = doc["windows"]
    assert [w["multivariate"]["correlation"]["changed"] != [] for w in windows] == [
        False,
        False,
        True,
        True,
    ]
    assert [w["multivariate"]["reconstruction_error"]["drifted"] for w in windows] == [
        False,
        False,
        True,
        True,
    ]
    assert all(w["drifting"] == [] for w in windows)
    table = cli(settings, "inspect", model_id)
    assert table.returncode == 0, table.stderr
    (line,) = [x for x in table.stdout.splitlines() if x.startswith("correlations:")]
    assert "CHANGED: amount|balance +0.8" in line and "-> -0.8" in line, line


def test_an_identifier_leaking_into_a_category_is_a_cardinality_finding(
    settings, model_id, tmp_path
):
    """From half-way, 30 % of the events carry a transaction id as their merchant: ~750
    distinct values in a window of 2,500 events against the reference's 20."""
    _register(settings, model_id, tmp_path)
    starts = _run(settings, model_id, leak_at=0.5, leak_share=0.3)
    alerts = read_alerts(settings, now=True)
    cardinality = [a for a in alerts if a["statistic"] == "cardinality"]
    assert len(cardinality) == 1, [a["message"] for a in alerts]
    (found,) = cardinality
    assert found["type"] == "data_quality" and found["feature"] == "merchant"
    assert _start(found) == starts[2]
    assert found["context"]["example"].startswith("txn-")
    assert found["context"]["events"] > 5 * 20  # distinct values
    assert found["context"]["route"] == "data-team"
    assert not [a for a in alerts if a["type"] == "multivariate_drift"]

    doc = _inspect(settings, model_id)
    merchant = [w["categorical_depth"]["merchant"] for w in doc["windows"]]
    leaked = [round(EVENTS / WINDOWS * 0.3)] * 2
    assert [m["reference_cardinality"] for m in merchant] == [20] * 4
    assert [m["distinct"] for m in merchant[:2]] == [20, 20]
    for m, ids in zip(merchant[2:], leaked, strict=True):
        assert m["distinct"] == pytest.approx(20 + ids, rel=0.15)
    # the entropy: as the reference's before; more than a bit higher once ids leak in
    assert all(abs(m["entropy_change"]) < 0.05 for m in merchant[:2])
    assert all(m["entropy_change"] > 1.0 for m in merchant[2:])
    # what `inspect` prints for the latest window: the header above each cell
    table = cli(settings, "inspect", model_id)
    assert table.returncode == 0, table.stderr
    row = _table_row(table.stdout, "reference cardinality", "merchant")
    assert row["distinct"] == f"{merchant[-1]['distinct']:,}"
    assert row["reference cardinality"] == "20"
    assert row["change"] == f"{merchant[-1]['entropy_change']:+.3f}"
    # all four windows at once: one union of their HyperLogLogs
    pooled = doc["distinct_values"]["merchant"]
    assert pooled == pytest.approx(sum(m["distinct"] for m in merchant[2:]) + 20, rel=0.05)


def test_a_stationary_stream_raises_neither(settings, store, model_id, tmp_path):
    _register(settings, model_id, tmp_path)
    _run(settings, model_id)
    alerts = read_alerts(settings, now=True)
    assert alerts == [], [a["message"] for a in alerts]
    doc = _inspect(settings, model_id)
    for w in doc["windows"]:
        mv = w["multivariate"]
        assert mv["correlation"]["changed"] == [] and mv["correlation"]["pairs_judged"] == 6
        assert not mv["reconstruction_error"]["drifted"]
        assert mv["reconstruction_error"]["judged_by"] == ["reference"]
        assert w["categorical_depth"]["merchant"]["distinct"] == 20
        assert not [q for q in w["quality"] if q["kind"] == "cardinality"]
    assert store.episodes.load(model_id).episodes == {}
