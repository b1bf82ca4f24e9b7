"""Outlier calibration over a grid: the share of fresh reference-like traffic the
registered threshold flags, divided by the configured rate (target 0.7–1.3).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/outlier_calibration.py
      [--repeats R] [--small-repeats R] [--events N] [--features 1 5 20 50]
      [--rows 2000 10000 50000] [--dists gaussian heavy discrete mixed]
      [--rates 0.001 0.01] [--json]

For each distribution, number of features, reference size and repeat it draws a
reference and N fresh events from the same distribution, fits the outlier model as
`streamdrift register` does and counts the events the worker would flag
(`OutlierModel.flagged`, the call `sketch` makes per batch). The "mixed" references go
through `reference.build_profile` itself (a Parquet file with two categorical columns
besides the numeric ones, the rate from `MonitorConfig.outlier_rate`); the others call
`outliers.fit`, the function build_profile calls on the numeric columns. Needs no
servers. See benchmarks/README.md.

Distributions (correlated through two latent factors, as `synthetic.feature_mix`):

- gaussian: every feature Gaussian;
- heavy: Student-t with 2 degrees of freedom (infinite variance) and lognormal (σ = 1)
  in turn;
- discrete: integer features of a few levels — a Poisson count of mean about 2, a 1–5
  rating and a binomial(3) count in turn;
- mixed: `synthetic.feature_mix` (Gaussian, lognormal, Student-t(5), Poisson count) and
  two categorical columns.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamdrift import outliers
from streamdrift.config import MonitorConfig
from streamdrift.reference import build_profile
from streamdrift.synthetic import CALIBRATION_DISTS as DISTS
from streamdrift.synthetic import calibration_mix as draw

LOW, HIGH = 0.7, 1.3  # the target band of flagged share / configured rate
CHUNK = 100_000


def fit_model(
    x: np.ndarray, dist: str, rate: float, rng: np.random.Generator, workdir: Path
) -> outliers.OutlierModel:
    names = [f"x{j}" for j in range(x.shape[1])]
    if dist != "mixed":
        model = outliers.fit(x, names, rate)
    else:
        n = x.shape[0]
        columns: dict[str, object] = {name: x[:, j] for j, name in enumerate(names)}
        columns["country"] = rng.choice(["de", "fr", "us", "jp"], n, p=[0.4, 0.3, 0.2, 0.1])
        columns["device"] = rng.choice(["ios", "android", "web"], n)
        path = workdir / "reference.parquet"
        pq.write_table(pa.table(columns), path)
        profile = build_profile(
            "bench",
            path,
            features=[*names, "country", "device"],
            config=MonitorConfig(outlier_rate=rate),
        )
        model = profile.outliers
    assert model is not None
    return model


@dataclass
class Cell:
    dist: str
    features: int
    rows: int
    rate: float
    ratios: list[float] = field(default_factory=list)
    #: the rate each model states it flags (`expected_rate`: ties), over the configured
    stated: list[float] = field(default_factory=list)
    #: references registered with a warning about the outlier calibration
    warned: int = 0
    fit_seconds: list[float] = field(default_factory=list)


def run(dists, features, rows_list, rates, repeats, small_repeats, events, workdir) -> list[Cell]:
    cells: dict[tuple, Cell] = {}
    for dist in dists:
        for d in features:
            for rows in rows_list:
                # A reference holding few rows beyond the threshold calibrates it only on
                # average (one is off by a factor of 2 or 3): more of them, each with
                # fewer events (the reference, not the events, makes the scatter).
                small = rows * min(rates) < outliers._WARN_TAIL_ROWS
                count = small_repeats if small else repeats
                cell_events = events // 2 if small else events
                for rep in range(count):
                    seed = 1_000_003 * DISTS.index(dist) + 10_007 * d + rows + rep
                    rng = np.random.default_rng(seed)
                    x = draw(rng, rows, d, dist)
                    models = []
                    for rate in rates:
                        t0 = time.perf_counter()
                        models.append(fit_model(x, dist, rate, rng, workdir))
                        cell = cells.setdefault((dist, d, rows, rate), Cell(dist, d, rows, rate))
                        cell.fit_seconds.append(time.perf_counter() - t0)
                        cell.stated.append(models[-1].expected_rate / rate)
                        cell.warned += models[-1].warning is not None
                    flagged = [0] * len(models)
                    stream = np.random.default_rng(seed + 7_777_777)
                    for lo in range(0, cell_events, CHUNK):
                        y = draw(stream, min(CHUNK, cell_events - lo), d, dist)
                        for i, model in enumerate(models):
                            flagged[i] += int(model.flagged(y).sum())
                    for i, rate in enumerate(rates):
                        share = flagged[i] / cell_events
                        cells[(dist, d, rows, rate)].ratios.append(share / rate)
                done = cells[(dist, d, rows, rates[0])]
                print(
                    f"{dist:9s} {d:>2} features {rows:>6,} rows: "
                    f"{statistics.mean(done.ratios):.2f} × {100 * rates[0]:g} %",
                    file=sys.stderr,
                    flush=True,
                )
    return list(cells.values())


def table(cells: list[Cell]) -> str:
    lines = [
        "| distribution | features | reference rows | rate | flagged / rate: mean | min | max "
        "| mean in 0.7–1.3 | stated / rate | warned |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    for c in sorted(cells, key=lambda c: (c.rate, DISTS.index(c.dist), c.features, c.rows)):
        mean = statistics.mean(c.ratios)
        ok = "yes" if LOW <= mean <= HIGH else "**no**"
        lines.append(
            f"| {c.dist} | {c.features} | {c.rows:,} | {100 * c.rate:g} % | {mean:.2f} "
            f"| {min(c.ratios):.2f} | {max(c.ratios):.2f} | {ok} "
            f"| {statistics.mean(c.stated):.2f} | {c.warned}/{len(c.ratios)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4, help="references per cell")
    ap.add_argument(
        "--small-repeats",
        type=int,
        default=12,
        help="references per cell where rows × the least rate < 50 (half the events each)",
    )
    ap.add_argument("--events", type=int, default=200_000, help="fresh events per reference")
    ap.add_argument("--features", type=int, nargs="+", default=[1, 5, 20, 50])
    ap.add_argument("--rows", type=int, nargs="+", default=[2000, 10_000, 50_000])
    ap.add_argument("--dists", nargs="+", default=list(DISTS), choices=DISTS)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.01])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cells = run(
            args.dists,
            args.features,
            args.rows,
            args.rates,
            args.repeats,
            args.small_repeats,
            args.events,
            Path(tmp),
        )
    out = table(cells)
    inside = sum(LOW <= statistics.mean(c.ratios) <= HIGH for c in cells)
    header = (
        f"{args.repeats} references per cell, {args.events:,} fresh events each "
        f"({args.small_repeats} and {args.events // 2:,} where rows × rate < 50); "
        f"{inside}/{len(cells)} cells with the mean in 0.7–1.3; "
        f"Python {platform.python_version()}, numpy {np.__version__}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    if args.json:
        print(json.dumps({"header": header, "cells": [asdict(c) for c in cells]}))
        print(header, out, sep="\n", file=sys.stderr)
    else:
        print(header, out, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
