"""The Python side of the delayed-label join: what each prediction leaves in Redis for its
label (`prediction_outputs`, `prediction_records`), what each label brings
(`label_entries`), and models that join nothing (`join_delta`). Expected values are
written out by hand or computed here with numpy from the profile's edges."""

from __future__ import annotations

import csv
import zlib

import numpy as np
import pytest

from streamdrift import join as join_module
from streamdrift.config import MonitorConfig
from streamdrift.decode import ModelEvents, ModelLabels
from streamdrift.join import join_delta, joins, label_entries, prediction_records
from streamdrift.profile import NumericProfile
from streamdrift.reference import build_profile
from streamdrift.sketch import prediction_outputs

TOPIC = "labels"


def _bucket(pid: str) -> int:
    """The id's journal shard, by the rule the layout documents: crc32 mod 64."""
    return zlib.crc32(pid.encode()) % 64


# ---- reference profiles built from CSV files ----------------------------------------------


def _write(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("join_refs")


@pytest.fixture(scope="module")
def binary(ref_dir):
    """Scores and 0/1 labels: positive "1", negative "0"."""
    rng = np.random.default_rng(1)
    score = rng.uniform(size=500)
    label = (rng.uniform(size=500) < score).astype(int)
    rows = zip(rng.normal(size=500).tolist(), score.tolist(), label.tolist(), strict=True)
    path = _write(ref_dir / "binary.csv", ["x", "score", "label"], rows)
    return build_profile(
        "clf", path, task="binary", prediction_column="score", label_column="label"
    )


@pytest.fixture(scope="module")
def strings(ref_dir):
    """Scores and string labels, "fraud" rarer than "ok"."""
    rng = np.random.default_rng(2)
    score = rng.beta(1, 6, size=500)
    label = np.where(rng.uniform(size=500) < score, "fraud", "ok")
    rows = zip(rng.normal(size=500).tolist(), score.tolist(), label.tolist(), strict=True)
    path = _write(ref_dir / "strings.csv", ["x", "score", "outcome"], rows)
    return build_profile(
        "fraud", path, task="binary", prediction_column="score", label_column="outcome"
    )


@pytest.fixture(scope="module")
def multiclass(ref_dir):
    rng = np.random.default_rng(3)
    classes = np.array(["a", "b", "c"])
    pred = classes[rng.integers(0, 3, 300)]
    label = classes[rng.integers(0, 3, 300)]
    rows = zip(rng.normal(size=300).tolist(), pred.tolist(), label.tolist(), strict=True)
    path = _write(ref_dir / "multi.csv", ["x", "predicted", "actual"], rows)
    return build_profile(
        "multi", path, task="multiclass", prediction_column="predicted", label_column="actual"
    )


@pytest.fixture(scope="module")
def regression(ref_dir):
    """A regressor whose label profile has 5 quantile bins."""
    rng = np.random.default_rng(4)
    y = rng.normal(50.0, 10.0, size=400)
    pred = y + rng.normal(0.0, 2.0, size=400)
    rows = zip(rng.normal(size=400).tolist(), pred.tolist(), y.tolist(), strict=True)
    path = _write(ref_dir / "regression.csv", ["x", "pred", "y"], rows)
    return build_profile(
        "price",
        path,
        task="regression",
        prediction_column="pred",
        label_column="y",
        config=MonitorConfig(numeric_bins=5),
    )


@pytest.fixture(scope="module")
def unlabelled(ref_dir):
    """A model registered with a prediction column but without a label column."""
    rng = np.random.default_rng(5)
    rows = zip(rng.normal(size=100).tolist(), rng.uniform(size=100).tolist(), strict=True)
    path = _write(ref_dir / "unlabelled.csv", ["x", "score"], rows)
    return build_profile("nolabel", path, task="binary", prediction_column="score")


def _events(predictions, timestamps=None, versions=None) -> ModelEvents:
    n = len(predictions)
    ev = ModelEvents()
    ev.predictions = list(predictions)
    ev.partitions = [0] * n
    ev.offsets = list(range(n))
    ev.timestamps = list(timestamps) if timestamps is not None else [1000.0 + i for i in range(n)]
    ev.features = [{"x": 0.0} for _ in range(n)]
    ev.versions = list(versions) if versions is not None else ["1"] * n
    ev.prediction_ids = [f"p{i}" for i in range(n)]
    ev.raws = [f"raw{i}".encode() for i in range(n)]
    return ev


def _labels(values, timestamps=None, partition=3) -> ModelLabels:
    n = len(values)
    lb = ModelLabels()
    lb.labels = list(values)
    lb.partitions = [partition] * n
    lb.offsets = [100 + i for i in range(n)]
    lb.timestamps = list(timestamps) if timestamps is not None else [5000.5 + i for i in range(n)]
    lb.prediction_ids = [f"p{i}" for i in range(n)]
    lb.raws = [f'{{"label": {i}}}'.encode() for i in range(n)]
    return lb


# ---- the profiles themselves (what the join relies on) -------------------------------------


def test_profiles_have_the_expected_classes(binary, strings, multiclass, regression):
    assert (binary.positive_class, binary.negative_class) == ("1", "0")
    assert (strings.positive_class, strings.negative_class) == ("fraud", "ok")
    assert (multiclass.positive_class, multiclass.negative_class) == (None, None)
    assert isinstance(regression.label, NumericProfile)
    assert all(joins(p) for p in (binary, strings, multiclass, regression))


# ---- prediction_outputs -------------------------------------------------------------------


def test_dict_with_score_and_label_takes_the_label_as_class(binary):
    ev = _events([{"score": 0.2, "label": 1}, {"score": 0.9, "label": 0}, {"score": 1, "label": 1}])
    classes, scores = prediction_outputs(ev, binary)
    assert classes == ["1", "0", "1"]  # the model's own class wins over the threshold
    assert scores == [0.2, 0.9, 1.0]
    assert all(type(s) is float for s in scores)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.25])
