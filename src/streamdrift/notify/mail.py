"""E-mail over SMTP (smtplib): plain SMTP, STARTTLS or SMTP over TLS, login optional.

The subject carries the status, severity, type, model and feature, so an inbox reads
as a list of what happened. Each mail's `Message-ID` is made from the alert id, so a
re-delivery is the same message to mail systems that drop repeats, and every mail of
an episode refers to the episode (`References`), so mail clients thread open,
escalated and resolved together.

Failures: an SMTP 4xx reply (a full queue, greylisting) and a lost connection are
retried; a 5xx reply (recipient unknown, login refused, sender refused) is not.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

import orjson
from pydantic import Field, SecretStr

from streamdrift.notify import alert_text
from streamdrift.notify.received import ReceivedAlert
from streamdrift.notify.sink import DeliveryFailed
from streamdrift.notify.sink_config import SinkConfig

log = logging.getLogger("streamdrift.notify")

_DEFAULT_PORT = {"none": 25, "starttls": 587, "ssl": 465}


class EmailConfig(SinkConfig):
    type: Literal["email"] = "email"
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535, description="default: 25, 587 or 465")
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[streamdrift]"


def email_message(received: ReceivedAlert, config: EmailConfig) -> EmailMessage:
    alert = received.alert
    msg = EmailMessage()
    msg["Subject"] = f"{config.subject_prefix} {alert_text.subject(alert)}".strip()
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.to)
    msg["Date"] = format_datetime(alert.created_at)
    msg["Message-ID"] = f"<{alert.alert_id}@streamdrift>"
    if alert.episode_id:
        episode = f"<episode-{alert.episode_id}@streamdrift>"
        msg["References"] = episode
        msg["In-Reply-To"] = episode
    msg["X-Streamdrift-Alert-Id"] = alert.alert_id
    rows = [
        ("Status", alert.status),
        ("Severity", alert.severity),
        ("Type", alert.type),
        ("Model", alert.model_id + (f" {alert.model_version}" if alert.model_version else "")),
        ("Feature", alert.feature or "-"),
        ("Measured", alert_text.measured(alert)),
        ("Window", alert_text.window(alert)),
        ("Since", alert.since.isoformat() if alert.since else "-"),
        ("Lasted", alert_text.lasted(alert) or "-"),
        ("Route", received.route or "-"),
        ("Alert id", alert.alert_id),
        ("Episode", alert.episode_id or "-"),
    ]
    body = [alert_text.subject(alert), "", alert.message, ""]
    body += [f"{name + ':':<10} {value}" for name, value in rows if value != "-"]
    body += [
        "",
        "The alert as published:",
        orjson.dumps(orjson.loads(received.raw), option=orjson.OPT_INDENT_2).decode(),
    ]
    msg.set_content("\n".join(body) + "\n")
    return msg


class EmailSink:
    kind = "email"

    def __init__(self, name: str, config: EmailConfig) -> None:
        self.name = name
        self.config = config
        self.port = config.port or _DEFAULT_PORT[config.security]

    def send(self, received: ReceivedAlert) -> None:
        msg = email_message(received, self.config)
        try:
            refused = self._send(msg)
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            raise DeliveryFailed(
                f"{self.name}: every recipient refused: "
                + ", ".join(f"{r} ({c})" for r, (c, _) in e.recipients.items()),
                retryable=all(400 <= c < 500 for c in codes),
            ) from None
        except smtplib.SMTPNotSupportedError as e:
            raise DeliveryFailed(f"{self.name}: {e} (check `security`)", retryable=False) from None
        except smtplib.SMTPResponseException as e:
            text = (
                e.smtp_error.decode(errors="replace")
                if isinstance(e.smtp_error, bytes)
                else str(e.smtp_error)
            )
            raise DeliveryFailed(
                f"{self.name}: SMTP {e.smtp_code}: {text}", retryable=400 <= e.smtp_code < 500
            ) from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryFailed(f"{self.name}: {type(e).__name__}: {e}", retryable=True) from None
        if refused:
            log.warning(
                "%s: alert %s not accepted for %s",
                self.name,
                received.alert.alert_id,
                ", ".join(sorted(refused)),
                extra={"sink": self.name, "refused": sorted(refused)},
            )

    def _send(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        c = self.config
        timeout = c.timeout_seconds
        smtp: smtplib.SMTP
        if c.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                c.host, self.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(c.host, self.port, timeout=timeout)
        with smtp:
            if c.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                password = c.password.get_secret_value() if c.password else ""
                smtp.login(c.username, password)
            return smtp.send_message(msg)

    def describe(self) -> str:
        login = f", login {self.config.username}" if self.config.username else ""
        return (
            f"SMTP {self.config.host}:{self.port} ({self.config.security}{login}) "
            f"to {', '.join(self.config.to)}"
        )

    def close(self) -> None:
        pass
