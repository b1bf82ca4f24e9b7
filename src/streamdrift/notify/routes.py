"""The routes file: which sinks exist, and which alerts go to which of them.

```yaml
sinks:
  ops-pager: {type: pagerduty, routing_key: "${PD_ROUTING_KEY}"}
  ml-slack:  {type: slack, url: "${SLACK_ML_WEBHOOK}"}
routes:
  - match: {route: ops}
    sinks: [ops-pager]
  - match: {route: ml-team, severity: [warning, critical]}
    sinks: [ml-slack]
```

Routes are tried in order and the first that matches decides, as in Prometheus
Alertmanager; a route with `continue: true` passes the alert on to the routes after it
as well (an audit webhook that sees everything, then the team's channel). A route
matches when every key of its `match` does (`route` is the alert's `context.route`;
`type`, `severity`, `status`, `model_id` its fields); a key takes one value or a list of
them, and a route without `match` takes every alert. An alert is sent to a sink once
however many of its routes name it; an alert no route matches is sent nowhere (and
counted). First-match is the default because routes that overlap by accident are the
usual mistake, and double pages are worse than a missing catch-all, which is one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from streamdrift.errors import ConfigError
from streamdrift.events import AlertStatus, AlertType, Severity
from streamdrift.notify.env_vars import expand_env_vars
from streamdrift.notify.mail import EmailConfig
from streamdrift.notify.pagerduty import PagerDutyConfig
from streamdrift.notify.received import ReceivedAlert
from streamdrift.notify.sink_config import RetryPolicy
from streamdrift.notify.slack import SlackConfig
from streamdrift.notify.webhook import WebhookConfig
from streamdrift.redaction import remember, url_password

AnySinkConfig = Annotated[
    WebhookConfig | SlackConfig | PagerDutyConfig | EmailConfig, Field(discriminator="type")
]
_FIX = "see `Notifications` in the README for the routes file's keys"


def _listed(value: Any) -> Any:
    """One value or a list of them: `severity: critical` is `severity: [critical]`."""
    return [value] if isinstance(value, str) else value


class Match(BaseModel):
    """What a route takes; unset keys match anything."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    route: list[str] | None = None
    type: list[AlertType] | None = None
    severity: list[Severity] | None = None
    status: list[AlertStatus] | None = None
    model_id: list[str] | None = None

    _one_or_many = field_validator("*", mode="before")(_listed)

    def matches(self, received: ReceivedAlert) -> bool:
        alert = received.alert
        return (
            (self.route is None or received.route in self.route)
            and (self.type is None or alert.type in self.type)
            and (self.severity is None or alert.severity in self.severity)
            and (self.status is None or alert.status in self.status)
            and (self.model_id is None or alert.model_id in self.model_id)
        )


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, populate_by_name=True)

    match: Match = Field(default_factory=Match)
    sinks: list[str] = Field(min_length=1)
    keep_going: bool = Field(
        False, alias="continue", description="also try the routes after this one"
    )

    _one_or_many = field_validator("sinks", mode="before")(_listed)


class RoutesFile(BaseModel):
    """The whole file: the sinks, the routes over them, and the default retry policy."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    sinks: dict[str, AnySinkConfig] = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    def sinks_for(self, received: ReceivedAlert) -> list[str]:
        """The sinks `received` goes to, each once, in the order the routes name them."""
        names: list[str] = []
        for route in self.routes:
            if not route.match.matches(received):
                continue
            names.extend(n for n in route.sinks if n not in names)
            if not route.keep_going:
                break
        return names

    def retry_of(self, sink: str) -> RetryPolicy:
        return self.sinks[sink].retry or self.retry

    def unknown_sinks(self) -> list[tuple[int, str]]:
        """(route index, name) of every sink a route names that is not defined."""
        return [(i, n) for i, r in enumerate(self.routes) for n in r.sinks if n not in self.sinks]


def webhook_only(url: str) -> RoutesFile:
    """`streamdrift notify --webhook URL`: every alert to one webhook."""
    try:
        return RoutesFile(
            sinks={"webhook": WebhookConfig(url=url)}, routes=[Route(sinks=["webhook"])]
        )
    except ValidationError as e:
        raise ConfigError(f"--webhook: {_message(e)}", "pass an http:// or https:// URL") from None


def load_routes(path: Path, environ: dict[str, str] | None = None) -> RoutesFile:
    """Read a JSON or YAML routes file, expand `${VAR}`s, validate it; every mistake is
    a one-line `ConfigError` naming the file, the place and the fix."""
    if not path.is_file():
        raise ConfigError(
            f"routes file {path} not found", "pass an existing JSON or YAML file to --routes"
        )
    text = path.read_bytes()
    try:
        doc = orjson.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"routes file {path} is not valid JSON: {e}", "fix the JSON") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(
            f"routes file {path} is not valid YAML{at}: {getattr(e, 'problem', e)}",
            "fix the YAML (quote values holding ${...}, : or # in flow style)",
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"routes file {path} holds no mapping", "start it with `sinks:` and `routes:`"
        )
    doc = expand_env_vars(doc, "", f"routes file {path}", environ)
    try:
        routes = RoutesFile.model_validate(doc)
    except ValidationError as e:
        where = _place(e.errors()[0]["loc"])
        raise ConfigError(f"routes file {path}: {where}: {_message(e)}", _FIX) from None
    for index, name in routes.unknown_sinks():
        defined = ", ".join(sorted(routes.sinks))
        raise ConfigError(
            f"routes file {path}: routes[{index}] names sink '{name}', which is not defined",
            f"define it under `sinks:` or use one of: {defined}",
        )
    remember_secrets(routes)
    return routes


def _place(loc: tuple[int | str, ...]) -> str:
    """`routes[2].match.severity[0]`: where in the file, as the user wrote it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the file)"


def _message(error: ValidationError) -> str:
    return error.errors()[0]["msg"].removeprefix("Value error, ")


def remember_secrets(routes: RoutesFile) -> None:
    """Register every secret of the file for masking, also those written in the file
    itself rather than taken from the environment: routing keys, Slack URLs, HMAC
    secrets, SMTP passwords, header values, passwords in URLs."""
    for config in routes.sinks.values():
        for value in vars(config).values():
            if isinstance(value, SecretStr):
                remember(value.get_secret_value())
        if isinstance(config, WebhookConfig):
            remember(url_password(config.url))
            for header in config.headers.values():
                # `Bearer <token>`: the token alone is as secret as the whole value
                value = header.get_secret_value()
                remember(value, value.split()[-1] if value.strip() else None)