def test_binary_score_only_predicts_by_decision_threshold(binary, threshold):
    profile = binary.model_copy(
        update={"config": binary.config.model_copy(update={"decision_threshold": threshold})}
    )
    raw = [0.0, 0.1, 0.2499, 0.25, 0.4999, 0.5, 0.6999, 0.7, 0.95, 1.0]
    classes, scores = prediction_outputs(_events([{"score": s} for s in raw]), profile)
    expected = np.where(np.asarray(raw) >= threshold, "1", "0").tolist()
    assert classes == expected
    assert scores == raw


def test_score_only_uses_the_profiles_class_names(strings):
    classes, scores = prediction_outputs(_events([{"score": 0.9}, {"score": 0.1}]), strings)
    assert classes == ["fraud", "ok"]
    assert scores == [0.9, 0.1]


def test_score_only_without_a_positive_class_has_no_class(multiclass):
    classes, scores = prediction_outputs(_events([{"score": 0.9}]), multiclass)
    assert classes == [None]
    assert scores == [0.9]


def test_label_only(binary, multiclass):
    classes, scores = prediction_outputs(
        _events([{"label": 1}, {"label": True}, {"label": 2.0}, {"label": "b|c"}]), binary
    )
    assert classes == ["1", "true", "2", "b/c"]
    assert scores == [None, None, None, None]
    classes, scores = prediction_outputs(_events([{"label": "b"}, {}]), multiclass)
    assert classes == ["b", None]
    assert scores == [None, None]


def test_bare_float_is_a_binary_score(binary):
    classes, scores = prediction_outputs(_events([0.8, 0.3, 1]), binary)
    assert classes == ["1", "0", "1"]
    assert scores == [0.8, 0.3, 1.0]


def test_bare_number_is_a_regressors_value(regression):
    classes, scores = prediction_outputs(_events([12.5, -3, {"score": 7.25}]), regression)
    assert classes == [None, None, None]
    assert scores == [12.5, -3.0, 7.25]


