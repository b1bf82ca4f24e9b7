"""What every sink is: a name, `send(alert)`, and failures that say whether to retry.

A sink sends one alert per call and raises `DeliveryFailed` when the receiver did not
take it. Whether trying again can help is the sink's call, since only it knows its
protocol: a timeout or an HTTP 503 may pass, an HTTP 400 (the receiver refuses the
message) or a refused SMTP recipient will not, and retrying it only delays the
`.undelivered` record a person has to look at."""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Protocol

import httpx

from streamdrift import __version__
from streamdrift.notify.received import ReceivedAlert
from streamdrift.redaction import mask_text

USER_AGENT = f"streamdrift/{__version__}"
#: the receiver's own words in an error, at most this many characters
_BODY_EXCERPT = 200

# httpx logs every request with its full URL at INFO, and a Slack webhook's URL is its
# token: its own lines stay out of the log, ours say what happened without the URL.
logging.getLogger("httpx").setLevel(logging.WARNING)


class DeliveryFailed(Exception):
    """The receiver did not take the alert. `retry_after`: seconds the receiver asked
    us to wait (HTTP `Retry-After`), if it did. The message is masked: it ends up in
    logs and in `.undelivered`."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        message = mask_text(message)
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Sink(Protocol):
    """One configured destination (a webhook, a Slack channel, a PagerDuty service...)."""

    name: str
    kind: str

    def send(self, received: ReceivedAlert) -> None:
        """Deliver one alert or raise `DeliveryFailed`; safe to call from many threads."""
        ...

    def describe(self) -> str:
        """Where it delivers, without secrets: for logs and `notify --check`."""
        ...

    def close(self) -> None: ...


def http_client(timeout_seconds: float) -> httpx.Client:
    """One pooled client per sink, shared by its delivery threads. Redirects are not
    followed: a webhook that moved must be configured with its new URL, not followed
    blindly with a signed alert in hand."""
    return httpx.Client(
        timeout=timeout_seconds,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def post(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], what: str
) -> httpx.Response:
    """POST `body`; a 2xx response is returned, anything else raised as `DeliveryFailed`.

    Retryable: no answer (connection refused, reset, timeout), 408, 425, 429 and 5xx;
    a refusal (other 4xx) and a redirect are not. `what` names the receiver in the
    message; the URL is left out, as webhook URLs often carry their token."""
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as e:
        raise DeliveryFailed(f"{what}: no answer in time ({type(e).__name__})", True) from None
    except httpx.TransportError as e:
        raise DeliveryFailed(f"{what}: {type(e).__name__}: {e}", True) from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    excerpt = response.text[:_BODY_EXCERPT].strip().replace("\n", " ")
    retryable = status in (408, 425, 429) or status >= 500
    hint = " (a redirect: configure the new URL)" if 300 <= status < 400 else ""
    raise DeliveryFailed(
        f"{what}: HTTP {status}{hint}" + (f": {excerpt}" if excerpt else ""),
        retryable,
        retry_after(response.headers.get("Retry-After")),
    )


def retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
