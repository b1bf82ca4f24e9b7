"""Model health on /metrics, end to end: a real worker over the real broker and Redis
counts windows of a model whose inputs drift, and its gauges are checked against numbers
computed here from the raw events (numpy, scipy, scikit-learn), not by the code under
test."""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import orjson
import pyarrow.csv as pcsv
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from streamdrift import synthetic
from streamdrift.config import MonitorConfig
from streamdrift.outliers import score as outlier_score
from streamdrift.profile import CategoricalProfile, NumericProfile
from streamdrift.reference import build_profile
from streamdrift.worker import Worker

from .conftest import produce, wait_for

pytestmark = pytest.mark.integration

WINDOW = 3600
MAX_FEATURES = 5


def _scrape(port: int) -> dict[str, dict[tuple, float]]:
    """Gauge name -> sorted label items -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _cohen_w(reference: np.ndarray, current: np.ndarray) -> float:
    """Cohen's w less its sampling noise, from its definition: sum (q - p)^2 / m over
    the bins either side has, m = (p + q) / 2, less (K - 1)(1/n_r + 1/n_c)."""
    r, c = reference.astype(float), current.astype(float)
    p, q = r / r.sum(), c / c.sum()
    m = (p + q) / 2
    keep = m > 0
    raw = float(np.sum((q[keep] - p[keep]) ** 2 / m[keep]))
    noise = (keep.sum() - 1) * (1 / r.sum() + 1 / c.sum())
    return float(np.sqrt(max(0.0, raw - noise)))


def _window_counts(ref: NumericProfile | CategoricalProfile, values: list) -> np.ndarray:
    """The window's counts on the reference's bins: below the minimum, between adjacent
    edges (the maximum in the last), above the maximum; or per reference category, then
    the reference's rare ones."""
    if isinstance(ref, NumericProfile):
        edges = np.asarray(ref.edges)
        bounds = [-np.inf, *edges[:-1], np.nextafter(edges[-1], np.inf), np.inf]
        counts, _ = np.histogram(np.asarray(values, dtype=float), bins=bounds)
        return counts
    return np.asarray([*(values.count(c) for c in ref.categories), 0])


def _reference_counts(ref: NumericProfile | CategoricalProfile) -> np.ndarray:
    if isinstance(ref, NumericProfile):
        return np.asarray(ref.counts)
    return np.asarray([*ref.categories.values(), ref.other])


def _events(model_id: str, start: int, n: int, seed: int, drifted: bool) -> list[dict]:
    """Prediction events spread over the window at `start`; drifted ones as the
    synthetic stream drifts (f00 moved by a standard deviation, f03's spread doubled,
    countries' frequencies reversed)."""
    rng = np.random.default_rng(seed)
    mask = np.ones(n, dtype=bool) if drifted else None
    x, country, device, score, label = synthetic._rows(rng, n, mask)
    events = []
    for i in range(n):
        features = dict(zip(synthetic.NUMERIC, x[i].round(4).tolist(), strict=True))
        features["country"] = synthetic.COUNTRIES[country[i]]
        features["device"] = synthetic.DEVICES[device[i]]
        events.append(
            {
                "prediction_id": f"{model_id}-{start}-{i}",
                "model_id": model_id,
                "model_version": "1",
                "timestamp": start + (i + 0.5) * WINDOW / n,
                "features": features,
                "prediction": {"score": round(float(score[i]), 5), "label": int(score[i] >= 0.5)},
                "outcome": int(label[i]),  # not sent: the label, produced separately
            }
        )
    return events