def test_bare_number_of_a_multiclass_model_is_a_class(multiclass):
    classes, scores = prediction_outputs(_events([2, 2.0]), multiclass)
    assert classes == ["2", "2"]
    assert scores == [None, None]


@pytest.mark.parametrize("fixture", ["binary", "multiclass"])
def test_bare_string_or_bool_is_a_class(request, fixture):
    profile = request.getfixturevalue(fixture)
    classes, scores = prediction_outputs(_events(["b", True, False, "x|y"]), profile)
    assert classes == ["b", "true", "false", "x/y"]
    assert scores == [None] * 4


# ---- prediction_records -------------------------------------------------------------------


def test_records_by_hand(binary):
    ev = _events(
        [{"score": 0.123456789}, {"label": "0"}, 0.5, 1e-7],
        timestamps=[1_700_000_000.9, 1_700_000_001.0, 59.999, 0.0],
        versions=["v|1", None, "2.0.0", "a||b"],
    )
    records = prediction_records(ev, *prediction_outputs(ev, binary))
    assert records == [
        ["p0", "1700000000|v/1|0|0.123456789", _bucket("p0")],
        ["p1", "1700000001||0|", _bucket("p1")],
        ["p2", "59|2.0.0|1|0.5", _bucket("p2")],
        ["p3", "0|a//b|0|1e-07", _bucket("p3")],
    ]


def test_regression_records_keep_the_exact_value(regression):
    """A regressor's errors are computed from the stored value: no rounding allowed."""
    values = [1234567.0, 0.000123456789, -98.7654321, 42.0, 3.14159265358979, 1e21]
    ev = _events(values)
    records = prediction_records(ev, *prediction_outputs(ev, regression))
    fields = [r[1].split("|") for r in records]
    for (_, _, cls, score), v in zip(fields, values, strict=True):
        assert cls == ""
        assert float(score) == v


def test_every_record_has_four_fields_whatever_the_strings(binary):
    rng = np.random.default_rng(9)
    preds = ["a|b|c", {"label": "|"}, {"score": float(rng.uniform())}, True, 0.25]
    ev = _events(preds, versions=["|", "x|y|z", None, "", "1"])
    records = prediction_records(ev, *prediction_outputs(ev, binary))
    assert [r[0] for r in records] == ev.prediction_ids
    for _, value, _ in records:
        time, version, _, _ = value.split("|")  # exactly four fields
        assert time.isdigit()
        assert "|" not in version


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_compiled_records_are_the_python_paths(binary, seed, monkeypatch):
    """`_pairing.records` builds each record as the Python path spells it: versions and
    classes with separators and non-ASCII letters, missing scores, segments or none."""
    pytest.importorskip("streamdrift._pairing")
    rng = np.random.default_rng(seed)
    n = 300
    preds = [
        [{"score": float(rng.uniform())}, {"label": "é|1"}, 0.5, None, "ü\tx", True][i % 6]
        for i in range(n)
    ]
    versions = [[None, "2.0", "v|1", "ß", "", "日本"][int(rng.integers(6))] for _ in range(n)]
    stamps = (rng.uniform(0, 2e9, n)).tolist()
    ev = _events(preds, timestamps=stamps, versions=versions)
    ev.prediction_ids = [f"p{i}-ü" if i % 7 == 0 else f"p{i}" for i in range(n)]
    shared = {"region": "eu", "tier": "gold"}
    ev.segments = [
        [None, shared, {"region": "北"}, {"a|b": "c,d", "z": 1}][int(rng.integers(4))]
        for _ in range(n)
    ]
    outputs = prediction_outputs(ev, binary)
    built: list[bool] = []
    real = join_module._records

    def spy(*columns: object) -> object:
        got = real(*columns)
        built.append(got is not None)
        return got

    monkeypatch.setattr(join_module, "_records", spy)
    compiled = prediction_records(ev, *outputs)
    assert built == [True]  # the compiled path built them
    monkeypatch.setattr(join_module, "_records", None)
    assert compiled == prediction_records(ev, *outputs)
    assert any(r[1].endswith("|region=eu,tier=gold") for r in compiled)


