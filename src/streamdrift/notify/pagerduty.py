"""PagerDuty Events API v2: an open or escalated alert triggers, a resolved one resolves.

All three alerts of an episode share `dedup_key` (the episode id; an alert without one
uses its own id), so PagerDuty keeps one incident per episode: an escalation is added
to the open incident and the resolution closes it. Severity maps one to one (critical,
warning, info; PagerDuty's `error` is not used). The routing key is the integration's
credential, kept secret.

Reference: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ and
https://developer.pagerduty.com/docs/events-api-v2/resolve-events/
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator

from streamdrift.notify import alert_text
from streamdrift.notify.received import ReceivedAlert
from streamdrift.notify.sink import http_client, post
from streamdrift.notify.sink_config import SinkConfig, check_http_url, origin
from streamdrift.notify.webhook import IDEMPOTENCY_HEADER

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
#: PagerDuty truncates longer summaries; we cut them ourselves, visibly
_SUMMARY_MAX = 1024


class PagerDutyConfig(SinkConfig):
    type: Literal["pagerduty"] = "pagerduty"
    routing_key: SecretStr = Field(min_length=1)
    url: str = EVENTS_URL
    source: str | None = Field(
        None, description="payload.source; default: the alert's model id (the system affected)"
    )
    client_url: str | None = Field(None, description="a link shown with the incident")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return check_http_url(url)


def pagerduty_event(
    received: ReceivedAlert,
    routing_key: str,
    source: str | None = None,
    client_url: str | None = None,
) -> dict[str, Any]:
    """The Events API v2 body for one alert."""
    alert = received.alert
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if alert.status == "resolved" else "trigger",
        "dedup_key": received.dedup_key,
    }
    if alert.status == "resolved":
        return event  # a resolve needs no payload: PagerDuty ignores one
    summary = f"{alert_text.subject(alert)}: {alert.message}"
    payload: dict[str, Any] = {
        "summary": summary if len(summary) <= _SUMMARY_MAX else summary[: _SUMMARY_MAX - 1] + "…",
        "source": source or alert.model_id,
        "severity": SEVERITY[alert.severity],
        "timestamp": alert.created_at.isoformat(),
        "class": alert.type,
        "custom_details": {
            "alert_id": alert.alert_id,
            "status": alert.status,
            "model_id": alert.model_id,
            "model_version": alert.model_version,
            "feature": alert.feature,
            "statistic": alert.statistic,
            "value": alert.value,
            "threshold": alert.threshold,
            "window_start": alert.window_start.isoformat(),
            "window_end": alert.window_end.isoformat(),
            "since": alert.since.isoformat() if alert.since else None,
            "sample_size": alert.sample_size,
            "message": alert.message,
        },
    }
    if alert.feature:
        payload["component"] = alert.feature
    if received.route:
        payload["group"] = received.route
    event["payload"] = payload
    event["client"] = "streamdrift"
    if client_url:
        event["client_url"] = client_url
    return event


class PagerDutySink:
    kind = "pagerduty"

    def __init__(self, name: str, config: PagerDutyConfig) -> None:
        self.name = name
        self.config = config
        self.client = http_client(config.timeout_seconds)

    def send(self, received: ReceivedAlert) -> None:
        event = pagerduty_event(
            received,
            self.config.routing_key.get_secret_value(),
            self.config.source,
            self.config.client_url,
        )
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: received.alert.alert_id,
        }
        post(self.client, self.config.url, orjson.dumps(event), headers, self.name)

    def describe(self) -> str:
        return f"PagerDuty Events API v2 at {origin(self.config.url)}"

    def close(self) -> None:
        self.client.close()
