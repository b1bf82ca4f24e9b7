"""Alerts per real episode, and false episodes on stationary traffic.

Replays `streamdrift.scenario` streams window by window through the evaluator's own
logic (`conditions.window_conditions`, the baselines, `episodes.advance`), each window
once it is complete, without Kafka or Redis: what a worker would publish for the
prediction-side conditions (input drift, data quality, outlier share, volume,
prediction drift). Performance episodes need the label join and are counted by the
integration test `tests/integration/test_alert_budget.py` instead.

    .venv/bin/python benchmarks/alert_budget.py            # the table
    .venv/bin/python benchmarks/alert_budget.py --days 30  # longer stationary streams
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from streamdrift import scenario
from streamdrift.baselines import read_baselines
from streamdrift.conditions import History, window_conditions
from streamdrift.config import MonitorConfig
from streamdrift.decode import ModelEvents
from streamdrift.episodes import advance, excluded_windows
from streamdrift.evaluator import DRIFT_KINDS, Evaluator
from streamdrift.profile import ReferenceProfile
from streamdrift.reference import build_profile
from streamdrift.sketch import WindowSketch, sketch_events
from streamdrift.store.episodes import EpisodeState

HOUR = scenario.HOUR


def _profile(workdir: Path, baselines: list[str]) -> ReferenceProfile:
    config = MonitorConfig.model_validate(
        {
            "window_seconds": HOUR,
            "drift": {
                "baselines": baselines,
                "season_seconds": 86400,
                "seasons": 2,
                "until_history": "wait" if "reference" not in baselines else "reference",
            },
        }
    )
    return build_profile(
        "budget",
        scenario.write_reference(workdir / "ref.csv"),
        prediction_column="score",
        label_column="is_fraud",
        config=config,
    )


def _windows(sc: scenario.Scenario, profile: ReferenceProfile) -> dict[int, WindowSketch]:
    events = ModelEvents()
    for _, kind, _key, value in sc.messages:
        if kind != "predictions":
            continue
        e = orjson.loads(value)
        events.partitions.append(0)
        events.offsets.append(len(events.offsets))
        events.timestamps.append(e["timestamp"])
        events.features.append(e["features"])
        events.versions.append(e["model_version"])
        events.predictions.append(e["prediction"])
        events.prediction_ids.append(e["prediction_id"])
        events.raws.append(b"")
        events.segments.append(None)
    return sketch_events(events, profile)


def replay(profile: ReferenceProfile, windows: dict[int, WindowSketch]) -> tuple[list, int]:
    """The alerts the episodes raise, and the findings a per-window monitor would send."""
    cfg = profile.config
    starts = sorted(windows)
    state = EpisodeState()
    raised, naive = [], 0

    def read(wanted: list[int]) -> list[WindowSketch]:
        return [windows[s] for s in wanted if s in windows]

    for i, start in enumerate(starts):
        window = windows[start]
        excluded = set().union(*(excluded_windows(state.episodes, k, HOUR) for k in DRIFT_KINDS))
        pooled = read_baselines(read, cfg, [start], starts[: i + 1], excluded, known=[window])
        vol_excluded = excluded_windows(state.episodes, "volume:", HOUR)
        rolling = [
            windows[s].count
            for s in reversed(starts[max(0, i - cfg.volume.history_windows) : i])
            if s not in vol_excluded
        ]
        history = History(recent=[windows[s] for s in starts[:i]], rolling_counts=rolling)
        found = window_conditions(
            profile,
            window,
            history,
            time.time(),
            closed=True,
            followed=True,
            baselines=pooled[start],
        )
        naive += len(found.present) + len(window.outlier_examples)
        raised += advance(
            state.episodes,
            Evaluator._observations(state, found, True),
            model=profile.model_id,
            revision=profile.revision,
            width=HOUR,
            resolve_after=cfg.episodes.resolve_after_windows,
            now=time.time(),
        )
    return raised, naive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10, help="days of each stationary stream")
    parser.add_argument("--seeds", type=int, default=3, help="stationary streams")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seasonal = _profile(Path(tmp), ["seasonal"])
        reference = _profile(Path(tmp), ["reference"])
        features = len(seasonal.features)

        print(
            "episodes: 3 days, 400 events an hour; a 4-hour drift in 2 features, a "
            "2-hour traffic collapse (the 3-hour performance drop needs labels)"
        )
        sc = scenario.build("budget", 0, performance_drop=None)
        real = [e for e in sc.truth if e.type != "performance_degradation"]
        for name, profile in (("seasonal", seasonal), ("reference", reference)):
            alerts, naive = replay(profile, _windows(sc, profile))
            kinds = Counter((a.type, a.status) for a in alerts)
            print(
                f"  baseline {name:<9}: {len(alerts)} alerts for {len(real)} real episodes "
                f"({len(alerts) / len(real):.1f} per episode); a per-window monitor: {naive}; "
                + ", ".join(f"{t} {s} x{n}" for (t, s), n in sorted(kinds.items()))
            )

        print(f"stationary: {args.seeds} streams x {args.days} days, daily rhythm, no episode")
        opened: Counter[str] = Counter()
        windows_total = 0
        for seed in range(args.seeds):
            sc = scenario.build(
                "budget",
                0,
                days=args.days,
                seed=100 + seed,
                drift=None,
                performance_drop=None,
                collapse=None,
            )
            windows = _windows(sc, seasonal)
            windows_total += len(windows)
            alerts, _ = replay(seasonal, windows)
            opened.update(a.type for a in alerts if a.status == "open")
        cells = windows_total * features
        false = sum(opened.values())
        print(
            f"  {windows_total} windows x {features} features = {cells:,} feature-windows: "
            f"{false} false episodes ({1000 * false / cells:.2f} per 1,000)"
            + (": " + ", ".join(f"{t} x{n}" for t, n in sorted(opened.items())) if false else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
