"""Reading a model's monitoring results from Redis into pandas DataFrames.

The figures are those of `streamdrift inspect --json` (`streamdrift.report.model_report`),
one row per window or per alert. Needs pandas: `pip install 'streamdrift[sdk]'`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from streamdrift.report import model_report
from streamdrift.store import Store
from streamdrift.time_spec import parse_time

_WINDOW_COLUMNS = [
    "start",
    "end",
    "count",
    "labelled",
    "metric",
    "value",
    "drifting_features",
    "drifting",
    "outliers",
]

_ALERT_COLUMNS = [
    "created_at",
    "alert_id",
    "type",
    "severity",
    "status",
    "model_version",
    "feature",
    "statistic",
    "value",
    "threshold",
    "window_start",
    "window_end",
    "sample_size",
    "reference_size",
    "episode_id",
    "since",
    "message",
]

_TIMES = ("start", "end", "created_at", "window_start", "window_end", "since")


#: a time as the reader takes it
When = datetime | float | int | str


def _epoch(when: When | None) -> float | None:
    if when is None or isinstance(when, float | int):
        return when
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return parse_time(when, "time")


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for name in _TIMES:
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


class Results:
    """A model's windows, performance and alerts, read from the Redis the workers count
    into.

    ```python
    results = Results("redis://localhost:6379/0")
    results.windows("fraud")        # one row per window, oldest first
    results.performance("fraud")    # the window's metrics, one column each
    results.alerts("fraud")         # every alert kept, oldest first
    ```
    """

    def __init__(self, redis_url: str) -> None:
        self.store = Store(redis_url)

    def report(
        self,
        model: str,
        version: str | None = None,
        last: int | None = None,
        since: When | None = None,
        until: When | None = None,
    ) -> dict[str, Any]:
        """The `inspect --json` document of the model (of one version's slice), of the
        windows starting between `since` and `until` (datetimes, epoch seconds, RFC 3339
        text or ages such as "6h"), the last `last` of them."""
        return model_report(
            self.store,
            model,
            last=last,
            slice_name=None if version is None else f"v={version}",
            since=_epoch(since),
            until=_epoch(until),
        )

    def windows(
        self,
        model: str,
        version: str | None = None,
        last: int | None = None,
        since: When | None = None,
        until: When | None = None,
    ) -> pd.DataFrame:
        """One row per window kept: `start`, `end`, `count` (events), `labelled`
        (events whose label joined), `metric` (the headline metric's name) and `value`,
        `drifting_features` (how many drift) and `drifting` (which), `outliers`.
        With `version`, the windows of that model version's events alone."""
        doc = self.report(model, version, last, since, until)
        metric = doc["headline_metric"]
        rows = [
            {
                "start": w["start"],
                "end": w["end"],
                "count": w["count"],
                "labelled": int(w["performance"].get("labelled") or 0),
                "metric": metric,
                "value": w["performance"].get(metric),
                "drifting_features": len(w["drifting"]),
                "drifting": list(w["drifting"]),
                "outliers": w["outliers"],
            }
            for w in doc["windows"]
        ]
        frame = _frame(rows, _WINDOW_COLUMNS)
        frame["value"] = frame["value"].astype("float64")
        return frame

    def performance(
        self,
        model: str,
        version: str | None = None,
        last: int | None = None,
        since: When | None = None,
        until: When | None = None,
    ) -> pd.DataFrame:
        """One row per window: `start`, `end`, `count`, then each metric the window's
        labels give (NaN where a window has none)."""
        doc = self.report(model, version, last, since, until)
        rows = [
            {"start": w["start"], "end": w["end"], "count": w["count"], **w["performance"]}
            for w in doc["windows"]
        ]
        metrics = sorted({k for r in rows for k in r} - {"start", "end", "count"})
        frame = _frame(rows, ["start", "end", "count", *metrics])
        for m in metrics:
            frame[m] = frame[m].astype("float64")
        return frame

    def alerts(self, model: str) -> pd.DataFrame:
        """Every alert of the model kept in Redis, oldest first; `context` as a dict."""
        raw = self.store.alerts.all(model)
        rows = [{**{c: a.get(c) for c in _ALERT_COLUMNS}, "context": a.get("context")} for a in raw]
        return _frame(rows, [*_ALERT_COLUMNS, "context"])
