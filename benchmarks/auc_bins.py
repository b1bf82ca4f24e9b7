"""Binned ROC-AUC against scikit-learn's exact one, per score distribution: the
equal-width layout (profiles without score edges) and the layout derived from the
reference's scores (`performance.score_edges`).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/auc_bins.py [--windows 50] [--seed 0]
      [--json]

For each distribution: a reference of 20,000 scored rows gives the layout; then
`--windows` windows of 1,000 to 10,000 pairs drawn from the same distribution (new
draws) are binned both ways and compared with `sklearn.metrics.roc_auc_score` on the raw
scores. "drift" cases draw the windows from another distribution than the reference (the
layout was fitted on scores the windows no longer look like). Reports the largest and
the median |error| and how many windows are off by more than 0.005. Needs no servers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from streamdrift.performance import PerformanceSketch, roc_auc, score_edges

TOLERANCE = 0.005
Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _calibrated(score: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return (rng.random(score.size) < score).astype(int), score


def saturated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """beta(0.05, 0.05) scores, piled up at 0 and 1, labels drawn with that probability."""
    return _calibrated(rng.beta(0.05, 0.05, n), rng)


def confident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A confident model: scores 1e-7..1e-3 or 1 − (1e-3..1e-7), 3 % of labels against it,
    and within each tail the positives slightly higher (ordering that binning loses)."""
    y = rng.integers(0, 2, n)
    side = np.where(rng.random(n) < 0.03, 1 - y, y)
    depth = rng.uniform(3, 7, n) - 0.5 * y  # positives a little less deep in the low tail
    tail = 10.0**-depth
    return y, np.where(side == 1, 1 - 10.0 ** -(rng.uniform(3, 7, n) + 0.5 * y), tail)


def confident_ranked(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A confident model whose misses are ranked: negatives at 1e-7..1e-3, most
    positives within 1e-3 of 1, a fifth of them at 1e-4..1e-2, above most negatives but
    all in the equal-width layout's first bin with them."""
    y = rng.integers(0, 2, n)
    low_positive = (y == 1) & (rng.random(n) < 0.2)
    score = np.where(y == 1, 1 - 10.0 ** -rng.uniform(3, 7, n), 10.0 ** -rng.uniform(3, 7, n))
    score[low_positive] = 10.0 ** -rng.uniform(2, 4, int(low_positive.sum()))
    return y, score


def discrete_small(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten distinct scores from 1e-4 to 1e-2 (a rare-event model's rounded output), the
    higher ones more often positive."""
    values = np.geomspace(1e-4, 1e-2, 10)
    k = rng.integers(0, 10, n)
    return (rng.random(n) < (k + 1) / 11).astype(int), values[k]


def logit_normal(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated scores with logits ~ N(0, 6): most of them within 1e-3 of 0 or 1."""
    return _calibrated(1 / (1 + np.exp(-rng.normal(0, 6, n))), rng)


def discrete(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten distinct scores, unevenly frequent, labels calibrated."""
    values = np.array([0.02, 0.11, 0.13, 0.3, 0.45, 0.5, 0.52, 0.7, 0.93, 0.99])
    p = [0.3, 0.1, 0.02, 0.1, 0.1, 0.05, 0.03, 0.1, 0.1, 0.1]
    return _calibrated(rng.choice(values, n, p=p), rng)


def tied(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Heavy ties: 40 % of the scores exactly 0.5, 10 % exactly 0 or 1, the rest beta."""
    score = rng.beta(2, 2, n)
    u = rng.random(n)
    score[u < 0.4] = 0.5
    score[(u >= 0.4) & (u < 0.45)] = 0.0
    score[(u >= 0.45) & (u < 0.5)] = 1.0
    return _calibrated(score, rng)


def uniform(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform calibrated scores: what the equal-width layout was made for."""
    return _calibrated(rng.random(n), rng)


def narrow(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All scores in [0.45, 0.55], labels calibrated on a stretched scale."""
    score = rng.uniform(0.45, 0.55, n)
    return (rng.random(n) < (score - 0.45) * 10).astype(int), score


CASES: dict[str, tuple[Draw, Draw]] = {
    "saturated beta(0.05,0.05)": (saturated, saturated),
    "confident 1e-7..1e-3": (confident, confident),
    "confident, misses ranked": (confident_ranked, confident_ranked),
    "logit-normal(0, 6)": (logit_normal, logit_normal),
    "discrete (10 values)": (discrete, discrete),
    "discrete (10 values, 1e-4..1e-2)": (discrete_small, discrete_small),
    "heavy ties": (tied, tied),
    "uniform": (uniform, uniform),
    "narrow [0.45, 0.55]": (narrow, narrow),
    "drift: ref uniform, window saturated": (uniform, saturated),
    "drift: ref saturated, window uniform": (saturated, uniform),
    "drift: ref uniform, window narrow": (uniform, narrow),
    "drift: ref uniform, window confident": (uniform, confident_ranked),
}


def errors(reference: Draw, window: Draw, windows: int, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    _, ref_scores = reference(rng, 20_000)
    edges = score_edges(ref_scores)
    out: dict[str, list[float]] = {"equal-width": [], "reference edges": []}
    for _ in range(windows):
        y, score = window(rng, int(rng.integers(1_000, 10_001)))
        if y.min() == y.max():
            continue
        exact = roc_auc_score(y, score)
        for name, layout in (("equal-width", None), ("reference edges", edges)):
            s = PerformanceSketch.from_pairs(
                "binary", list(y), None, score, "1", score_edges=layout
            )
            out[name].append(abs(roc_auc(s.positive_hist, s.negative_hist) - exact))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for i, (name, (reference, window)) in enumerate(CASES.items()):
        for layout, errs in errors(reference, window, args.windows, args.seed + i).items():
            e = np.asarray(errs)
            rows.append(
                {
                    "distribution": name,
                    "layout": layout,
                    "windows": int(e.size),
                    "max_error": float(e.max()),
                    "median_error": float(np.median(e)),
                    "over_tolerance": int((e > TOLERANCE).sum()),
                }
            )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'distribution':40} {'layout':16} {'max |err|':>10} {'median':>10} {'> 0.005':>8}")
    for r in rows:
        print(
            f"{r['distribution']:40} {r['layout']:16} {r['max_error']:10.5f} "
            f"{r['median_error']:10.5f} {r['over_tolerance']:>5}/{r['windows']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
