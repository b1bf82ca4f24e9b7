"""Settings every sink has: its retry budget, how many deliveries it runs at once, and
how long it waits for an answer. Each sink's own settings extend `SinkConfig`."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    """Capped exponential backoff: the n-th wait is about `initial_seconds`·2^(n-1), at
    most `max_seconds`, with jitter (uniform over its upper half) so sinks retrying
    after one outage do not hammer the receiver in step. After `attempts` tries (the
    first included) the sink gives up: the alert goes to `<alerts topic>.undelivered`
    and the notifier moves on."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(5, ge=1, le=100, description="tries in all, the first included")
    initial_seconds: float = Field(0.5, gt=0, le=3600)
    max_seconds: float = Field(30.0, gt=0, le=3600, description="the cap of one wait")


class SinkConfig(BaseModel):
    """What every sink has; `retry` unset takes the file's `retry`."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, populate_by_name=True)

    retry: RetryPolicy | None = None
    concurrency: int = Field(
        4, ge=1, le=64, description="deliveries at once, each of a different model"
    )
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="per request")


def check_http_url(url: str) -> str:
    """A URL the sink can POST to: http or https, with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


def origin(url: str) -> str:
    """`https://host:port/…`: where a URL points, without the path and query that often
    hold a webhook's token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"
