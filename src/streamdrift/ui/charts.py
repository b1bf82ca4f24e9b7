"""The dashboard's charts, as Plotly figures built from the `inspect --json` documents.

Each chart takes its numbers straight from a document (no rescaling, no smoothing), as
plain lists, so the figure in the browser holds the very values `inspect --json` prints
and a test can compare them one by one. Times stay the documents' RFC 3339 strings;
Plotly reads them as a time axis."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go

#: colours by severity, the alerts timeline's and the episode bars'
SEVERITY_COLOURS = {"critical": "#b2182b", "warning": "#ef8a62", "info": "#67a9cf"}
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
    "height": 280,
    "hovermode": "closest",
    "legend": {"orientation": "h", "y": -0.2},
}


def _figure(title: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title, "x": 0, "font": {"size": 14}}, **{**_LAYOUT, **layout})
    return fig


def _starts(doc: dict[str, Any]) -> list[str]:
    return [w["start"] for w in doc["windows"]]


def drift_rows(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The heatmap's rows, top to bottom: (label, section, name) for each feature in the
    reference's order, then the model's outputs."""
    features: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for w in doc["windows"]:
        features.update(dict.fromkeys(w["features"]))
        outputs.update(dict.fromkeys(w["outputs"]))
    return [(f, "features", f) for f in features] + [
        (f"output: {o}", "outputs", o) for o in outputs
    ]


def drift_heatmap(doc: dict[str, Any]) -> go.Figure:
    """Features × windows, coloured by each feature's drift statistic (its verdict's
    value: PSI by default), drifted cells marked with a cross. The colour scale tops out
    at twice the largest threshold, so the threshold sits mid-scale."""
    rows = drift_rows(doc)
    starts = _starts(doc)
    z: list[list[float | None]] = []
    hover: list[list[str]] = []
    marked_x: list[str] = []
    marked_y: list[str] = []
    thresholds = [0.0]
    for label, section, name in rows:
        z_row: list[float | None] = []
        hover_row: list[str] = []
        for w in doc["windows"]:
            cell = w[section].get(name)
            if cell is None or cell.get("value") is None:
                z_row.append(None)
                hover_row.append("no events")
                continue
            z_row.append(cell["value"])
            thresholds.append(cell["threshold"])
            hover_row.append(
                f"{cell['statistic']} {cell['value']:.4g} (threshold {cell['threshold']:g}), "
                f"p {cell['p_value']:.3g}, n {cell['sample_size']:,}"
                + (", DRIFTED" if cell["drifted"] else "")
            )
            if cell["drifted"]:
                marked_x.append(w["start"])
                marked_y.append(label)
        z.append(z_row)
        hover.append(hover_row)
    fig = _figure(
        "drift by feature and window (statistic against its threshold; × drifted)",
        height=max(220, 60 + 18 * len(rows)),
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right"},
    )
    fig.add_trace(
        go.Heatmap(
            x=starts,
            y=[r[0] for r in rows],
            z=z,
            text=hover,
            hovertemplate="%{y}<br>%{x}<br>%{text}<extra></extra>",
            colorscale="YlOrRd",
            zmin=0,
            zmax=2 * max(thresholds) or 1,
            colorbar={"title": {"text": "statistic"}, "thickness": 12},
            name="drift",
            xgap=1,
            ygap=1,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=marked_x,
            y=marked_y,
            mode="markers",
            marker={"symbol": "x-thin", "size": 9, "line": {"width": 2, "color": "#fff"}},
            name="drifted",
            hoverinfo="skip",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def metric_series(doc: dict[str, Any]) -> go.Figure:
    """The headline metric per window with the reference's value as a line, and, when
    the model's scores allow it, the metric estimated before labels with its band."""
    metric = doc["headline_metric"]
    starts = _starts(doc)
    fig = _figure(f"{metric} per window against the reference")
    estimated = [
        (w.get("estimated_performance") or {}).get("metrics", {}).get(metric)
        for w in doc["windows"]
    ]
    if any(e is not None for e in estimated):
        fig.add_trace(
            go.Scatter(
                x=starts + starts[::-1],
                y=[e["upper"] if e else None for e in estimated]
                + [e["lower"] if e else None for e in estimated][::-1],
                fill="toself",
                fillcolor="rgba(103,169,207,0.2)",
                line={"width": 0},
                name=f"estimated {metric} band",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=starts,
                y=[e["value"] if e else None for e in estimated],
                mode="lines+markers",
                line={"dash": "dot", "color": "#67a9cf"},
                name=f"estimated {metric}",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=starts,
            y=[w["performance"].get(metric) for w in doc["windows"]],
            mode="lines+markers",
            line={"color": "#2166ac"},
            name=metric,
        )
    )
    reference = doc["reference_performance"].get(metric)
    if reference is not None and starts:
        fig.add_trace(
            go.Scatter(
                x=[starts[0], starts[-1]],
                y=[reference, reference],
                mode="lines",
                line={"dash": "dash", "color": "#444"},
                name="reference",
            )
        )
    return fig


def label_coverage(doc: dict[str, Any]) -> go.Figure:
    """The share of each window's predictions whose label has joined."""
    fig = _figure("label coverage per window", yaxis={"range": [0, 1.05], "tickformat": ".0%"})
    fig.add_trace(
        go.Scatter(
            x=_starts(doc),
            y=[w["performance"].get("label_coverage") for w in doc["windows"]],
            mode="lines+markers",
            name="label coverage",
        )
    )
    return fig


def events_per_window(doc: dict[str, Any]) -> go.Figure:
    fig = _figure("events per window")
    fig.add_trace(go.Bar(x=_starts(doc), y=[w["count"] for w in doc["windows"]], name="events"))
    return fig


def outlier_share(doc: dict[str, Any]) -> go.Figure:
    """The share of each window's events scored as outliers."""
    fig = _figure("outlier share per window", yaxis={"tickformat": ".2%"})
    fig.add_trace(
        go.Scatter(
            x=_starts(doc),
            y=[w["outliers"] / w["count"] if w["count"] else None for w in doc["windows"]],
            mode="lines+markers",
            name="outlier share",
        )
    )
    return fig


def alerts_timeline(doc: dict[str, Any]) -> go.Figure:
    """Each episode as a bar from its first to its last window (open ones to now), and
    each alert published as a point at its window, coloured by severity."""
    width = doc["config"]["window_seconds"]
    episodes = doc["episodes"]
    fig = _figure(
        "episodes and alerts", height=max(220, 80 + 22 * len({e["key"] for e in episodes}))
    )
    for status in ("open", "resolved"):
        x: list[str | None] = []
        y: list[str | None] = []
        for e in episodes:
            if (e["status"] == "open") != (status == "open"):
                continue
            x += [e["since"], _plus(e["last_seen"], width), None]
            y += [e["key"], e["key"], None]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line={"width": 10, "color": "#b2182b" if status == "open" else "#999"},
                name=f"{status} episodes",
                connectgaps=False,
            )
        )
    keys = {e["episode_id"]: e["key"] for e in episodes}
    for severity, colour in SEVERITY_COLOURS.items():
        alerts = [a for a in doc["alerts"] if a.get("severity") == severity]
        fig.add_trace(
            go.Scatter(
                x=[a["window_start"] for a in alerts],
                y=[_episode_key(a, keys) for a in alerts],
                text=[a.get("message", "") for a in alerts],
                hovertemplate="%{text}<extra></extra>",
                mode="markers",
                marker={"color": colour, "size": 9, "line": {"width": 1, "color": "#fff"}},
                name=f"{severity} alerts",
            )
        )
    fig.update_yaxes(type="category", automargin=True)
    if doc["windows"]:  # the same span as the other charts, however few the episodes
        fig.update_xaxes(range=[doc["windows"][0]["start"], doc["windows"][-1]["end"]])
    return fig


