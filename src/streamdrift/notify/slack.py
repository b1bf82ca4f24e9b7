"""Slack incoming webhooks: a message of `text` (what notifications and old clients
show) and Block Kit `blocks` (header, the alert's message, its fields, its ids).

The status leads: an open alert is marked by its severity (red for critical, amber for
warning, blue for info), an escalated one says so, and a resolved one is a green check
with how long the episode lasted, so nobody mistakes the end of a problem for a new
one. Slack's limits are kept (header 150 characters, section 3,000, 10 fields), and
user text is escaped as Slack's mrkdwn requires (`&`, `<`, `>`).

Reference: https://api.slack.com/messaging/webhooks, https://api.slack.com/reference/block-kit/blocks
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import SecretStr, field_validator

from streamdrift.notify import alert_text
from streamdrift.notify.received import ReceivedAlert, ReceivedAlertModel
from streamdrift.notify.sink import http_client, post
from streamdrift.notify.sink_config import SinkConfig, check_http_url, origin
from streamdrift.notify.webhook import IDEMPOTENCY_HEADER

_SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
_RESOLVED_EMOJI = ":white_check_mark:"
_ESCALATED_EMOJI = ":arrow_double_up:"
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 2000


class SlackConfig(SinkConfig):
    type: Literal["slack"] = "slack"
    #: the incoming webhook's URL is its credential: kept secret
    url: SecretStr

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr) -> SecretStr:
        check_http_url(url.get_secret_value())
        return url


def slack_message(received: ReceivedAlert) -> dict[str, Any]:
    """The message Slack's incoming webhook takes: `{"text": ..., "blocks": [...]}`."""
    alert = received.alert
    title = f"{_emoji(alert)} {alert_text.subject(alert)}"
    fields = [
        ("Status", alert.status),
        ("Severity", alert.severity),
        ("Type", alert.type),
        ("Model", alert.model_id + (f" {alert.model_version}" if alert.model_version else "")),
    ]
    if alert.feature:
        fields.append(("Feature", alert.feature))
    fields.append(("Measured", alert_text.measured(alert)))
    fields.append(("Window", alert_text.window(alert)))
    if (lasted := alert_text.lasted(alert)) is not None:
        fields.append(("Lasted", lasted))
    if received.route:
        fields.append(("Route", received.route))
    ids = f"alert `{alert.alert_id}`"
    if alert.episode_id:
        ids += f" · episode `{alert.episode_id}`"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(title, _HEADER_MAX), "emoji": True},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(_escape(alert.message), _SECTION_MAX)},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{name}*\n{_escape(value)}", _FIELD_MAX)}
                for name, value in fields[:10]
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(ids)}]},
    ]
    return {"text": f"{title}: {alert.message}", "blocks": blocks}


def _emoji(alert: ReceivedAlertModel) -> str:
    if alert.status == "resolved":
        return _RESOLVED_EMOJI
    if alert.status == "escalated":
        return f"{_ESCALATED_EMOJI}{_SEVERITY_EMOJI[alert.severity]}"
    return _SEVERITY_EMOJI[alert.severity]


def _escape(text: str) -> str:
    """Slack's three control characters, as its mrkdwn wants them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SlackSink:
    kind = "slack"

    def __init__(self, name: str, config: SlackConfig) -> None:
        self.name = name
        self.config = config
        self.client = http_client(config.timeout_seconds)

    def send(self, received: ReceivedAlert) -> None:
        body = orjson.dumps(slack_message(received))
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: received.alert.alert_id,
        }
        post(self.client, self.config.url.get_secret_value(), body, headers, self.name)

    def describe(self) -> str:
        return f"Slack incoming webhook at {origin(self.config.url.get_secret_value())}"

    def close(self) -> None:
        self.client.close()
