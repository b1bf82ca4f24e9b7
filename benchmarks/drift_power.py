"""Detection power of the drift verdict against effect size and window size, and its
false flags on stationary windows: the evidence for the default thresholds.

No servers. Each trial draws a reference of 20,000 rows, profiles it with
`reference.numeric_profile` (deciles: 10 inner bins and 2 outer) or as a
`CategoricalProfile`, draws one window, and computes the window's statistics with the
worker's own code (`monitors._numeric_statistics` / `_categorical_statistics`, which
bin and align exactly as the worker does and call `statistics.numeric_drift` /
`categorical_drift`). The verdict is `monitors.gates_met`: at least 200 values, the
effect at or above the threshold, and the chi-square p below 0.01 / 20 (Bonferroni over
a model of 20 features, as `window_drift` corrects). Two policies are judged on the
same windows: the default (`DriftPolicy().judge`, Cohen's w less its noise, >= 0.3) and
the previous default, PSI >= 0.2.

Shifts (effect sizes are the population values on the reference's bins):

* numeric, N(0, 1) reference: mean + d sd (d = 0.1 .. 1), variance x 1.5, x 2, x 0.5;
* categorical, k = 3, 5, 20 levels, reference p0 = (.5 .3 .2), (.30 .25 .20 .15 .10)
  and Zipf (p ~ 1/rank); windows drawn from (1 - t) p0 + t p0[::-1] with t set to reach
  w = 0.1 .. 0.5, and the issue's shift of the 5 levels to .20 each.

    .venv/bin/python benchmarks/drift_power.py                 # the tables, about a minute
    .venv/bin/python benchmarks/drift_power.py --trials 500 --stationary 20000 --seed 7
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from streamdrift.config import LEGACY_STATISTIC, LEGACY_THRESHOLD, DriftPolicy
from streamdrift.monitors import _categorical_statistics, _numeric_statistics, gates_met
from streamdrift.profile import CategoricalProfile, NumericProfile, bin_index
from streamdrift.reference import numeric_profile
from streamdrift.sketch import CategoricalSketch, NumericSketch
from streamdrift.statistics import cohen_w, psi

REFERENCE_ROWS = 20_000
WINDOWS = (500, 2_000, 10_000)
FEATURES = 20  # the Bonferroni family of a typical model
POLICY = DriftPolicy()
ALPHA = POLICY.p_value / FEATURES
BIG = 1e12  # counts standing for a population: sampling noise nil

Rng = np.random.Generator


@dataclass(frozen=True)
class Shift:
    """One row of the power table: a kind of column and how a window departs from it."""

    kind: str  # "numeric" or "categorical"
    label: str
    sample: Callable[[Rng, int], np.ndarray]  # numeric: values; categorical: counts
    p0: np.ndarray | None = None  # categorical: reference proportions
    w: float = math.nan  # population effect sizes, for the table
    psi: float = math.nan
    tvd: float = math.nan


# --------------------------------------------------------------------------- columns


def numeric_window(ref: NumericProfile, values: np.ndarray) -> dict[str, float]:
    """The worker's statistics for a window of `values` against the reference."""
    edges = ref.edge_array()
    sk = NumericSketch(
        bins=np.bincount(bin_index(edges, values), minlength=edges.size + 1),
        n=int(values.size),
        total=float(values.sum()),
        total_sq=float((values * values).sum()),
        minimum=float(values.min()),
        maximum=float(values.max()),
    )
    return _numeric_statistics(ref, ref, sk)


def categorical_reference(rng: Rng, p0: np.ndarray) -> CategoricalProfile:
    counts = rng.multinomial(REFERENCE_ROWS, p0)
    categories = {f"c{i:02d}": int(c) for i, c in enumerate(counts) if c > 0}
    return CategoricalProfile(
        categories=categories,
        other=0,
        count=REFERENCE_ROWS,
        missing=0,
        cardinality=len(categories),
    )


def categorical_window(ref: CategoricalProfile, counts: np.ndarray) -> dict[str, float]:
    sk = CategoricalSketch(Counter({f"c{i:02d}": int(c) for i, c in enumerate(counts) if c}))
    return _categorical_statistics(ref, ref, sk)


def verdicts(stats: dict[str, float], kind: str, n: int) -> tuple[bool, bool, bool]:
    """(default policy, previous default PSI 0.2, significance gate alone)."""
    statistic, threshold = POLICY.judge(kind)
    p = stats["chi_square_p_value"]
    new = gates_met(stats[statistic], threshold, p, ALPHA, n, POLICY.min_samples)
    old = gates_met(stats[LEGACY_STATISTIC], LEGACY_THRESHOLD, p, ALPHA, n, POLICY.min_samples)
    return new, old, bool(p < ALPHA)


# --------------------------------------------------------------------------- shifts


def _normal_bins(mean: float, sd: float) -> np.ndarray:
    """Population proportions of N(mean, sd) on the deciles of N(0, 1) plus outer bins
    (the reference's minimum and maximum of 20,000 rows sit near +-3.9 sd)."""
    inner = norm.ppf(np.linspace(0.1, 0.9, 9))
    edges = np.concatenate(([-3.9], inner, [3.9]))
    cdf = norm.cdf(edges, mean, sd)
    return np.diff(np.concatenate(([0.0], cdf, [1.0])))


