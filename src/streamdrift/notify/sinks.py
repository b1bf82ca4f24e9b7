"""The sinks of a routes file, made from their configs: one object per named sink,
each holding its own HTTP connection pool."""

from __future__ import annotations

from streamdrift.notify.mail import EmailConfig, EmailSink
from streamdrift.notify.pagerduty import PagerDutyConfig, PagerDutySink
from streamdrift.notify.routes import RoutesFile
from streamdrift.notify.sink import Sink
from streamdrift.notify.slack import SlackConfig, SlackSink
from streamdrift.notify.webhook import WebhookConfig, WebhookSink


def build_sinks(routes: RoutesFile) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {}
    for name, config in routes.sinks.items():
        if isinstance(config, WebhookConfig):
            sinks[name] = WebhookSink(name, config)
        elif isinstance(config, SlackConfig):
            sinks[name] = SlackSink(name, config)
        elif isinstance(config, PagerDutyConfig):
            sinks[name] = PagerDutySink(name, config)
        elif isinstance(config, EmailConfig):
            sinks[name] = EmailSink(name, config)
    return sinks
