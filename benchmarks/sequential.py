"""The sequential degradation scan (`streamdrift.sequential.degradation_scan`) and the
CUSUM of window means (`mean_cusum`), simulated without servers: false alarms per
sub-window evaluation on stationary streams, and the delay after a change against river's
ADWIN reading the same labels, in the order they arrive and (the ideal) in event order.

Each stream has `W` predictions per window (2,000) at evenly spaced event times; a
prediction's label arrives 1/60 to 1 window of event time later (uniform), as in
`benchmarks/detection.py`. The scan is evaluated at the end of every sub-window (a tenth
of a window) over the sub-windows of the last 48 windows, with the labels arrived by
then, exactly as the evaluator rebuilds it from Redis: the accuracy and log-loss scans of
the default policy (threshold + ln 2 for the two, Bonferroni), drops of at least 5 %.

Streams: a calibrated scorer, score ~ Beta(a, b), label ~ Bernoulli(score). A change
makes the labels ~ Bernoulli(score + shift clipped) or flips a share of them, so the
frozen model's error rate rises (an abrupt change in concept).

    .venv/bin/python benchmarks/sequential.py             # about a minute
    .venv/bin/python benchmarks/sequential.py --streams 200 --windows 60
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from river import drift

from streamdrift.config import CumulativePolicy, PerformancePolicy, SequentialPolicy
from streamdrift.sequential import SubWindow, degradation_scan, mean_cusum, z_for

W = 2000
HISTORY_WINDOWS = 48
LABEL_DELAY = (1 / 60, 1.0)  # in windows


@dataclass
class Stream:
    scores: np.ndarray
    labels: np.ndarray
    change: int | None


def stream(rng: np.random.Generator, windows: int, change: int | None, kind: str) -> Stream:
    n = windows * W
    scores = np.clip(rng.beta(1.2, 4.0, n), 0.005, 0.995)
    p = scores.copy()
    if change is not None:
        if kind == "flip":  # a tenth of the world turns around: error +~0.08
            flip = rng.random(n - change) < 0.12
            p[change:] = np.where(flip, 1 - p[change:], p[change:])
        elif kind == "abrupt":  # the concept changes a lot
            flip = rng.random(n - change) < 0.5
            p[change:] = np.where(flip, 1 - p[change:], p[change:])
    labels = (rng.random(n) < p).astype(np.int64)
    return Stream(scores, labels, change)


def per_pair(s: Stream) -> tuple[np.ndarray, np.ndarray]:
    err = ((s.scores >= 0.5).astype(np.int64) != s.labels).astype(np.float64)
    pc = np.clip(s.scores, 1e-15, 1 - 1e-15)
    loss = -np.where(s.labels == 1, np.log(pc), np.log(1 - pc))
    return err, loss


def scan_stream(
    s: Stream, rng: np.random.Generator, parts: int, policy: SequentialPolicy, stop_at_alarm: bool
) -> tuple[list[int], int, np.ndarray]:
    """Evaluations (at the end of each sub-window) that alarmed, as the event index reached
    then; the evaluations run; and the label arrival times (in events)."""
    n = len(s.labels)
    err, loss = per_pair(s)
    arrive = np.arange(n) + 0.5 + rng.uniform(*LABEL_DELAY, n) * W
    order = np.argsort(arrive)
    sub = (np.arange(n) * parts) // W  # the prediction's sub-window
    n_sub = n * parts // W
    acc = {m: np.zeros((n_sub, 3)) for m in ("accuracy", "log_loss")}
    minimum = PerformancePolicy().min_degradation
    threshold = policy.threshold + math.log(2)
    k = 0
    alarms: list[int] = []
    evaluations = 0
    step = W // parts
    for t in range(step, n + 1, step):
        while k < n and arrive[order[k]] <= t:
            i = order[k]
            j = sub[i]
            acc["accuracy"][j] += (1.0, err[i], err[i])
            acc["log_loss"][j] += (1.0, loss[i], loss[i] * loss[i])
            k += 1
        last = t // step  # sub-windows begun by now
        first = max(0, last - HISTORY_WINDOWS * parts)
        series = [
            SubWindow(float(j), {m: tuple(acc[m][j]) for m in acc if acc[m][j][0]})
            for j in range(first, last)
        ]
        evaluations += 1
        current = (last - 1) // parts  # the window being evaluated
        hit = False
        for metric, relative in (("accuracy", False), ("log_loss", True)):
            r = degradation_scan(
                metric,
                series,
                threshold=threshold,
                minimum=minimum,
                relative=relative,
                min_after=policy.min_labels,
                min_before=PerformancePolicy().min_labels,
                earliest=float((current - policy.span_windows + 1) * parts),
            )
            hit = hit or (r is not None and r.alarm)
        if hit:
            alarms.append(t)
            if stop_at_alarm:
                break
    return alarms, evaluations, arrive


def adwin_delays(s: Stream, arrive: np.ndarray) -> tuple[int | None, int | None]:
    """ADWIN on the 0/1 error stream: (delay in event order, delay reading the labels as
    they arrive, counted in predictions made by the detection)."""
    err, _ = per_pair(s)
    assert s.change is not None
    event = label = None
    det = drift.ADWIN()
    for i, e in enumerate(err.tolist()):
        det.update(e)
        if det.drift_detected and i >= s.change:
            event = i - s.change + 1
            break
    det = drift.ADWIN()
    for i in np.argsort(arrive).tolist():
        det.update(float(err[i]))
        if det.drift_detected and arrive[i] >= s.change:
            label = math.ceil(arrive[i]) - s.change
            break
    return event, label


def cusum_section(rng: np.random.Generator, windows: int) -> str:
    """The mean CUSUM (`CumulativePolicy` defaults, one column: p < 0.01) on 200
    stationary streams, and on a mean creeping 0.05 sd a window (within windows too)."""
    policy = CumulativePolicy()

    def alarmed(rows: list[tuple[int, int, float, float]]) -> bool:
        r = mean_cusum(
            rows,
            0.0,
            1.0,
            allowance=policy.mean_allowance,
            threshold=policy.mean_threshold,
            z_needed=z_for(0.01),
            min_count=200,
        )
        return bool(r and r.alarm)

    def sums(x: np.ndarray) -> list[tuple[int, int, float, float]]:
        return [(i, W, float(x[i].sum()), float((x[i] ** 2).sum())) for i in range(len(x))]

    false = checks = 0
    for _ in range(200):
        rows = sums(rng.standard_normal((windows, W)))
        for end in range(1, windows + 1):
            checks += 1
            false += alarmed(rows[:end])
    creep = (
        rng.standard_normal((20, W))
        + np.repeat(0.05 * np.arange(20)[:, None], W, 1)
        + np.linspace(0, 0.05, W)[None, :]
    )
    rows = sums(creep)
    caught = next((end for end in range(1, 21) if alarmed(rows[:end])), None)
    at = f"+{0.05 * caught:.2f} sd" if caught else "never"
    return (
        f"mean CUSUM: {false} alarms in {checks} stationary window checks; a mean creeping "
        f"+0.05 sd a window caught after window {caught} (the mean then {at})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=40, help="stationary streams")
    ap.add_argument("--windows", type=int, default=60, help="windows per stationary stream")
    ap.add_argument("--changes", type=int, default=10, help="streams per change kind")
    ap.add_argument("--threshold", type=float, default=None, help="override the default")
    ap.add_argument("--seed", type=int, default=20261130)
    a = ap.parse_args(argv)
    policy = SequentialPolicy()
    if a.threshold is not None:
        policy = policy.model_copy(update={"threshold": a.threshold})
    parts = policy.sub_windows
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    print(
        f"threshold {policy.threshold} nats (+ ln 2 for two metrics), {parts} sub-windows "
        f"a window, {W} predictions a window"
    )
    alarms = evaluations = 0
    streams_alarmed = 0
    for _ in range(a.streams):
        s = stream(rng, a.windows, None, "")
        hits, evals, _ = scan_stream(s, rng, parts, policy, stop_at_alarm=False)
        # the first 2 windows have too little history to scan: not counted either way
        alarms += len(hits)
        evaluations += evals
        streams_alarmed += bool(hits)
    rate = alarms / evaluations * 10_000 if evaluations else float("nan")
    print(
        f"stationary: {alarms} alarmed sub-window evaluations of {evaluations} "
        f"({rate:.2f} per 10,000; goal <= 1); {streams_alarmed} of {a.streams} streams "
        "alarmed at least once"
    )
    for kind in ("abrupt", "flip"):
        delays, ad_event, ad_label = [], [], []
        for _ in range(a.changes):
            change = 20 * W + int(rng.uniform(0, W))
            s = stream(rng, 24, change, kind)
            err, _ = per_pair(s)
            hits, _, arrive = scan_stream(s, rng, parts, policy, stop_at_alarm=False)
            after = [h for h in hits if h >= change]
            delays.append(after[0] - change if after else None)
            e, lab = adwin_delays(s, arrive)
            ad_event.append(e)
            ad_label.append(lab)
        before = float(err[: s.change].mean())
        after_rate = float(err[s.change :].mean())

        def show(xs: list[int | None]) -> str:
            got = [x for x in xs if x is not None]
            miss = len(xs) - len(got)
            med = f"{int(np.median(got))}" if got else "-"
            return f"median {med}" + (f", {miss} missed" if miss else "")

        print(
            f"{kind} (error {before:.3f} -> {after_rate:.3f}): scan {show(delays)}; ADWIN "
            f"reading labels as they arrive {show(ad_label)}; ADWIN in event order "
            f"{show(ad_event)} (events after the change)"
        )
    print(cusum_section(rng, a.windows))
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
