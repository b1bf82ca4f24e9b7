"""The generic webhook: a POST of the alert's JSON as published, for any receiver.

Headers: `Idempotency-Key: <alert_id>` (a re-delivery after a crash carries the same
key, so the receiver can drop it), `X-Streamdrift-Timestamp` (Unix seconds) and, with a
`secret`, `X-Streamdrift-Signature: sha256=<hex>` over `<timestamp>.<body>`
(`signing.py`), plus any `headers` configured (an `Authorization` token, say)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from streamdrift.notify.received import ReceivedAlert
from streamdrift.notify.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from streamdrift.notify.sink import http_client, post
from streamdrift.notify.sink_config import SinkConfig, check_http_url, origin

IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookConfig(SinkConfig):
    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None
    #: extra headers (an Authorization token): values kept secret
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return check_http_url(url)


class WebhookSink:
    kind = "webhook"

    def __init__(self, name: str, config: WebhookConfig) -> None:
        self.name = name
        self.config = config
        self.client = http_client(config.timeout_seconds)

    def headers(self, received: ReceivedAlert, now: float | None = None) -> dict[str, str]:
        timestamp = str(int(time.time() if now is None else now))
        headers = {
            **{k: v.get_secret_value() for k, v in self.config.headers.items()},
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: received.alert.alert_id,
            TIMESTAMP_HEADER: timestamp,
        }
        if self.config.secret is not None:
            secret = self.config.secret.get_secret_value()
            headers[SIGNATURE_HEADER] = signature(secret, timestamp, received.raw)
        return headers

    def send(self, received: ReceivedAlert) -> None:
        post(self.client, self.config.url, received.raw, self.headers(received), self.name)

    def describe(self) -> str:
        signed = ", signed" if self.config.secret is not None else ""
        extra = f", headers {', '.join(sorted(self.config.headers))}" if self.config.headers else ""
        return f"POST {origin(self.config.url)}{signed}{extra}"

    def close(self) -> None:
        self.client.close()