def _plus(iso: str, seconds: int) -> str:
    t = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return t.isoformat().replace("+00:00", "Z")


def _episode_key(alert: dict[str, Any], keys: dict[str, str]) -> str:
    """The row an alert sits on: its episode's, or its type and feature when its
    episode is no longer kept."""
    if alert.get("episode_id") in keys:
        return keys[alert["episode_id"]]
    feature = alert.get("feature")
    return f"{alert['type']}:{feature}" if feature else str(alert["type"])


def histogram(doc: dict[str, Any]) -> go.Figure:
    """One feature in one window against its reference, share per bin on the same bins
    (counts on hover)."""
    w = doc["window"]
    fig = _figure(
        f"{doc['feature']} in window {w['start'][:16]} against the reference",
        height=340,
        barmode="group",
    )
    for name, shares, counts, colour in (
        ("reference", doc["reference_shares"], doc["reference_counts"], "#999"),
        ("window", doc["window_shares"], doc["window_counts"], "#ef8a62"),
    ):
        fig.add_trace(
            go.Bar(
                x=doc["bins"],
                y=shares,
                customdata=counts,
                hovertemplate="%{x}: %{y:.2%} (%{customdata:,})<extra>" + name + "</extra>",
                name=name,
                marker_color=colour,
            )
        )
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=".0%")
    return fig


def traffic(rows: list[dict[str, Any]]) -> go.Figure:
    """Events per window of every model, one line each: a model that went quiet or
    flooded stands out before any statistic does."""
    fig = _figure("events per window, by model", height=300)
    for r in rows:
        fig.add_trace(
            go.Scatter(x=r["windows"], y=r["counts"], mode="lines+markers", name=r["model_id"])
        )
    return fig


#: the model page's charts, in page order: (element id, builder)
MODEL_CHARTS = (
    ("chart-drift", drift_heatmap),
    ("chart-metric", metric_series),
    ("chart-coverage", label_coverage),
    ("chart-events", events_per_window),
    ("chart-outliers", outlier_share),
    ("chart-alerts", alerts_timeline),
)
