"""The public event contract: prediction, label and alert events.

These pydantic models are the single definition of the contract; `schemas/*.json` are
generated from them (`streamdrift schemas --write`) and a test keeps the two identical.
The worker's hot path does not run pydantic per event (see `decode.py`, which checks the
same rules far faster); tests hold both to the same verdict on good and bad events.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Identifier = Annotated[str, Field(min_length=1, max_length=256)]
Scalar = float | int | str | bool | None
Timestamp = Annotated[
    datetime | float | None,
    Field(
        description=(
            "RFC 3339 string, or an epoch time in seconds, milliseconds, microseconds or "
            "nanoseconds, told apart by magnitude: |t| < 1e11 seconds, < 1e14 milliseconds, "
            "< 1e17 microseconds, else nanoseconds (unambiguous from March 1973 to the year "
            "5138). It must fall after 1970 and at most a day ahead of the worker's clock. "
            "Absent: the Kafka message time."
        )
    ),
]


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinity are not allowed")
    return value


class PredictionOutput(BaseModel):
    """A classifier's output: a score (positive-class probability) and/or a class."""

    model_config = ConfigDict(extra="allow")

    score: float | None = None
    label: int | str | bool | None = None

    @field_validator("score")
    @classmethod
    def _finite_score(cls, v: float | None) -> float | None:
        _finite(v)
        return v


class PredictionEvent(BaseModel):
    """One prediction, published by the serving service (topic `predictions`)."""

    model_config = ConfigDict(extra="allow", title="streamdrift prediction event")

    prediction_id: Identifier
    model_id: Identifier
    model_version: str | None = None
    timestamp: Timestamp = None
    features: dict[str, Scalar]
    prediction: PredictionOutput | float | int | str | bool
    segments: dict[str, str | int | bool] | None = None

    @field_validator("features")
    @classmethod
    def _finite_features(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        for value in v.values():
            _finite(value)
        return v

    @field_validator("timestamp", "prediction")
    @classmethod
    def _finite_numbers(cls, v: object) -> object:
        return _finite(v)


class LabelEvent(BaseModel):
    """The ground truth for one prediction, published later (topic `labels`)."""

    model_config = ConfigDict(extra="allow", title="streamdrift label event")

    prediction_id: Identifier
    model_id: Identifier
    label: float | int | str | bool
    timestamp: Timestamp = None

    @field_validator("label", "timestamp")
    @classmethod
    def _finite_numbers(cls, v: object) -> object:
        return _finite(v)


AlertType = Literal[
    "data_drift",
    "prediction_drift",
    "label_drift",
    "multivariate_drift",
    "performance_degradation",
    "estimated_performance_degradation",
    "data_quality",
    "outlier",
    "volume",
    "freshness",
    "fairness",
    "challenger_comparison",
    "system",
]
Severity = Literal["info", "warning", "critical"]
#: an episode's life: opened once, escalated when its severity rises, resolved once
AlertStatus = Literal["open", "escalated", "resolved"]


class Alert(BaseModel):
    """An alert on topic `alerts`.

    Alerts come in episodes: a condition (a feature drifting, performance degraded, ...)
    raises one `open` alert when it starts, at most one `escalated` alert per rise in
    severity, and one `resolved` alert once it has been absent for a while; all three
    carry the same `episode_id`. `alert_id` is a digest of what the alert says, so a
    re-publish after a crash is recognisable as the same alert (receivers deduplicate
    on it), and `context.route` says who acts on it (data-team, ml-team, ops)."""

    model_config = ConfigDict(extra="forbid", title="streamdrift alert")

    alert_id: str = Field(min_length=16, max_length=64)
    type: AlertType
    severity: Severity
    model_id: Identifier
    model_version: str | None
    feature: str
    statistic: str
    value: float
    threshold: float
    window_start: datetime
    window_end: datetime
    sample_size: int = Field(ge=0)
    reference_size: int = Field(ge=0)
    message: str
    created_at: datetime
    status: AlertStatus = "open"
    episode_id: str | None = Field(
        None, description="shared by the open, escalated and resolved alerts of one episode"
    )
    since: datetime | None = Field(None, description="start of the episode's first window")
    context: dict[str, object] = Field(default_factory=dict)
