"""The streamdrift SDK: publish a model's predictions and labels (`Monitor`,
`AsyncMonitor`) and read its monitoring results back as DataFrames (`Results`).

Publishing needs only confluent-kafka and orjson; `Results` imports pandas when first
used (`pip install 'streamdrift[sdk]'`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamdrift.client.monitor import AsyncMonitor, Monitor
from streamdrift.client.validation import InvalidEvent

if TYPE_CHECKING:
    from streamdrift.client.results import Results

__all__ = ["AsyncMonitor", "InvalidEvent", "Monitor", "Results"]


def __getattr__(name: str) -> Any:
    if name == "Results":  # pandas only when results are read
        from streamdrift.client.results import Results

        return Results
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
