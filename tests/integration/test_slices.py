"""Slices against the real broker and Redis: per-version and per-segment window state
counted exactly, per-version performance equal to scikit-learn's on the same ids, and
alerts that name the version or the segment a problem is in."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from sklearn.metrics import roc_auc_score

from streamdrift.champion import JOINT_BINS
from streamdrift.champion import compare as compare_pairs
from streamdrift.monitors import window_performance
from streamdrift.profile import bin_index
from streamdrift.worker import Worker

from .conftest import cli, produce, read_alerts, register_model, write_config

pytestmark = pytest.mark.integration

WINDOW = 600
REGIONS = ("eu", "us", "apac")
SHARES = (0.3, 0.5, 0.2)
#: scores sit at the middle of the join's score bins, so binned and exact ROC-AUC agree
BINS = 200


def _score(logit: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-logit))
    return (np.clip(np.floor(p * BINS), 0, BINS - 1) + 0.5) / BINS


def _rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    x = rng.normal(size=(n, 4))
    region = rng.choice(REGIONS, size=n, p=SHARES)
    logit = 1.5 * x[:, 0] + x[:, 1]
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return {"x": x, "region": region, "logit": logit, "label": label}


def _register(
    settings,
    model_id: str,
    tmp_path: Path,
    ref: dict[str, np.ndarray] | None = None,
    segments: tuple[str, ...] = ("region",),
    *extra: str,
    **config: object,
) -> None:
    """Register from a reference of `ref`'s rows (default: 20,000 of `_rows`) with its
    segment columns; `extra` are more command-line arguments."""
    ref = ref if ref is not None else _rows(np.random.default_rng(1), 20_000)
    table = pa.table(
        {
            **{f"x{j}": ref["x"][:, j] for j in range(4)},
            **{k: ref[k] for k in segments},
            "score": _score(ref["logit"]),
            "label": ref["label"],
        }
    )
    pcsv.write_csv(table, tmp_path / "reference.csv")
    register_model(
        settings, model_id, tmp_path / "reference.csv", "--prediction-column", "score",
        "--label-column", "label", *extra, window_seconds=WINDOW, **config,
    )  # fmt: skip


def _events(
    model_id: str, rng: np.random.Generator, start: float, n: int, version_of, shift_eu=0.0
):
    """Predictions and labels of one window: (prediction pairs, label pairs, truth)."""
    r = _rows(rng, n)
    x = r["x"].copy()
    eu = r["region"] == "eu"
    x[eu, 2] += shift_eu
    versions = [version_of(i) for i in range(n)]
    broken = np.array([v == "2.0" for v in versions])
    logit = np.where(broken, rng.normal(size=n), r["logit"])  # 2.0 scores at random
    scores = _score(logit)
    ts = start + np.sort(rng.uniform(0, WINDOW - 1, size=n))
    preds, labels = [], []
    for i in range(n):
        pid = f"{model_id}-{int(start)}-{i}"
        event = {
            "prediction_id": pid,
            "model_id": model_id,
            "model_version": versions[i],
            "timestamp": float(ts[i]),
            "features": {f"x{j}": float(x[i, j]) for j in range(4)},
            "prediction": {"score": float(scores[i])},
            "segments": {"region": str(r["region"][i]), "channel": "web"},
        }
        preds.append((pid.encode(), orjson.dumps(event)))
        label = {"prediction_id": pid, "model_id": model_id, "label": int(r["label"][i])}
        label["timestamp"] = float(ts[i]) + 5
        labels.append((pid.encode(), orjson.dumps(label)))
    truth = {
        "versions": np.array(versions),
        "region": r["region"],
        "x": x,
        "score": scores,
        "label": r["label"],
    }
    return preds, labels, truth


def _run(settings, preds, labels) -> None:
    produce(settings, preds)
    produce(settings, labels, topic=settings.labels_topic)
    total = len(preds) + len(labels)
    stats = Worker(settings).run(max_seconds=120, install_signals=False, until_messages=total)
    assert stats.counted == len(preds)


def test_versions_are_counted_apart_and_the_broken_one_is_named(
    settings, store, model_id, tmp_path
):
    _register(settings, model_id, tmp_path, slices={"segment_keys": ["region"]})
    rng = np.random.default_rng(7)
    start = (time.time() // WINDOW - 3) * WINDOW
    preds, labels, truths = [], [], []
    for k in range(2):
        p, lab, t = _events(
            model_id, rng, start + k * WINDOW, 3000, lambda i: "1.0" if i % 2 else "2.0"
        )
        preds += p
        labels += lab
        truths.append(t)
    _run(settings, preds, labels)

    profile = store.profiles.load(model_id)
    windows = store.windows.read(
        profile, store.windows.starts(model_id, profile.revision), slices=True
    )
    assert [w.start for w in windows] == [start, start + WINDOW]
    edges = profile.features["x0"].edge_array()
    for w, t in zip(windows, truths, strict=True):
        assert set(w.slices) == {"v=1.0", "v=2.0", "region=eu", "region=us", "region=apac"}
        for version in ("1.0", "2.0"):
            mine = t["versions"] == version
            sk = w.slices[f"v={version}"]
            assert sk.count == w.slice_counts[f"v={version}"] == int(mine.sum())
            want = np.bincount(bin_index(edges, t["x"][mine, 0]), minlength=edges.size + 1)
            assert sk.numeric["x0"].bins.tolist() == want.tolist()
            got = window_performance(profile, sk)
            assert got["labelled"] == int(mine.sum())
            assert got["roc_auc"] == pytest.approx(
                roc_auc_score(t["label"][mine], t["score"][mine]), abs=1e-12
            )
        for region in REGIONS:
            assert w.slices[f"region={region}"].count == int((t["region"] == region).sum())
        assert w.performance is not None and w.performance.labelled == 3000

    alerts = read_alerts(settings, now=True)
    perf = [a for a in alerts if a["type"] == "performance_degradation"]
    assert perf, [a["message"] for a in alerts]
    for a in perf:
        assert a["model_version"] == "2.0", a
        ctx = a["context"]
        assert ctx.get("slice") == "v=2.0" or ctx.get("versions") == ["2.0"], ctx
    assert not any(
        a["context"].get("slice") == "v=1.0" or a["model_version"] == "1.0" for a in alerts
    ), [a["message"] for a in alerts]

    doc = orjson.loads(cli(settings, "inspect", model_id, "--json", "--version", "2.0").stdout)
    assert [w["count"] for w in doc["windows"]] == [1500, 1500]


def test_a_segment_drifting_alone_is_named(settings, store, model_id, tmp_path):
    _register(settings, model_id, tmp_path, slices={"segment_keys": ["region"], "max_versions": 0})
    rng = np.random.default_rng(3)
    start = (time.time() // WINDOW - 4) * WINDOW
    preds, labels = [], []
    for k in range(3):
        p, lab, _ = _events(
            model_id, rng, start + k * WINDOW, 4000, lambda i: "1.0", shift_eu=1.0 if k else 0.0
        )
        preds += p
        labels += lab
    _run(settings, preds, labels)

    profile = store.profiles.load(model_id)
    assert set(profile.segments["region"]) == {"region=eu", "region=us", "region=apac"}
    alerts = read_alerts(settings, now=True)
    drift = [a for a in alerts if a["type"] == "data_drift"]
    assert drift, [a["message"] for a in alerts]
    assert {a["feature"] for a in drift} == {"x2"}
    for a in drift:
        ctx = a["context"]
        named = ctx.get("slice") or ctx["worst_segments"][0]["segment"]
        assert named == "region=eu", ctx
    assert not any(a["context"].get("slice") in ("region=us", "region=apac") for a in alerts), [
        a["message"] for a in alerts
    ]


def test_fairness_crosses_the_four_fifths_bound_in_one_window_only(
    settings, store, model_id, tmp_path
):
    """Group "f" is selected as often as "m" but in the middle window, where its scores
    are pushed down (its labels are not): disparate impact about 0.5 there only."""
    rng = np.random.default_rng(5)
    ref = _rows(rng, 20_000)
    ref["gender"] = rng.choice(["m", "f"], size=20_000)
    _register(
        settings,
        model_id,
        tmp_path,
        ref,
        ("gender",),
        slices={"segment_keys": ["gender"], "max_versions": 0},
        fairness={"sensitive_key": "gender", "reference_group": "m"},
    )

    start = (time.time() // WINDOW - 4) * WINDOW
    preds, labels = [], []
    for k in range(3):
        r = _rows(rng, 4000)
        g = rng.choice(["m", "f"], size=4000)
        logit = r["logit"] - np.where((g == "f") & (k == 1), 2.0, 0.0)
        scores = _score(logit)
        ts = start + k * WINDOW + np.sort(rng.uniform(0, WINDOW - 1, size=4000))
        for i in range(4000):
            pid = f"{model_id}-{k}-{i}"
            event = {
                "prediction_id": pid,
                "model_id": model_id,
                "timestamp": float(ts[i]),
                "features": {f"x{j}": float(r["x"][i, j]) for j in range(4)},
                "prediction": {"score": float(scores[i])},
                "segments": {"gender": str(g[i])},
            }
            preds.append((pid.encode(), orjson.dumps(event)))
            label = {"prediction_id": pid, "model_id": model_id, "label": int(r["label"][i])}
            labels.append((pid.encode(), orjson.dumps({**label, "timestamp": float(ts[i]) + 5})))
    _run(settings, preds, labels)

    alerts = read_alerts(settings, now=True)
    fair = [a for a in alerts if a["type"] == "fairness"]
    assert len(fair) == 1, [a["message"] for a in alerts]
    (a,) = fair
    assert a["status"] == "open" and a["feature"] == "gender"
    assert int(datetime.fromisoformat(a["window_start"]).timestamp()) == start + WINDOW
    ctx = a["context"]
    assert ctx["group"] == "f" and ctx["reference_group"] == "m"
    assert a["statistic"] == "disparate_impact" and a["value"] < 0.8
    assert ctx["interval"][1] < 0.8

    # the figures are the selection rates of the labelled pairs, counted by hand
    profile = store.profiles.load(model_id)
    (w,) = store.windows.read(profile, [int(start + WINDOW)], slices=True)
    perf = {name: sk.performance for name, sk in w.slices.items()}
    rate = {
        g: sum(c for (_, p), c in perf[f"gender={g}"].confusion.items() if p == "1")
        / perf[f"gender={g}"].labelled
        for g in ("m", "f")
    }
    assert a["value"] == pytest.approx(rate["f"] / rate["m"], rel=1e-9)
    assert ctx["groups"]["f"]["selection_rate"][0] == pytest.approx(rate["f"], abs=1e-6)


def test_shadow_traffic_compares_the_challenger_with_the_champion(
    settings, store, model_id, tmp_path
):
    """Every id scored by 1.0 (the champion, good) and by 2.0 (useless). In the first
    window both versions' predictions and the labels arrive together; in the second, 2.0
    scores its ids only after their labels joined 1.0's predictions. One label joins both
    versions' predictions, the same id under two versions is not a repeat, and the pairs
    make a DeLong test that names 2.0 worse."""
    _register(settings, model_id, tmp_path)
    assert cli(settings, "champion", model_id, "1.0").returncode == 0
    rng = np.random.default_rng(11)
    start = (time.time() // WINDOW - 3) * WINDOW
    n = 2500
    late, early_preds, early_labels, truths = [], [], [], []
    for k in range(2):
        r = _rows(rng, n)
        ts = start + k * WINDOW + np.sort(rng.uniform(0, WINDOW - 1, size=n))
        scores = {"1.0": _score(r["logit"]), "2.0": _score(rng.normal(size=n))}
        truths.append((r["label"], scores))
        for i in range(n):
            pid = f"{model_id}-{k}-{i}"
            for version, s in scores.items():
                event = {
                    "prediction_id": pid,
                    "model_id": model_id,
                    "model_version": version,
                    "timestamp": float(ts[i]),
                    "features": {f"x{j}": float(r["x"][i, j]) for j in range(4)},
                    "prediction": {"score": float(s[i])},
                }
                pair = (pid.encode(), orjson.dumps(event))
                (late if (k == 1 and version == "2.0") else early_preds).append(pair)
            label = {"prediction_id": pid, "model_id": model_id, "label": int(r["label"][i])}
            early_labels.append(
                (pid.encode(), orjson.dumps({**label, "timestamp": float(ts[i]) + 5}))
            )
    _run(settings, early_preds, early_labels)
    produce(settings, late)
    stats = Worker(settings).run(max_seconds=120, install_signals=False, until_messages=len(late))
    assert stats.counted == len(late)

    profile = store.profiles.load(model_id)
    windows = store.windows.read(
        profile, store.windows.starts(model_id, profile.revision), slices=True
    )
    assert [w.start for w in windows] == [start, start + WINDOW]
    assert store.counters.join_stats(model_id).get("duplicate_predictions", 0) == 0
    for w, (labels, scores) in zip(windows, truths, strict=True):
        assert w.duplicates == 0 and w.count == 2 * n
        for version in ("1.0", "2.0"):
            got = window_performance(profile, w.slices[f"v={version}"])
            assert got["labelled"] == n
            assert got["roc_auc"] == pytest.approx(
                roc_auc_score(labels, scores[version]), abs=1e-12
            )
        paired = w.comparisons["2.0"]
        assert paired.n == n
        result = compare_pairs("1.0", "2.0", paired, "binary", JOINT_BINS, alpha=1e-3,
                               min_difference=0.02)  # fmt: skip
        binned = {v: np.floor(s * JOINT_BINS) for v, s in scores.items()}
        assert result.champion_value == pytest.approx(roc_auc_score(labels, binned["1.0"]))
        assert result.challenger_value == pytest.approx(roc_auc_score(labels, binned["2.0"]))
        assert result.outcome.value == "worse" and result.p_value < 1e-6

    alerts = read_alerts(settings, now=True)
    assert not [a for a in alerts if a["statistic"] == "duplicate_ids"]
    cc = [a for a in alerts if a["type"] == "challenger_comparison"]
    assert cc, [a["message"] for a in alerts]
    assert {a["feature"] for a in cc} == {"2.0"}
    assert all(a["context"]["outcome"] == "worse" and a["model_version"] == "2.0" for a in cc)
    doc = orjson.loads(cli(settings, "inspect", model_id, "--json").stdout)
    assert doc["champion"] == "1.0"
    for w in doc["windows"]:
        (row,) = w["champion_challenger"]
        assert row["challenger"] == "2.0" and row["pairs"] == n and row["outcome"] == "worse"


def test_a_stationary_stream_with_versions_segments_and_fairness_raises_nothing(
    settings, store, model_id, tmp_path
):
    """120 windows of reference-like traffic, two versions, three segment keys (one of
    them tied to a feature: its values have references of their own) and fairness on:
    every slice judged every window, and not one alert."""
    rng = np.random.default_rng(21)

    def rows(n: int) -> dict[str, np.ndarray]:
        r = _rows(rng, n)
        r["region"] = np.where(r["x"][:, 3] > 0.5, "north", rng.choice(["south", "east"], n))
        r["channel"] = rng.choice(["web", "app", "shop", "phone"], n)
        r["gender"] = rng.choice(["f", "m"], n)
        return r

    keys = ("region", "channel", "gender")
    _register(
        settings,
        model_id,
        tmp_path,
        rows(20_000),
        keys,
        "--champion",
        "1.0",
        slices={"segment_keys": list(keys)},
        fairness={"sensitive_key": "gender"},
        silence_seconds=0,
    )

    windows, per_window = 120, 1000
    start = (time.time() // WINDOW - windows - 1) * WINDOW
    preds, labels = [], []
    for k in range(windows):
        r = rows(per_window)
        ts = start + k * WINDOW + np.sort(rng.uniform(0, WINDOW - 1, size=per_window))
        scores = _score(r["logit"])
        for i in range(per_window):
            pid = f"{model_id}-{k}-{i}"
            event = {
                "prediction_id": pid,
                "model_id": model_id,
                "model_version": "1.0" if i % 2 else "2.0",
                "timestamp": float(ts[i]),
                "features": {f"x{j}": float(r["x"][i, j]) for j in range(4)},
                "prediction": {"score": float(scores[i])},
                "segments": {key: str(r[key][i]) for key in keys},
            }
            preds.append((pid.encode(), orjson.dumps(event)))
            label = {"prediction_id": pid, "model_id": model_id, "label": int(r["label"][i])}
            label["timestamp"] = float(ts[i]) + 5
            labels.append((pid.encode(), orjson.dumps(label)))
    _run(settings, preds, labels)

    profile = store.profiles.load(model_id)
    starts = store.windows.starts(model_id, profile.revision)
    assert len(starts) == windows
    (last,) = store.windows.read(profile, starts[-1:], slices=True)
    assert len(last.slices) == 2 + 3 + 4 + 2  # every slice was kept, hence judged
    alerts = read_alerts(settings, now=True)
    assert alerts == [], [a["message"] for a in alerts]


def test_the_champion_command(settings, model_id, tmp_path):
    res = cli(settings, "champion", "no-such-model")
    assert res.returncode != 0 and "not registered" in res.stderr
    assert "Traceback" not in res.stderr
    _register(settings, model_id, tmp_path)
    assert "has no champion" in cli(settings, "champion", model_id).stdout
    assert cli(settings, "champion", model_id, "2.0").returncode == 0
    assert cli(settings, "champion", model_id).stdout.strip() == "2.0"
    assert cli(settings, "champion", model_id, "--clear").returncode == 0
    assert "has no champion" in cli(settings, "champion", model_id).stdout

    other = f"{model_id}-unsliced"
    cfg = write_config(tmp_path / "unsliced.json", slices={"max_versions": 0})
    res = cli(
        settings, "register", other, "--reference", str(tmp_path / "reference.csv"),
        "--config", str(cfg), "--champion", "1.0",
    )  # fmt: skip
    assert res.returncode != 0 and "slices.max_versions" in res.stderr
    assert "Traceback" not in res.stderr
    assert "not registered" in cli(settings, "champion", other).stderr  # nothing was saved
