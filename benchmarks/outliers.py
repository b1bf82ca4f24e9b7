"""The outlier threshold's calibration: the flagged share of reference-like traffic
against the configured rate, the half-split calibration against the current one.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/outliers.py [--seeds S] [--events N]
      [--rows 2000 10000 50000] [--rates 0.001 0.01] [--json]

For each feature set (one Gaussian, one lognormal or one Student-t feature; 5, 20 and 50
features of `synthetic.feature_mix`), reference size and seed: draw a reference, fit the
outlier model both ways, then score N fresh events from the same distribution and count
those beyond each threshold. "half split" is the former calibration (fit on one half of
the rows, the empirical (1 − rate) quantile of the other half's scores); "cross + GPD" is
`outliers.fit`. Fit times are the median over the seeds, at the first rate. Needs no
servers. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from streamdrift import outliers, synthetic

FEATURE_SETS = [
    ("1 Gaussian", 1, ("gaussian",)),
    ("1 lognormal", 1, ("lognormal",)),
    ("1 Student-t", 1, ("student-t",)),
    ("5 mixed", 5, synthetic.MIX_KINDS),
    ("20 mixed", 20, synthetic.MIX_KINDS),
    ("50 mixed", 50, synthetic.MIX_KINDS),
]
CHUNK = 100_000  # events scored at a time (50 features: 40 MB)
TOLERANCE = 0.3  # the acceptance band: within ±30 % of the rate


@dataclass
class Case:
    features: str
    rows: int
    rate: float
    half_split: list[float] = field(default_factory=list)
    cross_gpd: list[float] = field(default_factory=list)
    fit_seconds_half_split: list[float] = field(default_factory=list)
    fit_seconds_cross_gpd: list[float] = field(default_factory=list)


def half_split_fit(x: np.ndarray, rate: float, seed: int = 0):
    """The former calibration: the model fit on one half of the rows, the threshold the
    empirical (1 − rate) quantile of the other half's scores."""
    order = np.random.default_rng(seed).permutation(x.shape[0])
    fit_rows, calibration_rows = x[order[::2]], x[order[1::2]]
    arrays = outliers.estimate(fit_rows)
    threshold = float(np.quantile(outliers.score(calibration_rows, *arrays), 1 - rate))
    return arrays, threshold


def flagged_shares(models, d, kinds, events, seed) -> list[float]:
    """The share of `events` fresh reference-like events beyond each (arrays, threshold)."""
    rng = np.random.default_rng(1_000_000 + seed)
    flagged = [0] * len(models)
    for lo in range(0, events, CHUNK):
        x = synthetic.feature_mix(rng, min(CHUNK, events - lo), d, kinds)
        for i, (arrays, threshold) in enumerate(models):
            flagged[i] += int((outliers.score(x, *arrays) > threshold).sum())
    return [f / events for f in flagged]


def run(rows_list, rates, seeds, events) -> list[Case]:
    cases: dict[tuple[str, int, float], Case] = {}
    for name, d, kinds in FEATURE_SETS:
        for rows in rows_list:
            for seed in range(seeds):
                x = synthetic.feature_mix(np.random.default_rng(seed), rows, d, kinds)
                names = [f"x{j}" for j in range(d)]
                models = []
                for rate in rates:
                    case = cases.setdefault((name, rows, rate), Case(name, rows, rate))
                    t0 = time.perf_counter()
                    models.append(half_split_fit(x, rate))
                    t1 = time.perf_counter()
                    model = outliers.fit(x, names, rate)
                    t2 = time.perf_counter()
                    assert model is not None
                    models.append((model.arrays(), model.threshold))
                    case.fit_seconds_half_split.append(t1 - t0)
                    case.fit_seconds_cross_gpd.append(t2 - t1)
                shares = flagged_shares(models, d, kinds, events, seed)
                for i, rate in enumerate(rates):
                    case = cases[(name, rows, rate)]
                    case.half_split.append(shares[2 * i])
                    case.cross_gpd.append(shares[2 * i + 1])
            done = cases[(name, rows, rates[0])]
            print(
                f"{name:12s} {rows:>6,} rows: cross + GPD mean "
                f"{100 * statistics.mean(done.cross_gpd):.3f} % at {100 * rates[0]:g} %",
                file=sys.stderr,
                flush=True,
            )
    return list(cases.values())


def _shares(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.3f} ({100 * min(values):.3f}–{100 * max(values):.3f})"


def _within(values: list[float], rate: float) -> str:
    return f"{sum(abs(v / rate - 1) <= TOLERANCE for v in values)}/{len(values)}"


def table(cases: list[Case]) -> str:
    head = (
        "| features | reference rows | rate | half split: mean (range) % | within ±30 % "
        "| cross + GPD: mean (range) % | within ±30 % | fit s: half split / cross + GPD |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for c in sorted(cases, key=lambda c: c.rate):
        lines.append(
            f"| {c.features} | {c.rows:,} | {100 * c.rate:g} % | {_shares(c.half_split)} "
            f"| {_within(c.half_split, c.rate)} | {_shares(c.cross_gpd)} "
            f"| {_within(c.cross_gpd, c.rate)} "
            f"| {statistics.median(c.fit_seconds_half_split):.3f} / "
            f"{statistics.median(c.fit_seconds_cross_gpd):.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="references per case")
    ap.add_argument("--events", type=int, default=1_000_000, help="fresh events per reference")
    ap.add_argument("--rows", type=int, nargs="+", default=[2000, 10_000, 50_000])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.01])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    cases = run(args.rows, args.rates, args.seeds, args.events)
    out = table(cases)
    header = (
        f"{args.seeds} references per case, {args.events:,} fresh events each; "
        f"Python {platform.python_version()}, numpy {np.__version__}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    if args.json:
        print(json.dumps({"header": header, "cases": [asdict(c) for c in cases]}))
        print(header, out, sep="\n", file=sys.stderr)
    else:
        print(header, out, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