# ---- label_entries -------------------------------------------------------------------------


def test_classification_labels_become_class_keys(binary, strings):
    labels = _labels([1, 0, True, False, 1.0, "fraud", "a|b"], timestamps=[10.9] * 7)
    entries, dead = label_entries(labels, binary, TOPIC)
    assert dead == []
    assert entries == [
        ["p0", "1", 10, -1, _bucket("p0")],
        ["p1", "0", 10, -1, _bucket("p1")],
        ["p2", "true", 10, -1, _bucket("p2")],
        ["p3", "false", 10, -1, _bucket("p3")],
        ["p4", "1", 10, -1, _bucket("p4")],
        ["p5", "fraud", 10, -1, _bucket("p5")],
        ["p6", "a/b", 10, -1, _bucket("p6")],
    ]
    entries, dead = label_entries(_labels(["ok", "fraud"]), strings, TOPIC)
    assert [e[1] for e in entries] == ["ok", "fraud"] and dead == []


def _numpy_bin(edges: np.ndarray, v: float) -> int:
    """The profile's bin rule written with plain comparisons: 0 below the minimum,
    len(edges) above the maximum, i for edges[i-1] <= v < edges[i], the maximum itself
    in the last inner bin."""
    if v < edges[0]:
        return 0
    if v > edges[-1]:
        return len(edges)
    if v == edges[-1]:
        return len(edges) - 1
    return int(np.flatnonzero(edges <= v)[-1]) + 1


def test_regression_labels_get_their_bin_on_the_label_edges(regression):
    edges = np.asarray(regression.label.edges)
    assert len(edges) == 6  # 5 quantile bins of continuous data
    mids = ((edges[:-1] + edges[1:]) / 2).tolist()
    # Python floats and ints, as orjson decodes them
    values = [
        float(edges[0]) - 1.0,
        *edges.tolist(),  # every edge, the minimum and maximum included
        *mids,
        float(edges[-1]) + 0.001,
        float(np.nextafter(edges[-1], np.inf)),
        float(np.nextafter(edges[0], -np.inf)),
        int(edges[2]),  # an int label
        -1e9,
        1e9,
    ]
    rng = np.random.default_rng(11)
    values += rng.normal(50.0, 15.0, 200).tolist()
    entries, dead = label_entries(_labels(values, timestamps=[7.5] * len(values)), regression, "t")
    assert dead == []
    assert [e[0] for e in entries] == [f"p{i}" for i in range(len(values))]
    assert [e[2] for e in entries] == [7] * len(values)
    assert [e[3] for e in entries] == [_numpy_bin(edges, float(v)) for v in values]
    assert [float(e[1]) for e in entries] == [float(v) for v in values]
    # every bin, the two outer ones included, is reached
    assert {e[3] for e in entries} == set(range(len(edges) + 1))


def test_non_numeric_label_of_a_regressor_is_a_dead_letter(regression):
    edges = np.asarray(regression.label.edges)
    values = [55.0, "high", 10.0, True, 1e6, False]
    labels = _labels(values, partition=2)
    entries, dead = label_entries(labels, regression, "labels")
    assert [e[0] for e in entries] == ["p0", "p2", "p4"]
    assert [e[3] for e in entries] == [_numpy_bin(edges, v) for v in (55.0, 10.0, 1e6)]
    assert [(d.reason, d.key, d.offset, d.partition) for d in dead] == [
        ("wrong_type", b"p1", 101, 2),
        ("wrong_type", b"p3", 103, 2),
        ("wrong_type", b"p5", 105, 2),
    ]
    assert [d.value for d in dead] == [labels.raws[1], labels.raws[3], labels.raws[5]]
    assert all(d.topic == "labels" and d.model_id == "price" for d in dead)
    assert "str" in dead[0].detail and "bool" in dead[1].detail


