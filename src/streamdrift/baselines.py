"""Baselines: what a window's drift is judged against.

* ``reference`` — the registered reference profile (training data, a healthy period).
* ``rolling`` — the last ``drift.rolling_windows`` windows before the window, pooled:
  "unlike the recent past".
* ``seasonal`` — the windows at the same place in earlier periods (``start - k *
  drift.season_seconds`` for k = 1 … ``drift.seasons``), pooled: "unlike this hour on
  other days", so a daily or weekly rhythm is not drift.

Windows that are in an open drift episode (``excluded``) are left out of both, so a
lasting drift does not become its own baseline. Windows are sums of counts on the
reference's bins (`WindowSketch.__add__`), so a pooled baseline has the reference's bins
and the same drift statistics apply to it (`monitors.window_drift`).

This module chooses windows and pools them; it reads nothing itself (`read_baselines`
takes the reader), so `inspect` and the evaluator choose alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from streamdrift.config import MonitorConfig
from streamdrift.sketch import WindowSketch

REFERENCE, ROLLING, SEASONAL = "reference", "rolling", "seasonal"


def rolling_starts(
    start: int, existing: Iterable[int], excluded: Collection[int], count: int
) -> list[int]:
    """The last `count` windows before `start` among `existing`, skipping `excluded`
    (oldest first). Excluded windows do not shorten the baseline: it reaches further
    back instead."""
    earlier = sorted(s for s in existing if s < start and s not in excluded)
    return earlier[-count:] if count > 0 else []


def seasonal_starts(
    start: int,
    existing: Iterable[int],
    excluded: Collection[int],
    season_seconds: int,
    seasons: int,
) -> list[int]:
    """`start - k * season_seconds` for k = 1 … `seasons` that exist and are not excluded
    (oldest first). A missing or excluded period is not replaced by an older one."""
    have = set(existing)
    wanted = (start - k * season_seconds for k in range(seasons, 0, -1))
    return [s for s in wanted if s in have and s not in excluded]


def baseline_starts(
    config: MonitorConfig, start: int, existing: Iterable[int], excluded: Collection[int] = ()
) -> dict[str, list[int]]:
    """The windows each chosen window-based baseline pools for the window at `start`
    (the reference needs none, so it is not named). An empty list: no history yet."""
    policy = config.drift
    existing = list(existing)
    out: dict[str, list[int]] = {}
    if ROLLING in policy.baselines:
        out[ROLLING] = rolling_starts(start, existing, excluded, policy.rolling_windows)
    if SEASONAL in policy.baselines:
        out[SEASONAL] = seasonal_starts(
            start, existing, excluded, policy.season_seconds, policy.seasons
        )
    return out


def pool(windows: Iterable[WindowSketch]) -> WindowSketch | None:
    """The sum of `windows` (None for none): counts, bins and moments added up."""
    total: WindowSketch | None = None
    for w in windows:
        total = w if total is None else total + w
    return total


def pooled_baselines(
    plan: Mapping[str, list[int]], windows: Mapping[int, WindowSketch]
) -> dict[str, WindowSketch]:
    """Each baseline of `plan` (see `baseline_starts`) pooled from the `windows` read; a
    baseline none of whose windows could be read (all expired) is left out."""
    out = {}
    for name, starts in plan.items():
        pooled = pool(windows[s] for s in starts if s in windows)
        if pooled is not None:
            out[name] = pooled
    return out


def read_baselines(
    read: Callable[[list[int]], list[WindowSketch]],
    config: MonitorConfig,
    starts: Iterable[int],
    existing: Iterable[int],
    excluded: Collection[int] = (),
    known: Iterable[WindowSketch] = (),
) -> dict[int, dict[str, WindowSketch]]:
    """The pooled baselines of each window in `starts`, reading every window they need
    with one call of `read` (windows in `known` are not read again)."""
    existing = list(existing)
    plans = {s: baseline_starts(config, s, existing, excluded) for s in starts}
    have = {w.start: w for w in known}
    wanted = sorted({s for plan in plans.values() for ss in plan.values() for s in ss} - set(have))
    if wanted:
        have.update((w.start, w) for w in read(wanted))
    return {s: pooled_baselines(plan, have) for s, plan in plans.items()}
