"""HTML pages from the documents and their charts, with Jinja2 templates (escaped).

plotly.js comes with the Plotly Python package: the dashboard serves it from its own
`/static/` path and the report file carries it inline, so neither needs the network."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal
from urllib.parse import quote

import plotly.io as pio
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from streamdrift.ui import charts

#: how a page gets plotly.js: from the dashboard's /static/, or inside the page
Scripts = Literal["served", "inline"]
_CONFIG = {"displaylogo": False, "responsive": True}


@cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("streamdrift.ui", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["url"] = lambda s: quote(str(s), safe="")
    return env


@cache
def plotly_js() -> bytes:
    js: str = get_plotlyjs()
    return js.encode()


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 10**-digits):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def chart_html(fig: Any, div_id: str) -> Markup:
    """A chart's element and the script that draws it; plotly.js itself is loaded once
    by the page."""
    html = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG)
    return Markup(html)


def _page(template: str, scripts: Scripts, refresh: int, **context: Any) -> str:
    return (
        _env()
        .get_template(template)
        .render(
            scripts=scripts,
            plotly_inline=Markup(f"<script>{plotly_js().decode()}</script>")
            if scripts == "inline"
            else None,
            refresh=refresh,
            generated=datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            **context,
        )
    )


def models_page(rows: list[dict[str, Any]], refresh: int = 0) -> str:
    chart = chart_html(charts.traffic(rows), "chart-traffic") if rows else None
    return _page("models.html", "served", refresh, rows=rows, chart=chart)


def model_charts(doc: dict[str, Any]) -> list[Markup]:
    builders: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = charts.MODEL_CHARTS
    return [chart_html(build(doc), div_id) for div_id, build in builders]


def model_page(
    doc: dict[str, Any],
    scripts: Scripts = "served",
    refresh: int = 0,
    features: list[dict[str, Any]] | None = None,
    query: str = "",
) -> str:
    """One model: its charts, open episodes and the latest window's features; with
    `features` (the report file), each one's histogram too."""
    return _page(
        "model.html",
        scripts,
        refresh,
        doc=doc,
        charts=model_charts(doc),
        latest=doc["windows"][-1] if doc["windows"] else None,
        histograms=[
            (f, chart_html(charts.histogram(f), f"chart-histogram-{i}"))
            for i, f in enumerate(features or [])
        ],
        links=scripts == "served",
        query=query,
    )


def feature_page(doc: dict[str, Any], refresh: int = 0) -> str:
    return _page(
        "feature.html",
        "served",
        refresh,
        doc=doc,
        chart=chart_html(charts.histogram(doc), "chart-histogram"),
    )


def message_page(title: str, message: str, code: int) -> str:
    return _page("message.html", "served", 0, title=title, message=message, code=code)
