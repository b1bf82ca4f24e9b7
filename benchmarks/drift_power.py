"""Detection power of the drift verdict against effect size and window size, and its
false flags on stationary windows: the evidence for the default thresholds.

No servers. Each trial draws a reference of 20,000 rows, profiles it with
`reference.numeric_profile` (deciles: 10 inner bins and 2 outer) or as a
`CategoricalProfile`, draws one window, and computes the window's statistics with the
worker's own code (`monitors._numeric_statistics` / `_categorical_statistics`, which
bin and align exactly as the worker does and call `statistics.numeric_drift` /
`categorical_drift`). The verdict is `monitors.gates_met`: at least 200 values, the
effect at or above the threshold, and the p-value that judges
(`monitors.judged_p_value`) below 0.01 / 20 (Bonferroni over a model of 20 features,
as `window_drift` corrects). Three policies are judged on the same windows: the default
(`DriftPolicy().judge`: Cohen's w less its noise >= 0.3, and the minimum-effect test
of w <= 0.15, `DriftPolicy.min_effect`), the same w gate with the chi-square test
instead (w >= 0.3, plain p), and the previous default, PSI >= 0.2 with the chi-square
test.

Small baselines: a rolling or seasonal baseline pools a few earlier windows, so both
sides of the test are small samples. In that regime a baseline of 800 or 2,000
events (drawn like the reference, binned on its edges, as a pooled `WindowSketch`
column) judges windows of 400 or 1,000 events, at p < 0.01 / 7 (a model of 7 features,
a weaker correction).

Shifts (effect sizes are the population values on the reference's bins):

* numeric, N(0, 1) reference: mean + d sd (d = 0.1 .. 1), variance x 1.5, x 2, x 0.5;
* categorical, k = 3, 5, 20 levels, reference p0 = (.5 .3 .2), (.30 .25 .20 .15 .10)
  and Zipf (p ~ 1/rank); windows drawn from (1 - t) p0 + t p0[::-1] with t set to reach
  w = 0.1 .. 0.5, and the issue's shift of the 5 levels to .20 each.

    .venv/bin/python benchmarks/drift_power.py                 # the tables, about 2 minutes
    .venv/bin/python benchmarks/drift_power.py --trials 500 --stationary 20000 --seed 7
    .venv/bin/python benchmarks/drift_power.py --min-effect-fraction 0.333  # w <= 0.1
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

from streamdrift.config import (
    LEGACY_STATISTIC,
    LEGACY_THRESHOLD,
    MIN_EFFECT_FRACTION,
    DriftPolicy,
)
from streamdrift.monitors import (
    _categorical_statistics,
    _numeric_statistics,
    gates_met,
    judged_p_value,
)
from streamdrift.profile import CategoricalProfile, NumericProfile, bin_index
from streamdrift.reference import numeric_profile
from streamdrift.sketch import CategoricalSketch, NumericSketch
from streamdrift.statistics import cohen_w, psi

REFERENCE_ROWS = 20_000
WINDOWS = (500, 2_000, 10_000)
FEATURES = 20  # the Bonferroni family of a typical model
#: small baselines: (baseline events, window events); a model of 7 features
SMALL = ((800, 400), (800, 1_000), (2_000, 400), (2_000, 1_000))
SMALL_FEATURES = 7
POLICY = DriftPolicy()
ALPHA = POLICY.p_value / FEATURES
RULES = 4  # default, w >= 0.3 with the chi-square p, PSI 0.2, the p gate alone
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


def numeric_sketch(ref: NumericProfile, values: np.ndarray) -> NumericSketch:
    edges = ref.edge_array()
    return NumericSketch(
        bins=np.bincount(bin_index(edges, values), minlength=edges.size + 1),
        n=int(values.size),
        total=float(values.sum()),
        total_sq=float((values * values).sum()),
        minimum=float(values.min()),
        maximum=float(values.max()),
    )


def numeric_window(
    ref: NumericProfile, values: np.ndarray, base: np.ndarray | None = None
) -> dict[str, float]:
    """The worker's statistics for a window of `values` against the reference, or
    against a pooled baseline of `base` values when given."""
    against = ref if base is None else numeric_sketch(ref, base)
    return _numeric_statistics(ref, against, numeric_sketch(ref, values), MIN_EFFECT["numeric"])


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


def categorical_sketch(counts: np.ndarray) -> CategoricalSketch:
    return CategoricalSketch(Counter({f"c{i:02d}": int(c) for i, c in enumerate(counts) if c}))


def categorical_window(
    ref: CategoricalProfile, counts: np.ndarray, base: np.ndarray | None = None
) -> dict[str, float]:
    against = ref if base is None else categorical_sketch(base)
    return _categorical_statistics(
        ref, against, categorical_sketch(counts), MIN_EFFECT["categorical"]
    )


MIN_EFFECT = {kind: POLICY.min_effect(kind) for kind in ("numeric", "categorical")}


def verdicts(stats: dict[str, float], kind: str, n: int, alpha: float) -> list[bool]:
    """[default policy, w >= 0.3 with the chi-square p, previous default PSI 0.2,
    significance gate (chi-square) alone]."""
    statistic, threshold = POLICY.judge(kind)
    chi_p = stats["chi_square_p_value"]
    least = POLICY.min_samples
    return [
        gates_met(stats[statistic], threshold, judged_p_value(stats), alpha, n, least),
        gates_met(stats[statistic], threshold, chi_p, alpha, n, least),
        gates_met(stats[LEGACY_STATISTIC], LEGACY_THRESHOLD, chi_p, alpha, n, least),
        bool(chi_p < alpha),
    ]


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


def flag_rates(
    rng: Rng,
    shift: Shift,
    n: int,
    trials: int,
    per_reference: int,
    baseline: int = 0,
    alpha: float = ALPHA,
) -> np.ndarray:
    """Share of `trials` windows of `n` events flagged, per rule of `verdicts`: against
    the reference, or with `baseline` > 0 against a fresh stationary baseline of that
    many events per window (binned on the reference's edges)."""
    hits = np.zeros(RULES)
    ref: NumericProfile | CategoricalProfile | None = None
    for i in range(trials):
        if i % per_reference == 0:  # the reference is a sample too
            if shift.kind == "numeric":
                ref = numeric_profile(rng.normal(0.0, 1.0, REFERENCE_ROWS), 0, 10)
            else:
                assert shift.p0 is not None
                ref = categorical_reference(rng, shift.p0)
        base = None
        if baseline:
            if shift.kind == "numeric":
                base = rng.normal(0.0, 1.0, baseline)
            else:
                assert shift.p0 is not None
                base = rng.multinomial(baseline, shift.p0)
        x = shift.sample(rng, n)
        if isinstance(ref, NumericProfile):
            stats = numeric_window(ref, x, base)
        else:
            assert isinstance(ref, CategoricalProfile)
            stats = categorical_window(ref, x, base)
        hits += verdicts(stats, shift.kind, n, alpha)
    return hits / trials


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


RULE_NAMES = ("default", "w, chi-square p", "PSI 0.2")


def power_table(rng: Rng, shifts: list[Shift], trials: int) -> list[str]:
    sizes = " / ".join(f"{n:,}" for n in WINDOWS)
    lines = [
        "| shift | w | PSI | TVD | " + " | ".join(f"{r}: {sizes}" for r in RULE_NAMES) + " |",
        "|---|---:|---:|---:|" + "---|" * len(RULE_NAMES),
    ]
    for s in shifts:
        if s.label.endswith("none"):
            continue
        rates = [flag_rates(rng, s, n, trials, per_reference=10) for n in WINDOWS]
        cells = " | ".join(" / ".join(_pct(r[i]) for r in rates) for i in range(3))
        lines.append(f"| {s.label} | {s.w:.2f} | {s.psi:.3f} | {s.tvd:.3f} | {cells} |")
    return lines


def _column_name(s: Shift) -> str:
    return "numeric N(0, 1)" if s.kind == "numeric" else s.label.replace(": none", "")


def stationary_table(rng: Rng, shifts: list[Shift], windows: int) -> list[str]:
    lines = [
        "| stationary column | events | " + " | ".join(RULE_NAMES) + " | the p gate alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in shifts:
        if not s.label.endswith("none"):
            continue
        for n in WINDOWS:
            r = flag_rates(rng, s, n, windows, per_reference=50) * 10_000
            cells = " | ".join(f"{x:.1f}" for x in r)
            lines.append(f"| {_column_name(s)} | {n:,} | {cells} |")
    return lines


#: the shifts whose power the small-baseline table shows
SMALL_SHIFTS = ("mean +0.5 sd", "variance x2", "5 levels: the issue's, to .20 each")


def small_power_table(rng: Rng, shifts: list[Shift], trials: int) -> list[str]:
    alpha = POLICY.p_value / SMALL_FEATURES
    regimes = " / ".join(f"{b:,}:{n:,}" for b, n in SMALL)
    lines = [
        "| shift | w | " + " | ".join(f"{r}: {regimes}" for r in RULE_NAMES) + " |",
        "|---|---:|" + "---|" * len(RULE_NAMES),
    ]
    for s in shifts:
        if s.label not in SMALL_SHIFTS:
            continue
        rates = [flag_rates(rng, s, n, trials, 10, baseline=b, alpha=alpha) for b, n in SMALL]
        cells = " | ".join(" / ".join(_pct(r[i]) for r in rates) for i in range(3))
        lines.append(f"| {s.label} | {s.w:.2f} | {cells} |")
    return lines


def small_stationary_table(rng: Rng, shifts: list[Shift], windows: int) -> list[str]:
    alpha = POLICY.p_value / SMALL_FEATURES
    lines = [
        "| stationary column | baseline : window | "
        + " | ".join(RULE_NAMES)
        + " | the p gate alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in shifts:
        if not s.label.endswith("none"):
            continue
        for b, n in SMALL:
            r = flag_rates(rng, s, n, windows, 50, baseline=b, alpha=alpha) * 10_000
            cells = " | ".join(f"{x:.1f}" for x in r)
            lines.append(f"| {_column_name(s)} | {b:,} : {n:,} | {cells} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200, help="windows per power cell")
    ap.add_argument(
        "--stationary", type=int, default=10_000, help="stationary windows per kind and size"
    )
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument(
        "--min-effect-fraction",
        type=float,
        default=MIN_EFFECT_FRACTION,
        help="the share of the threshold the default's test rules out (0: the chi-square "
        "test; 1: a lower confidence bound of w above the threshold)",
    )
    args = ap.parse_args(argv)
    for kind in MIN_EFFECT:
        MIN_EFFECT[kind] = POLICY.judge(kind)[1] * args.min_effect_fraction
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    shifts = numeric_shifts() + categorical_shifts()
    statistic, threshold = POLICY.judge("categorical")
    print(
        f"Detection power (share of windows flagged, {args.trials} per cell; reference "
        f"{REFERENCE_ROWS:,} rows; p < {POLICY.p_value:g}/{FEATURES}, n >= "
        f"{POLICY.min_samples}). default = {statistic} >= {threshold:g} and the "
        f"minimum-effect p (w <= {MIN_EFFECT['categorical']:g}); 'w, chi-square p' = "
        f"{statistic} >= {threshold:g} and the chi-square p; "
        f"w, PSI, TVD are the shift's population values.\n"
    )
    print("\n".join(power_table(rng, shifts, args.trials)))
    print(
        f"\nFalse flags per 10,000 stationary feature-windows ({args.stationary:,} windows "
        "per row, a new reference every 50).\n"
    )
    print("\n".join(stationary_table(rng, shifts, args.stationary)))
    print(
        f"\nSmall baselines (baseline events : window events; p < "
        f"{POLICY.p_value:g}/{SMALL_FEATURES}): detection power, {args.trials} windows per "
        "cell.\n"
    )
    print("\n".join(small_power_table(rng, shifts, args.trials)))
    print(
        f"\nSmall baselines: false flags per 10,000 stationary feature-windows "
        f"({args.stationary:,} windows per row, a fresh baseline for each).\n"
    )
    print("\n".join(small_stationary_table(rng, shifts, args.stationary)))
    print(f"\n({time.perf_counter() - started:.0f} s, seed {args.seed})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
