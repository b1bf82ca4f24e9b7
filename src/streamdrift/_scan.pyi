"""Types of the compiled scanner (`_scan.c`)."""

from typing import Any

def scan(
    values: list[bytes], numeric: tuple[str, ...], categorical: tuple[str, ...], max_bytes: int, /
) -> (
    tuple[
        list[str],
        list[str],
        list[str | None],
        list[Any],
        bytearray,
        list[list[Any]],
        list[Any],
        list[Any],
        list[Any],
        list[dict[str, Any] | None],
        int,
    ]
    | None
): ...
def messages(
    msgs: list[Any], /
) -> tuple[list[bytes], list[int], list[int], dict[int, int]] | None: ...
def by_topic(msgs: list[Any], topic: str, /) -> tuple[list[Any], list[Any]]: ...
def codes(values: list[Any], /) -> tuple[bytes, list[Any]]: ...
def shards(ids: list[str], n: int, /) -> list[int]: ...
def scan_labels(
    values: list[bytes], max_bytes: int, /
) -> tuple[list[str], list[str], list[Any], list[Any]] | None: ...
def bin_columns(x: Any, edges: list[Any], out: Any, /) -> None: ...
def group_moments(
    x: Any,
    bins: Any,
    groups: Any,
    offsets: Any,
    low: Any,
    high: Any,
    total: int,
    hist: Any,
    n_ok: Any,
    n_out: Any,
    sums: Any,
    sums_sq: Any,
    lows: Any,
    highs: Any,
    /,
) -> None: ...
