"""An alert as read from the alerts topic: the contract's model plus where it came from.

Alerts are validated against `events.Alert`, so routes and sinks can rely on every
field, but unknown fields are kept rather than refused: workers newer than the notifier
may add fields, and an alert must not become undeliverable because of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ConfigDict, ValidationError

from streamdrift.events import Alert


class ReceivedAlertModel(Alert):
    """`Alert`, tolerant of fields it does not know."""

    model_config = ConfigDict(extra="allow")


class InvalidAlert(Exception):
    """The message is not an alert (not JSON, or not the contract's shape)."""


@dataclass(frozen=True)
class ReceivedAlert:
    alert: ReceivedAlertModel
    #: the message's value as published: the webhook body, byte for byte
    raw: bytes
    #: `topic:partition:offset`, for logs and the `.undelivered` record
    source: str

    @property
    def route(self) -> str | None:
        """Who acts on it (`context.route`: data-team, ml-team, ops), if the worker said."""
        route = self.alert.context.get("route")
        return route if isinstance(route, str) else None

    @property
    def dedup_key(self) -> str:
        """The episode (open, escalated and resolved share it), else the alert itself."""
        return self.alert.episode_id or self.alert.alert_id


def parse_alert(value: bytes | None, source: str) -> ReceivedAlert:
    """The alert in a message value, or `InvalidAlert` saying what is wrong with it."""
    if not value:
        raise InvalidAlert("empty message")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise InvalidAlert(f"not JSON: {e}") from None
    try:
        alert = ReceivedAlertModel.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(alert)"
        raise InvalidAlert(f"not an alert: {where}: {first['msg']}") from None
    return ReceivedAlert(alert=alert, raw=value, source=source)
