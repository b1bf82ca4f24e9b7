"""The dashboard's pieces without servers: times as typed, bin labels, charts built from
a document, and pages that cannot be scripted by the data they show."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pytest

from streamdrift.errors import StreamdriftError
from streamdrift.feature_report import numeric_bins
from streamdrift.profile import NumericProfile, bin_index
from streamdrift.time_spec import parse_time
from streamdrift.ui import charts, pages


def test_times_in_every_accepted_form():
    noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-30T12:00:00Z") == noon
    assert parse_time("2026-11-30T13:00:00+01:00") == noon
    assert parse_time("2026-11-30 12:00") == noon  # no zone: UTC, as streamdrift prints
    assert parse_time("2026-11-30") == noon - 12 * 3600
    assert parse_time(str(noon)) == noon
    assert parse_time("90m", now=noon) == noon - 5400
    assert parse_time("2d", now=noon) == noon - 2 * 86400
    with pytest.raises(StreamdriftError) as e:
        parse_time("last tuesday", "--since")
    assert "--since 'last tuesday' is not a time" in e.value.problem
    assert "RFC 3339" in e.value.fix and "6h" in e.value.fix


def _interval(label: str):
    """The test a bin label states, read back from the label itself."""
    if label.startswith("< "):
        a = float(label[2:])
        return lambda v: v < a
    if label.startswith("> "):
        b = float(label[2:])
        return lambda v: v > b
    m = re.fullmatch(r"\[(\S+), (\S+)([\])])", label)
    assert m, label
    a, b, closed = float(m[1]), float(m[2]), m[3] == "]"
    return lambda v: a <= v <= b if closed else a <= v < b


def test_each_bin_label_holds_the_values_the_sketch_puts_in_that_bin():
    edges = [-2.5, -1.0, 0.0, 0.25, 3.0, 7.5]
    ref = NumericProfile(
        edges=edges, counts=[0] * 7, count=0, missing=0, mean=0, std=1, min=-2.5, max=7.5
    )
    labels = numeric_bins(ref)
    assert len(labels) == len(ref.counts)
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(-5, 10, 2000), edges])  # the edges themselves too
    for v, i in zip(values, bin_index(np.asarray(edges), values), strict=True):
        assert _interval(labels[i])(v), (v, labels[i])


def _doc() -> dict:
    def cell(value, drifted, statistic="psi"):
        return {
            "statistic": statistic,
            "value": value,
            "threshold": 0.2,
            "p_value": 0.001 if drifted else 0.5,
            "sample_size": 900,
            "drifted": drifted,
        }

    return {
        "headline_metric": "accuracy",
        "reference_performance": {"accuracy": 0.9},
        "config": {"window_seconds": 600},
        "episodes": [],
        "alerts": [],
        "windows": [
            {
                "start": "2026-11-30T12:00:00Z",
                "end": "2026-11-30T12:10:00Z",
                "count": 900,
                "outliers": 9,
                "features": {"age": cell(0.01, False), "city": cell(0.5, True)},
                "outputs": {"prediction": cell(0.02, False)},
                "performance": {"accuracy": 0.88, "label_coverage": 0.5},
                "estimated_performance": None,
            },
            {
                "start": "2026-11-30T12:10:00Z",
                "end": "2026-11-30T12:20:00Z",
                "count": 0,
                "outliers": 0,
                "features": {"age": cell(0.3, True)},
                "outputs": {},
                "performance": {},
                "estimated_performance": None,
            },
        ],
    }


def test_the_heatmap_shows_each_documents_value_and_marks_the_drifted_cells():
    fig = charts.drift_heatmap(_doc())
    heat, marks = fig.data
    assert list(heat.y) == ["age", "city", "output: prediction"]
    assert [list(r) for r in heat.z] == [[0.01, 0.3], [0.5, None], [0.02, None]]
    assert heat.zmax == 0.4  # twice the threshold: the threshold sits mid-scale
    assert set(zip(marks.x, marks.y, strict=True)) == {
        ("2026-11-30T12:00:00Z", "city"),
        ("2026-11-30T12:10:00Z", "age"),
    }


def test_the_other_charts_take_their_numbers_as_they_are():
    doc = _doc()
    metric = {t.name: t for t in charts.metric_series(doc).data}
    assert list(metric["accuracy"].y) == [0.88, None]
    assert list(metric["reference"].y) == [0.9, 0.9]
    assert list(charts.outlier_share(doc).data[0].y) == [0.01, None]  # no events: no share
    assert list(charts.events_per_window(doc).data[0].y) == [900, 0]
    assert list(charts.label_coverage(doc).data[0].y) == [0.5, None]


def test_event_data_cannot_script_the_page():
    """A category value comes from the events, so from anyone who can produce: it must
    reach the page as text, in the table and in the chart's data alike."""
    evil = "</script><script>alert(1)</script>"
    doc = {
        "model_id": "m",
        "feature": "city",
        "kind": "categorical",
        "window": {"start": "2026-11-30T12:00:00Z", "end": "2026-11-30T12:10:00Z", "count": 2},
        "missing": 0,
        "reference_missing": 0,
        "bins": ["paris", "(other)", evil],
        "window_counts": [1, 0, 1],
        "reference_counts": [5, 0, 0],
        "window_shares": [0.5, 0.0, 0.5],
        "reference_shares": [1.0, 0.0, 0.0],
        "statistics": None,
        "windows": ["2026-11-30T12:00:00Z"],
    }
    html = pages.feature_page(doc)
    assert "alert(1)" in html  # shown...
    assert "<script>alert(1)" not in html  # ...never run
    assert html.count("<script") == 3  # plotly.js, the chart, the resize on load
