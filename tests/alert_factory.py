"""Alerts as the workers publish them (the `events.Alert` contract), for the notifier's
tests and benchmark: episodes of open, escalated and resolved alerts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from streamdrift.events import Alert

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def alert_doc(
    model_id: str = "fraud",
    status: str = "open",
    episode: str | None = "ep-1",
    severity: str = "warning",
    type: str = "data_drift",
    route: str | None = "ml-team",
    feature: str = "amount",
    seq: int = 0,
    message: str | None = None,
) -> dict[str, Any]:
    """One alert; `seq` makes otherwise equal alerts distinct (and orders their times)."""
    digest = hashlib.sha256(f"{model_id}|{episode}|{status}|{severity}|{seq}".encode())
    start = T0 + timedelta(hours=seq)
    context: dict[str, Any] = {"p_value": 1e-12}
    if route is not None:
        context["route"] = route
    doc = {
        "alert_id": digest.hexdigest()[:32],
        "type": type,
        "severity": severity,
        "model_id": model_id,
        "model_version": "3.1.0",
        "feature": feature,
        "statistic": "psi",
        "value": 0.93,
        "threshold": 0.2,
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=1)).isoformat(),
        "sample_size": 4000,
        "reference_size": 20000,
        "message": message or f"{model_id}: feature '{feature}' drifted (psi 0.93)",
        "created_at": (start + timedelta(minutes=41)).isoformat(),
        "status": status,
        "episode_id": episode,
        "since": T0.isoformat() if episode else None,
        "context": context,
    }
    Alert.model_validate(doc)  # the factory follows the contract, or the test is wrong
    return doc


def alert_bytes(**kwargs: Any) -> bytes:
    return orjson.dumps(alert_doc(**kwargs))


def episodes(models: list[str], per_model: int) -> list[dict[str, Any]]:
    """`per_model` episodes for each model, each open → escalated → resolved, the models
    interleaved as a worker would raise them; routes cycle over the three teams."""
    routes = ["ml-team", "data-team", "ops"]
    out = []
    for e in range(per_model):
        for s, status in enumerate(("open", "escalated", "resolved")):
            for m, model in enumerate(models):
                out.append(
                    alert_doc(
                        model_id=model,
                        status=status,
                        episode=f"{model}-ep{e}",
                        severity="warning" if status == "open" else "critical",
                        route=routes[(m + e) % 3],
                        seq=e * 3 + s,
                    )
                )
    return out
