"""Types of the compiled pairing (`_pairing.c`)."""

from typing import Any

def meet(
    predictions: list[list[Any]],
    labels: list[list[Any]],
    records: dict[Any, Any],
    by_shard: bool,
    width: int,
    check_scores: bool,
    /,
) -> (
    tuple[
        dict[tuple[int, str], str],
        dict[tuple[int, str], str],
        list[str],
        list[str],
        list[int],
        list[int],
        dict[int, list[Any]],
        int,
        int,
        int,
    ]
    | None
): ...
def records(
    ids: list[str],
    seconds: list[int],
    versions: list[str],
    classes: list[str],
    scores: list[str],
    tails: list[str],
    shards: list[int],
    /,
) -> list[list[Any]] | None: ...
