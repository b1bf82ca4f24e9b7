"""Times as people type them on a command line or in a URL: RFC 3339 / ISO 8601
("2026-11-30T15:20:00Z", "2026-11-30 15:20", a date alone), epoch seconds, or an age
("90m", "6h", "2d": that long before now). A time without a zone is UTC, as every time
streamdrift prints is."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from streamdrift.errors import StreamdriftError

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, what: str = "time", now: float | None = None) -> float:
    """Epoch seconds of `text`; a clear error naming `what` and the accepted forms."""
    value = text.strip()
    age = _AGE.match(value)
    if age:
        return (time.time() if now is None else now) - float(age[1]) * _UNIT_SECONDS[age[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StreamdriftError(
            f"{what} '{text}' is not a time",
            "give an RFC 3339 time (2026-11-30T15:20:00Z), epoch seconds, or an age "
            "such as 90m, 6h, 2d",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
