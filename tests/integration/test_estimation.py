"""Performance estimated before labels, end to end on the real broker and Redis: a loan
model whose outcomes take months to arrive (here: never). Its applicants move to a
narrow segment where it ranks worse; the estimated ROC-AUC must fall with the true one
(computed here from outcomes no worker ever sees) and open an
`estimated_performance_degradation` episode, without a single label. A stationary
stream raises no such alert."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from sklearn.metrics import roc_auc_score

from streamdrift import synthetic
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts, register_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 600
WINDOWS = 4
EVENTS = 12_000


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _register(settings, model_id: str, tmp_path: Path) -> None:
    ref = synthetic.write_loan_reference(tmp_path / "loans.csv")
    register_model(
        settings, model_id, ref, "--prediction-column", "score", "--label-column", "default",
        window_seconds=WINDOW,
    )  # fmt: skip


def _run(settings, model_id: str, shift_from: float | None):
    """Produce the stream's predictions (and no label), run a worker through them;
    returns the window starts and each window's true ROC-AUC, from the outcomes kept
    here."""
    start = (time.time() // WINDOW - WINDOWS - 1) * WINDOW  # aligned: whole windows
    events, scores, outcomes = synthetic.loan_events(
        model_id, EVENTS, start, WINDOWS * WINDOW, shift_from=shift_from, seed=3
    )
    produce(settings, events)
    stats = Worker(settings).run(max_seconds=90, install_signals=False, until_messages=EVENTS)
    assert stats.counted == EVENTS
    per_window = EVENTS // WINDOWS
    starts = [int(start) + k * WINDOW for k in range(WINDOWS)]
    truth = [
        roc_auc_score(
            outcomes[k * per_window : (k + 1) * per_window],
            scores[k * per_window : (k + 1) * per_window],
        )
        for k in range(WINDOWS)
    ]
    return starts, truth


def _inspect(settings, model_id: str) -> dict:
    res = cli(settings, "inspect", model_id, "--json")
    assert res.returncode == 0, res.stderr
    return orjson.loads(res.stdout)


def test_a_population_shift_lowers_the_estimate_and_opens_an_episode_without_labels(
    settings, store, model_id, tmp_path
):
    _register(settings, model_id, tmp_path)
    starts, truth = _run(settings, model_id, shift_from=0.5)
    assert truth[2] < truth[0] - 0.1 and truth[3] < truth[1] - 0.1  # the shift costs AUC

    everything = read_alerts(settings, now=True)
    schema = orjson.loads((ROOT / "schemas" / "alert.schema.json").read_bytes())
    for a in everything:
        jsonschema.validate(a, schema)
    estimated = [a for a in everything if a["type"] == "estimated_performance_degradation"]
    # one episode, opened by the first shifted window and not repeated by the second
    assert [(a["status"], a["feature"], a["window_start"]) for a in estimated] == [
        ("open", "roc_auc", _iso(starts[2]))
    ], [a["message"] for a in everything]
    alert = estimated[0]
    assert alert["statistic"] == "estimated_roc_auc" and alert["context"]["route"] == "ml-team"
    assert alert["value"] < alert["threshold"] < alert["context"]["reference"]["estimated"]
    assert alert["sample_size"] == EVENTS // WINDOWS
    assert alert["value"] == pytest.approx(truth[2], abs=0.03)
    assert alert["context"]["labelled"] == 0
    assert "income" in {d["feature"] for d in alert["context"]["drifting_features"]}
    (episode,) = [e for e in store.episodes.load(model_id).open() if e.key.startswith("est")]
    assert episode.key == "estimated_performance_degradation:roc_auc"
    assert episode.last == starts[3]
    # no label was ever sent: nothing joined, no realized performance, no such alert
    assert store.counters.join_stats(model_id).get("joined", 0) == 0
    assert not [a for a in everything if a["type"] == "performance_degradation"]

    doc = _inspect(settings, model_id)
    assert doc["estimation"]["metric"] == "roc_auc" and doc["estimation"]["calibrated"]
    reference = doc["estimation"]["reference"]["roc_auc"]
    assert reference["estimated"] == pytest.approx(reference["realized"], abs=0.01)
    shown = [w["estimated_performance"] for w in doc["windows"]]
    assert [e["predictions"] for e in shown] == [EVENTS // WINDOWS] * WINDOWS
    assert [e["degraded"] for e in shown] == [False, False, True, True]
    for e, auc in zip(shown, truth, strict=True):
        roc = e["metrics"]["roc_auc"]
        assert roc["value"] == pytest.approx(auc, abs=0.03)
        assert roc["lower"] < roc["value"] < roc["upper"]
        assert roc["realized"] is None  # no labels
    assert shown[3]["metrics"]["roc_auc"]["upper"] < reference["estimated"]

    table = cli(settings, "inspect", model_id)
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "start (UTC)" in line)
    assert "estimated roc_auc" in header
    row = next(line for line in table.stdout.splitlines() if _iso(starts[3])[:16] in line)
    roc = shown[3]["metrics"]["roc_auc"]
    cell = f"{roc['value']:.3f} [{roc['lower']:.3f}, {roc['upper']:.3f}] !"
    assert cell in row
    # the cell sits under its header
    assert abs(row.index(cell) - header.index("estimated roc_auc")) < 3


def test_a_stationary_stream_raises_no_estimated_degradation(settings, store, model_id, tmp_path):
    _register(settings, model_id, tmp_path)
    _, truth = _run(settings, model_id, shift_from=None)
    alerts = read_alerts(settings, now=True)
    assert not [a for a in alerts if a["type"] == "estimated_performance_degradation"]
    assert not [e for e in store.episodes.load(model_id).open() if e.key.startswith("est")]
    doc = _inspect(settings, model_id)
    shown = [w["estimated_performance"] for w in doc["windows"]]
    assert [e["degraded"] for e in shown] == [False] * WINDOWS
    values = np.array([e["metrics"]["roc_auc"]["value"] for e in shown])
    np.testing.assert_allclose(values, truth, atol=0.03)