def _effects(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    return {
        "w": cohen_w(p * BIG, q * BIG),
        "psi": psi(p, q),
        "tvd": 0.5 * float(np.abs(q - p).sum()),
    }


def numeric_shifts() -> list[Shift]:
    base = _normal_bins(0.0, 1.0)
    out = []
    for d in (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        out.append(
            Shift(
                "numeric",
                f"mean +{d:g} sd" if d else "none",
                lambda rng, n, d=d: rng.normal(d, 1.0, n),
                **_effects(base, _normal_bins(d, 1.0)),
            )
        )
    for factor in (1.5, 2.0, 0.5):
        sd = math.sqrt(factor)
        out.append(
            Shift(
                "numeric",
                f"variance x{factor:g}",
                lambda rng, n, sd=sd: rng.normal(0.0, sd, n),
                **_effects(base, _normal_bins(0.0, sd)),
            )
        )
    return out


def reference_levels(k: int) -> np.ndarray:
    if k == 3:
        return np.array([0.5, 0.3, 0.2])
    if k == 5:
        return np.array([0.30, 0.25, 0.20, 0.15, 0.10])
    z = 1.0 / np.arange(1, k + 1)
    return z / z.sum()


def _toward(p0: np.ndarray, target: np.ndarray, w: float) -> np.ndarray:
    """(1 - t) p0 + t target, t found by bisection so that the population w is `w`."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        t = 0.5 * (lo + hi)
        if cohen_w(p0 * BIG, ((1 - t) * p0 + t * target) * BIG) < w:
            lo = t
        else:
            hi = t
    return (1 - hi) * p0 + hi * target


def _categorical(k: int, label: str, p0: np.ndarray, q: np.ndarray) -> Shift:
    return Shift(
        "categorical",
        f"{k} levels: {label}",
        lambda rng, n, q=q: rng.multinomial(n, q),
        p0=p0,
        **_effects(p0, q),
    )


def categorical_shifts() -> list[Shift]:
    out = []
    for k in (3, 5, 20):
        p0 = reference_levels(k)
        out.append(_categorical(k, "none", p0, p0))
        for w in (0.1, 0.2, 0.3, 0.4, 0.5):
            out.append(_categorical(k, f"w {w:g}", p0, _toward(p0, p0[::-1], w)))
        if k == 5:
            out.append(_categorical(k, "the issue's, to .20 each", p0, np.full(5, 0.2)))
    return out


# --------------------------------------------------------------------------- runs


def flag_rates(rng: Rng, shift: Shift, n: int, trials: int, per_reference: int) -> np.ndarray:
    """Share of `trials` windows of `n` events flagged: (default, PSI 0.2, p alone)."""
    hits = np.zeros(3)
    ref: NumericProfile | CategoricalProfile | None = None
    for i in range(trials):
        if i % per_reference == 0:  # the reference is a sample too
            if shift.kind == "numeric":
                ref = numeric_profile(rng.normal(0.0, 1.0, REFERENCE_ROWS), 0, 10)
            else:
                assert shift.p0 is not None
                ref = categorical_reference(rng, shift.p0)
        x = shift.sample(rng, n)
        if isinstance(ref, NumericProfile):
            stats = numeric_window(ref, x)
        else:
            assert isinstance(ref, CategoricalProfile)
            stats = categorical_window(ref, x)
        hits += verdicts(stats, shift.kind, n)
    return hits / trials


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def power_table(rng: Rng, shifts: list[Shift], trials: int) -> list[str]:
    sizes = " | ".join(f"{n:,}" for n in WINDOWS)
    lines = [
        f"| shift | w | PSI | TVD | default: {sizes} | PSI 0.2: {sizes} |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(WINDOWS)),
    ]
    for s in shifts:
        if s.label.endswith("none"):
            continue
        rates = [flag_rates(rng, s, n, trials, per_reference=10) for n in WINDOWS]
        new = " | ".join(_pct(r[0]) for r in rates)
        old = " | ".join(_pct(r[1]) for r in rates)
        lines.append(f"| {s.label} | {s.w:.2f} | {s.psi:.3f} | {s.tvd:.3f} | {new} | {old} |")
    return lines


def stationary_table(rng: Rng, shifts: list[Shift], windows: int) -> list[str]:
    lines = [
        "| stationary column | events | default | PSI 0.2 | the p gate alone |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in shifts:
        if not s.label.endswith("none"):
            continue
        name = "numeric N(0, 1)" if s.kind == "numeric" else s.label.replace(": none", "")
        for n in WINDOWS:
            r = flag_rates(rng, s, n, windows, per_reference=50) * 10_000
            lines.append(f"| {name} | {n:,} | {r[0]:.1f} | {r[1]:.1f} | {r[2]:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200, help="windows per power cell")
    ap.add_argument(
        "--stationary", type=int, default=10_000, help="stationary windows per kind and size"
    )
    ap.add_argument("--seed", type=int, default=20261130)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    shifts = numeric_shifts() + categorical_shifts()
    statistic, threshold = POLICY.judge("categorical")
    print(
        f"Detection power (share of windows flagged, {args.trials} per cell; reference "
        f"{REFERENCE_ROWS:,} rows; p < {POLICY.p_value:g}/{FEATURES}, n >= "
        f"{POLICY.min_samples}). default = {statistic} >= {threshold:g}; "
        f"w, PSI, TVD are the shift's population values.\n"
    )
    print("\n".join(power_table(rng, shifts, args.trials)))
    print(
        f"\nFalse flags per 10,000 stationary feature-windows ({args.stationary:,} windows "
        "per row, a new reference every 50).\n"
    )
    print("\n".join(stationary_table(rng, shifts, args.stationary)))
    print(f"\n({time.perf_counter() - started:.0f} s, seed {args.seed})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