def _pairs(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [
        (
            e["prediction_id"].encode(),
            orjson.dumps({k: v for k, v in e.items() if k != "outcome"}),
        )
        for e in events
    ]


def test_model_health_gauges_match_the_events(settings, store, model_id, tmp_path):
    reference_csv = synthetic.write_reference(tmp_path / "r.csv", rows=5000)
    profile, _ = store.profiles.save(
        build_profile(
            model_id,
            reference_csv,
            prediction_column="score",
            label_column="is_fraud",
            config=MonitorConfig(window_seconds=WINDOW, evaluation_interval_seconds=0.2),
        )
    )
    current = int(time.time() // WINDOW * WINDOW)
    clean_start, drifted_start = current - 3 * WINDOW, current - 2 * WINDOW
    clean = _events(model_id, clean_start, 1500, seed=1, drifted=False)
    drifted = _events(model_id, drifted_start, 2000, seed=2, drifted=True)
    # A later window, not complete before its end (an hour or more away): the drifted
    # window is then the latest complete one, whatever the clock does during the test.
    later = _events(model_id, current + WINDOW, 100, seed=3, drifted=False)
    produce(settings, _pairs(clean + drifted + later))
    labelled = drifted[:1000]
    labels = [
        (
            e["prediction_id"].encode(),
            orjson.dumps(
                {
                    "prediction_id": e["prediction_id"],
                    "model_id": model_id,
                    "label": e["outcome"],
                    "timestamp": e["timestamp"] + 60,
                }
            ),
        )
        for e in labelled
    ]
    produce(settings, labels, topic=settings.labels_topic)

    worker = Worker(settings.model_copy(update={"metrics_max_features": MAX_FEATURES}))
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    model = (("model", model_id),)
    try:
        assert wait_for(lambda: worker.health is not None and worker.health.port, timeout=10)
        port = worker.health.port

        def settled() -> bool:
            g = _scrape(port)
            return (
                g.get("streamdrift_model_window_events", {}).get(model) == 2000
                and g.get("streamdrift_model_label_coverage", {}).get(model) == 0.5
            )

        assert wait_for(settled, timeout=90), _scrape(port)
        g = _scrape(port)
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()

    def one(name: str, **labels: str) -> float:
        return g[name][tuple(sorted({"model": model_id, **labels}.items()))]

    def features(name: str) -> dict[str, float]:
        """feature -> value of the model's series (an idle worker evaluates every model
        registered in Redis: other tests' too)."""
        rows = [dict(labels) | {"value": v} for labels, v in g[name].items()]
        return {r["feature"]: r["value"] for r in rows if r["model"] == model_id}

    assert one("streamdrift_model_window_start_timestamp_seconds") == drifted_start
    assert one("streamdrift_model_window_seconds") == WINDOW
    assert one("streamdrift_model_window_events") == 2000

    # Drift: the default statistic, Cohen's w, of every feature on the reference's bins,
    # computed from the raw values; the top ones by it (ties by name), all against 0.3
    expected = {}
    for name, ref in profile.features.items():
        values = [e["features"][name] for e in drifted]
        expected[name] = _cohen_w(_reference_counts(ref), _window_counts(ref, values))
    top = sorted(expected, key=lambda f: (-expected[f], f))[:MAX_FEATURES]
    exported = features("streamdrift_model_feature_drift")
    assert set(exported) == set(top)
    for name in top:
        assert exported[name] == pytest.approx(expected[name], rel=1e-9), name
    flags = features("streamdrift_model_feature_drifted")
    assert set(flags) == set(top)
    assert {f for f, v in flags.items() if v == 1.0} == {"f00", "f03", "country"}
    assert {f for f, v in flags.items() if v == 0.0} == set(top) - {"f00", "f03", "country"}
    assert one("streamdrift_model_drifted_features") == 3
    assert one("streamdrift_model_drift_threshold", statistic="cohen_w") == 0.3

    # The prediction's drift, on the prediction's reference bins.
    scores = [e["prediction"]["score"] for e in drifted]
    prediction_w = _cohen_w(
        _reference_counts(profile.prediction), _window_counts(profile.prediction, scores)
    )
    assert one("streamdrift_model_output_drift", output="prediction", statistic="cohen_w") == (
        pytest.approx(prediction_w, rel=1e-9, abs=1e-12)
    )
    assert one("streamdrift_model_output_drifted", output="label") in (0.0, 1.0)

    # Performance: ROC-AUC of the labelled pairs (within the 200 score bins' bound), and
    # the reference's, from the reference file itself.
    y = [e["outcome"] for e in labelled]
    auc = one("streamdrift_model_performance", metric="roc_auc")
    assert auc == pytest.approx(
        roc_auc_score(y, [e["prediction"]["score"] for e in labelled]), abs=0.005
    )
    ref_rows = pcsv.read_csv(reference_csv).to_pydict()
    reference_auc = one("streamdrift_model_performance_reference", metric="roc_auc")
    assert reference_auc == pytest.approx(
        roc_auc_score(ref_rows["is_fraud"], ref_rows["score"]), abs=0.005
    )
    assert one("streamdrift_model_label_coverage") == 0.5

    # Outliers: the share of the window's events the profile's outlier model flags.
    outliers = profile.outliers
    x = np.asarray([[e["features"][f] for f in outliers.features] for e in drifted])
    flagged = int((outlier_score(x, *outliers.arrays()) > outliers.threshold).sum())
    assert one("streamdrift_model_outlier_share") == pytest.approx(flagged / 2000, abs=1 / 2000)
    assert one("streamdrift_model_outlier_rate") == outliers.rate

    episodes = one("streamdrift_model_open_episodes")
    assert episodes >= 0 and episodes == int(episodes)
