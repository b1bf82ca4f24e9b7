"""The overview of every model, one row each: what someone opening the dashboard asks
first (is anything wrong, and where).

It reads only the windows of the last hour and the latest labelled one, not the whole
`inspect` document of every model, so the front page stays quick however many windows
a model keeps."""

from __future__ import annotations

import time
from typing import Any

from streamdrift.monitors import headline_metric, window_performance
from streamdrift.report import iso_time, json_number
from streamdrift.store import Store

HOUR = 3600


def model_rows(store: Store, now: float | None = None, last: int = 48) -> list[dict[str, Any]]:
    """Per model: task, versions seen in the last hour, events in windows overlapping
    the last hour, open episodes, the headline metric of the latest window with labels
    against the reference's, and the events of its last `last` windows (the traffic
    chart)."""
    now = time.time() if now is None else now
    rows = []
    for model in store.profiles.models():
        profile = store.profiles.load(model)
        if profile is None:  # unregistered between the two reads
            continue
        width = profile.config.window_seconds
        starts = store.windows.starts(model, profile.revision)
        recent = {s for s in starts if s + width > now - HOUR and s <= now}
        windows = store.windows.read(profile, starts[-max(len(recent), last) :])
        metric = headline_metric(profile)
        hour = [w for w in windows if w.start in recent]
        versions: set[str] = set()
        for w in hour or windows[-1:]:
            versions.update(v for v in w.versions if v)
        labelled = [w for w in windows if w.performance is not None and w.performance.labelled]
        perf = window_performance(profile, labelled[-1]) if labelled else {}
        episodes = store.episodes.load(model).episodes.values()
        rows.append(
            {
                "model_id": model,
                "as_of": now,
                "task": profile.task,
                "versions": sorted(versions),
                "events_last_hour": sum(w.count for w in hour),
                "latest_window": iso_time(starts[-1]) if starts else None,
                "open_episodes": sum(1 for e in episodes if e.status == "open"),
                "metric": metric,
                "value": json_number(perf[metric]) if metric in perf else None,
                "value_window": iso_time(labelled[-1].start) if labelled else None,
                "reference": json_number(profile.reference_performance.get(metric, float("nan"))),
                "windows": [iso_time(w.start) for w in windows[-last:]],
                "counts": [w.count for w in windows[-last:]],
            }
        )
    return rows
