"""`streamdrift report`: one model's charts in one HTML file to attach to a ticket, and
the data behind them as JSON.

The file carries plotly.js inside (about 3.5 MB), so it opens anywhere, offline, years
later; nothing in it points to the dashboard or the network. Besides the dashboard's
model charts it shows, for each feature that drifted in the range, its histogram
against the reference in the window where its statistic peaked: what a reader of the
ticket wants to see first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamdrift.feature_report import feature_report
from streamdrift.report import model_report
from streamdrift.store import Store
from streamdrift.time_spec import parse_time
from streamdrift.ui import pages

#: histograms a report carries at most (the features that drifted most)
MAX_HISTOGRAMS = 20


def peaks(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(feature, window start) for each feature that drifted in the document's windows,
    at the window of its largest drift statistic, most drifted first."""
    best: dict[str, tuple[float, str]] = {}
    for w in doc["windows"]:
        for name, f in w["features"].items():
            if f["drifted"] and (name not in best or f["value"] > best[name][0]):
                best[name] = (f["value"], w["start"])
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
    return [(name, start) for name, (_, start) in ranked[:MAX_HISTOGRAMS]]


def report_documents(
    store: Store,
    model: str,
    since: float | None = None,
    until: float | None = None,
    last: int | None = None,
) -> dict[str, Any]:
    """What `report --json` writes: the `inspect --json` document of the range and the
    histogram documents of its drifted features."""
    doc = model_report(store, model, last, since=since, until=until)
    features = [feature_report(store, model, name, parse_time(start)) for name, start in peaks(doc)]
    return {
        "generated_at": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
        "model": doc,
        "features": features,
    }


def report_html(documents: dict[str, Any]) -> str:
    return pages.model_page(documents["model"], scripts="inline", features=documents["features"])