def test_only_bad_labels_give_no_entries(regression):
    entries, dead = label_entries(_labels(["a", "b"]), regression, TOPIC)
    assert entries == [] and len(dead) == 2


# ---- join_delta ----------------------------------------------------------------------------


def test_join_delta_carries_records_and_labels(binary):
    ev = _events([{"score": 0.75}, {"score": 0.25}], timestamps=[100.0, 200.0], versions=["1"] * 2)
    labels = _labels([0, "1"], timestamps=[300.0, 400.0])
    delta, dead = join_delta(binary, ev, prediction_outputs(ev, binary), labels, TOPIC)
    assert dead == []
    assert delta.joins
    assert delta.predictions == [
        ["p0", "100|1|1|0.75", _bucket("p0")],
        ["p1", "200|1|0|0.25", _bucket("p1")],
    ]
    assert delta.labels == [
        ["p0", "0", 300, -1, _bucket("p0")],
        ["p1", "1", 400, -1, _bucket("p1")],
    ]
    delta, dead = join_delta(binary, ev, prediction_outputs(ev, binary), None, TOPIC)
    assert len(delta.predictions) == 2 and delta.labels == [] and dead == []


def test_join_delta_of_a_regressor_passes_its_dead_letters_on(regression):
    ev = _events([51.5])
    labels = _labels([50.0, "n/a"])
    delta, dead = join_delta(regression, ev, prediction_outputs(ev, regression), labels, TOPIC)
    assert delta.predictions == [["p0", "1000|1||51.5", _bucket("p0")]]
    assert [e[0] for e in delta.labels] == ["p0"]
    assert [(d.reason, d.key) for d in dead] == [("wrong_type", b"p1")]


def test_model_without_label_column_joins_nothing(unlabelled):
    """Its labels are dead letters; its prediction ids are kept by window, only to
    count repeats, each with its version ("1" here, after \x1f): the same id under
    another version is shadow traffic."""
    assert unlabelled.label is None and not joins(unlabelled)
    width = unlabelled.config.window_seconds
    ev = _events([0.9, 0.1, 0.5], timestamps=[100.5, width + 3.0, 200.0])
    outputs = prediction_outputs(ev, unlabelled)
    labels = _labels([1, 0, "x"], partition=4)
    delta, dead = join_delta(unlabelled, ev, outputs, labels, "labels")
    assert not delta.joins and delta.labels == [] and delta.predictions == []
    assert delta.ids_by_window == {0: ["p0\x1f1", "p2\x1f1"], width: ["p1\x1f1"]}
    one = _events([0.9, 0.1], timestamps=[5.0, 6.0])
    delta, _ = join_delta(unlabelled, one, prediction_outputs(one, unlabelled), None, "x")
    assert delta.ids_by_window == {0: ["p0\x1f1", "p1\x1f1"]}
    assert [(d.reason, d.topic, d.partition, d.offset, d.key, d.value) for d in dead] == [
        ("not_joined", "labels", 4, 100 + i, f"p{i}".encode(), labels.raws[i]) for i in range(3)
    ]
    assert all(d.model_id == "nolabel" and "--label-column" in d.detail for d in dead)
    # no labels: no dead letters
    assert join_delta(unlabelled, ev, outputs, None, "labels")[1] == []
    assert join_delta(unlabelled, ev, outputs, ModelLabels(), "labels")[1] == []
    # ids not kept at all
    off = unlabelled.model_copy(
        update={"config": unlabelled.config.model_copy(update={"dedupe_horizon_seconds": 0})}
    )
    assert join_delta(off, ev, outputs, None, "labels") == (None, [])


def test_model_with_no_join_horizon_joins_nothing(binary):
    profile = binary.model_copy(
        update={"config": binary.config.model_copy(update={"join_horizon_seconds": 0})}
    )
    assert not joins(profile)
    ev = _events([0.9])
    delta, dead = join_delta(profile, ev, prediction_outputs(ev, profile), _labels([1]), TOPIC)
    assert not delta.joins and delta.labels == []
    assert [d.reason for d in dead] == ["not_joined"]
