"""A stream with known episodes, for judging the alerts a monitor sends.

Days of hourly windows of a scored binary model whose traffic has a daily rhythm (one
input's mean follows the hour of the day), with real episodes placed at known hours:
an input drift in two features, a performance drop (the scores stop ranking the
outcomes, while the inputs, the score distribution and the label rate stay the same:
concept drift), and a traffic collapse. Everything else is reference-like, outliers
included. `Scenario.truth` lists the episodes that really happened, so a test or a
benchmark can count the alerts per real episode and the false ones.

Labels arrive up to an hour after their predictions, interleaved with later
predictions, as they would in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv

HOUR = 3600
NUMERIC = ["daily", "f1", "f2", "f3", "f4", "spread"]
CHANNELS = ["web", "app", "partner"]
CHANNEL_P = np.array([0.6, 0.3, 0.1])
#: the daily rhythm: `daily` has mean AMPLITUDE * sin(2 pi hour / 24), in sds
AMPLITUDE = 1.5


@dataclass(frozen=True, slots=True)
class Episode:
    """A real episode: which condition, from which window to which (inclusive)."""

    type: str
    feature: str
    first: int
    last: int


@dataclass(slots=True)
class Scenario:
    start: int
    windows: int
    #: (arrival time, topic kind "predictions" | "labels", key, value), arrival order
    messages: list[tuple[float, str, bytes, bytes]] = field(default_factory=list)
    truth: list[Episode] = field(default_factory=list)
    predictions: int = 0


def _rows(rng: np.random.Generator, hours: np.ndarray) -> dict[str, np.ndarray]:
    n = len(hours)
    x = {
        "daily": rng.normal(AMPLITUDE * np.sin(2 * np.pi * hours / 24), 1.0),
        "f1": rng.normal(0, 1, n),
        "f2": rng.normal(0, 1, n),
        "f3": rng.normal(0, 1, n),
        "f4": rng.normal(0, 1, n),
        "spread": rng.normal(10, 3, n),
    }
    channel = rng.choice(len(CHANNELS), size=n, p=CHANNEL_P)
    z = 1.4 * x["f1"] - 1.0 * x["f2"] + 0.5 * (channel == 2)
    score = 1 / (1 + np.exp(-z))
    label = (rng.random(n) < score).astype(int)
    return {**x, "channel": channel, "score": score, "label": label}


def write_reference(path: Path, rows: int = 10_000, seed: int = 0) -> Path:
    """Reference rows over whole days (every hour equally): the rhythm is in it."""
    rng = np.random.default_rng(seed)
    r = _rows(rng, rng.uniform(0, 24, rows))
    table = pa.table(
        {
            **{f: r[f].round(4) for f in NUMERIC},
            "channel": [CHANNELS[c] for c in r["channel"]],
            "score": r["score"].round(5),
            "is_fraud": r["label"],
        }
    )
    pcsv.write_csv(table, path)
    return path


def build(
    model_id: str,
    start: int,
    days: int = 3,
    per_window: int = 400,
    seed: int = 1,
    drift: tuple[int, int] | None = (58, 61),
    performance_drop: tuple[int, int] | None = (38, 40),
    collapse: tuple[int, int] | None = (28, 29),
    collapsed_events: int = 20,
) -> Scenario:
    """`days` x 24 hourly windows from `start` (aligned to the hour). Episodes are given
    as (first, last) window indices; None leaves one out. In `drift`, `spread` narrows to
    a third of its spread (a sensor stuck near its mean) and `channel` swaps its
    frequencies: strong, so each window of the episode is as severe as the first."""
    rng = np.random.default_rng(seed)
    sc = Scenario(start=start, windows=days * 24)
    for w in range(sc.windows):
        inside = [
            (name, span)
            for name, span in (("drift", drift), ("drop", performance_drop), ("collapse", collapse))
            if span is not None and span[0] <= w <= span[1]
        ]
        kinds = {name for name, _ in inside}
        n = collapsed_events if "collapse" in kinds else int(rng.poisson(per_window))
        offsets = np.sort(rng.uniform(0, HOUR, n))
        ts = start + w * HOUR + offsets
        r = _rows(rng, (ts % 86400) / HOUR)
        if "drift" in kinds:
            r["spread"] = 10 + (r["spread"] - 10) / 3
            r["channel"] = rng.choice(len(CHANNELS), size=n, p=CHANNEL_P[::-1])
        if "drop" in kinds:
            r["score"] = rng.permutation(r["score"])  # same scores, no longer ranking
        delays = rng.uniform(60, HOUR, n)
        for i in range(n):
            pid = f"{model_id}-{w}-{i}"
            event = {
                "prediction_id": pid,
                "model_id": model_id,
                "model_version": "1.0",
                "timestamp": round(float(ts[i]), 3),
                "features": {
                    **{f: round(float(r[f][i]), 4) for f in NUMERIC},
                    "channel": CHANNELS[int(r["channel"][i])],
                },
                "prediction": {"score": round(float(r["score"][i]), 5)},
            }
            label = {
                "prediction_id": pid,
                "model_id": model_id,
                "label": int(r["label"][i]),
                "timestamp": round(float(ts[i] + delays[i]), 3),
            }
            sc.messages.append((float(ts[i]), "predictions", pid.encode(), orjson.dumps(event)))
            sc.messages.append(
                (float(ts[i] + delays[i]), "labels", pid.encode(), orjson.dumps(label))
            )
        sc.predictions += n
    sc.messages.sort(key=lambda m: m[0])
    if drift is not None:
        sc.truth += [
            Episode("data_drift", "spread", *drift),
            Episode("data_drift", "channel", *drift),
        ]
    if performance_drop is not None:
        sc.truth.append(Episode("performance_degradation", "roc_auc", *performance_drop))
    if collapse is not None:
        sc.truth.append(Episode("volume", "events", *collapse))
    return sc
