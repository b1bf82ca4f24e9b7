"""Synthetic model traffic for the demo, the tests and the benchmarks: a fraud-like
binary classifier with 20 numeric and 2 categorical features, whose inputs can shift
part-way through the stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv

NUMERIC = [f"f{i:02d}" for i in range(20)]
COUNTRIES = ["DE", "FR", "US", "GB", "IT", "ES"]
COUNTRY_P = [0.30, 0.20, 0.20, 0.15, 0.10, 0.05]
DEVICES = ["mobile", "desktop", "tablet"]
DEVICE_P = [0.6, 0.3, 0.1]
MEANS = np.linspace(-5.0, 50.0, len(NUMERIC))
SDS = np.linspace(0.5, 20.0, len(NUMERIC))
WEIGHTS = np.random.default_rng(7).normal(0, 1, len(NUMERIC)) / np.sqrt(len(NUMERIC))

#: Features that move when the stream drifts: a 1-sd mean shift, a doubled spread, and
#: a change of category frequencies.
DRIFTING = ("f00", "f03", "country")


#: The kinds of feature `feature_mix` draws, in the order they repeat.
MIX_KINDS = ("gaussian", "lognormal", "student-t", "count")


def feature_mix(
    rng: np.random.Generator, n: int, d: int, kinds: tuple[str, ...] = MIX_KINDS
) -> np.ndarray:
    """n rows of d numeric features shaped like a real table's: correlated through two
    latent factors (correlations up to about 0.5), and of the `kinds` in turn — Gaussian,
    lognormal (skewed), Student-t with 5 degrees of freedom (heavy tails) and Poisson
    counts (integers). The dependence depends only on d, so calls with the same d and
    kinds draw from one distribution (a reference, then traffic like it)."""
    structure = np.random.default_rng(1000 + d)
    loadings = structure.uniform(-0.7, 0.7, size=(d, 2))
    cov = loadings @ loadings.T + np.diag(1 - (loadings**2).sum(axis=1))
    z = rng.standard_normal((n, d)) @ np.linalg.cholesky(cov).T
    x = np.empty_like(z)
    for j in range(d):
        kind = kinds[j % len(kinds)]
        if kind == "gaussian":
            x[:, j] = 3 + 2 * z[:, j]
        elif kind == "lognormal":
            x[:, j] = 10 * np.exp(0.8 * z[:, j])
        elif kind == "student-t":
            x[:, j] = z[:, j] / np.sqrt(rng.chisquare(5, n) / 5)
        elif kind == "count":
            x[:, j] = rng.poisson(np.exp(1.5 + 0.5 * z[:, j]))
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
    return x


CALIBRATION_DISTS = ("gaussian", "heavy", "discrete", "mixed")


def _latent(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    structure = np.random.default_rng(2000 + d)  # the same dependence for every draw
    loadings = structure.uniform(-0.7, 0.7, size=(d, 2))
    cov = loadings @ loadings.T + np.diag(1 - (loadings**2).sum(axis=1))
    return rng.standard_normal((n, d)) @ np.linalg.cholesky(cov).T


def calibration_mix(rng: np.random.Generator, n: int, d: int, dist: str) -> np.ndarray:
    """n rows of d numeric features of one distribution of `CALIBRATION_DISTS` (the
    same one on every call; benchmarks/outlier_calibration.py): "gaussian"; "heavy",
    Student-t with 2 degrees of freedom and lognormal (σ = 1) in turn; "discrete",
    integers of a few levels (a Poisson count of mean about 2, a 1–5 rating, a
    binomial(3) count) in turn; "mixed", `feature_mix`. Correlated through two latent
    factors."""
    if dist == "mixed":
        return feature_mix(rng, n, d)
    z = _latent(rng, n, d)
    if dist == "gaussian":
        return 3 + 2 * z
    x = np.empty_like(z)
    for j in range(d):
        if dist == "heavy":
            if j % 2 == 0:
                x[:, j] = z[:, j] / np.sqrt(rng.chisquare(2, n) / 2)
            else:
                x[:, j] = 10 * np.exp(z[:, j])
        elif dist == "discrete":
            kind = j % 3
            if kind == 0:
                x[:, j] = rng.poisson(np.exp(0.5 + 0.4 * z[:, j]))
            elif kind == 1:
                x[:, j] = np.digitize(z[:, j], [-1.5, -0.5, 0.5, 1.5]) + 1
            else:
                x[:, j] = rng.binomial(3, 1 / (1 + np.exp(1.0 - z[:, j])))
        else:
            raise ValueError(f"unknown distribution {dist!r}")
    return x


def _rows(rng: np.random.Generator, n: int, drifted: np.ndarray | None = None):
    x = rng.normal(MEANS, SDS, size=(n, len(NUMERIC)))
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_P)
    if drifted is not None and drifted.any():
        k = int(drifted.sum())
        x[drifted, 0] += SDS[0]
        x[drifted, 3] = MEANS[3] + (x[drifted, 3] - MEANS[3]) * 2.0
        country[drifted] = rng.choice(len(COUNTRIES), size=k, p=COUNTRY_P[::-1])
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_P)
    z = ((x - MEANS) / SDS) @ WEIGHTS
    score = 1 / (1 + np.exp(-(z * 2 - 1)))
    label = (rng.random(n) < score).astype(int)
    return x, country, device, score, label


def _event(
    model_id: str,
    pid: str,
    version: str,
    ts: float,
    x_row: np.ndarray,
    country: int,
    device: int,
    score: float,
) -> dict[str, object]:
    """One prediction event of the synthetic model."""
    feats = dict(zip(NUMERIC, x_row.round(4).tolist(), strict=True))
    feats["country"] = COUNTRIES[country]
    feats["device"] = DEVICES[device]
    return {
        "prediction_id": pid,
        "model_id": model_id,
        "model_version": version,
        "timestamp": float(ts),
        "features": feats,
        "prediction": {"score": round(float(score), 5), "label": int(score >= 0.5)},
    }


def write_reference(path: str | Path, rows: int = 20_000, seed: int = 0) -> Path:
    """A reference CSV (features, `score` and `is_fraud`) like a training set."""
    rng = np.random.default_rng(seed)
    x, country, device, score, label = _rows(rng, rows)
    cols = {name: x[:, i] for i, name in enumerate(NUMERIC)}
    cols["country"] = np.asarray(COUNTRIES)[country]
    cols["device"] = np.asarray(DEVICES)[device]
    cols["score"] = score
    cols["is_fraud"] = label
    path = Path(path)
    pcsv.write_csv(pa.table(cols), path)
    return path


def prediction_events(
    model_id: str,
    n: int,
    start: float,
    span_seconds: float,
    drift_at: float | None = None,
    seed: int = 1,
    chunk: int = 5000,
    version: str = "1.0.0",
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of JSON prediction events, timestamps spread evenly over
    [start, start + span); events from `drift_at` (a fraction of the stream) on drift."""
    rng = np.random.default_rng(seed)
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        pos = np.arange(lo, lo + m)
        drifted = pos >= int(drift_at * n) if drift_at is not None else None
        x, country, device, score, _label = _rows(rng, m, drifted)
        ts = start + pos * (span_seconds / n)
        for i in range(m):
            pid = f"{model_id}-{seed}-{lo + i}"
            event = _event(model_id, pid, version, ts[i], x[i], country[i], device[i], score[i])
            yield pid.encode(), orjson.dumps(event)


def labelled_events(
    model_id: str,
    n: int,
    start: float,
    span_seconds: float,
    drift_at: float | None = None,
    concept_drift_at: float | None = None,
    seed: int = 1,
    concept_drift_until: float = 1.0,
    delay_seconds: tuple[float, float] = (60.0, 86400.0),
    version: str = "1.0.0",
    drift_until: float = 1.0,
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Predictions and their labels, as (key, value) lists. Each label arrives a random
    delay after its prediction (uniform over `delay_seconds`). From `concept_drift_at`
    on (a fraction of the stream), until `concept_drift_until`, the labels stop matching
    the model: the inputs look the same, but the outcome is the opposite of what the
    score says (concept drift). The inputs drift from `drift_at` until `drift_until`."""
    rng = np.random.default_rng(seed)
    x, country, device, score, label = _rows(rng, n)
    if drift_at is not None:
        pos = np.arange(n)
        drifted = (pos >= int(drift_at * n)) & (pos < int(drift_until * n))
        x2, country2, _, score2, label2 = _rows(rng, n, drifted)
        x[drifted], country[drifted] = x2[drifted], country2[drifted]
        score[drifted], label[drifted] = score2[drifted], label2[drifted]
    if concept_drift_at is not None:
        pos = np.arange(n)
        flipped = (pos >= int(concept_drift_at * n)) & (pos < int(concept_drift_until * n))
        label[flipped] = 1 - label[flipped]
    ts = start + np.arange(n) * (span_seconds / n)
    delays = rng.uniform(*delay_seconds, size=n)
    predictions, labels = [], []
    for i in range(n):
        pid = f"{model_id}-{seed}-{i}"
        event = _event(model_id, pid, version, ts[i], x[i], country[i], device[i], score[i])
        event["segments"] = {
            "region": "US" if COUNTRIES[country[i]] == "US" else "EU",
            "device": DEVICES[device[i]],
        }
        predictions.append((pid.encode(), orjson.dumps(event)))
        truth = {
            "prediction_id": pid,
            "model_id": model_id,
            "label": int(label[i]),
            "timestamp": float(ts[i] + delays[i]),
        }
        labels.append((pid.encode(), orjson.dumps(truth)))
    return predictions, labels


# ---- a loan model whose population shifts: performance estimation before labels ------------
LOAN_NUMERIC = ["income", "debt_ratio", "credit_years", "loan_amount"]
EMPLOYMENT = ["employed", "self-employed", "unemployed", "retired"]
EMPLOYMENT_P = [0.70, 0.15, 0.08, 0.07]
_EMPLOYMENT_RISK = np.array([0.0, 0.3, 1.0, -0.2])


def loan_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """n loan applications: features, the true default probability, the model's score
    (an under-confident logistic of it: not calibrated) and the outcome (`default`, 1 =
    defaulted, drawn from the true probability). `shift` in [0, 1] moves the applicants
    towards a narrow, better-off segment (incomes higher and alike, debt ratios alike):
    their scores bunch together and the model's ROC-AUC falls from about 0.89 to 0.72,
    while P(default | inputs) stays what it was (covariate shift, no concept drift)."""
    spread = 1 - 0.75 * shift
    z_income = rng.normal(0.8 * shift, spread, n)
    z_debt = rng.normal(0.4 * shift, spread, n)
    z_years, z_amount = rng.normal(0, 1, n), rng.normal(0, 1, n)
    employment = rng.choice(len(EMPLOYMENT), size=n, p=EMPLOYMENT_P)
    logit = (
        -1.3
        - 1.5 * z_income
        + 1.8 * z_debt
        - 0.5 * z_years
        + 0.3 * z_amount
        + _EMPLOYMENT_RISK[employment]
    )
    probability = 1 / (1 + np.exp(-logit))
    return {
        "income": np.exp(10.6 + 0.45 * z_income).round(0),
        "debt_ratio": (1 / (1 + np.exp(1 - 0.7 * z_debt))).round(4),
        "credit_years": np.exp(2 + 0.5 * z_years).round(2),
        "loan_amount": np.exp(9.5 + 0.6 * z_amount).round(0),
        "employment": employment,
        "probability": probability,
        "score": (1 / (1 + np.exp(-(0.55 * logit + 0.4)))).round(6),
        "default": (rng.random(n) < probability).astype(int),
    }


def write_loan_reference(path: str | Path, rows: int = 20_000, seed: int = 0) -> Path:
    """A loan model's reference CSV: features, `score` and its outcome `default`."""
    r = loan_rows(np.random.default_rng(seed), rows)
    cols = {name: r[name] for name in LOAN_NUMERIC}
    cols["employment"] = np.asarray(EMPLOYMENT)[r["employment"]]
    cols["score"], cols["default"] = r["score"], r["default"]
    path = Path(path)
    pcsv.write_csv(pa.table(cols), path)
    return path


def loan_events(
    model_id: str,
    n: int,
    start: float,
    span_seconds: float,
    shift_from: float | None = None,
    shift: float = 1.0,
    seed: int = 1,
) -> tuple[list[tuple[bytes, bytes]], np.ndarray, np.ndarray]:
    """(key, value) prediction events of the loan model, timestamps spread evenly over
    [start, start + span); from `shift_from` (a fraction of the stream) on, the
    population shifts by `shift` (see `loan_rows`). Also each event's score and
    outcome, which a test may keep to itself: the labels that never arrive."""
    rng = np.random.default_rng(seed)
    cut = n if shift_from is None else int(shift_from * n)
    before, after = loan_rows(rng, cut), loan_rows(rng, n - cut, shift)
    r = {k: np.concatenate((before[k], after[k])) for k in before}
    ts = start + np.arange(n) * (span_seconds / n)
    events = []
    for i in range(n):
        pid = f"{model_id}-{seed}-{i}"
        features: dict[str, object] = {f: float(r[f][i]) for f in LOAN_NUMERIC}
        features["employment"] = EMPLOYMENT[int(r["employment"][i])]
        score = float(r["score"][i])
        event = {
            "prediction_id": pid,
            "model_id": model_id,
            "model_version": "2.0.0",
            "timestamp": float(ts[i]),
            "features": features,
            "prediction": {"score": score, "label": int(score >= 0.5)},
        }
        events.append((pid.encode(), orjson.dumps(event)))
    return events, r["score"], r["default"]


#: A model whose first two inputs move together (correlation `rho`), for multivariate
#: drift: `pair_events` can reverse their correlation while every input keeps its own
#: distribution, or leak identifiers into the categorical `merchant`.
PAIR_NUMERIC = ("amount", "balance", "age", "tenure")
PAIR_MEANS = np.array([100.0, 5000.0, 40.0, 5.0])
PAIR_SDS = np.array([20.0, 1000.0, 10.0, 2.0])
MERCHANTS = [f"m{i:02d}" for i in range(20)]
MERCHANT_P = np.arange(20, 0, -1) / np.arange(20, 0, -1).sum()


def pair_rows(
    rng: np.random.Generator, n: int, rho: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric inputs (Gaussian; amount and balance correlated `rho`, per row when an
    array), merchant indices and scores (from amount and age only, so a change of the
    pair's correlation leaves the scores' distribution as it was)."""
    z = rng.standard_normal((n, len(PAIR_NUMERIC)))
    r = np.broadcast_to(np.asarray(rho, dtype=np.float64), (n,))
    z[:, 1] = r * z[:, 0] + np.sqrt(1 - r * r) * z[:, 1]
    x = PAIR_MEANS + PAIR_SDS * z
    merchant = rng.choice(len(MERCHANTS), size=n, p=MERCHANT_P)
    score = 1 / (1 + np.exp(-(0.8 * z[:, 0] - 0.5 * z[:, 2] - 1)))
    return x, merchant, score


def write_pair_reference(path: str | Path, rows: int = 10_000, rho: float = 0.8, seed: int = 0):
    """A reference CSV of the pair model: its inputs and `score`."""
    x, merchant, score = pair_rows(np.random.default_rng(seed), rows, rho)
    cols: dict[str, object] = {name: x[:, i] for i, name in enumerate(PAIR_NUMERIC)}
    cols["merchant"] = np.asarray(MERCHANTS)[merchant]
    cols["score"] = score
    path = Path(path)
    pcsv.write_csv(pa.table(cols), path)
    return path


def pair_events(
    model_id: str,
    n: int,
    start: float,
    span_seconds: float,
    *,
    rho: float = 0.8,
    flip_at: float | None = None,
    leak_at: float | None = None,
    leak_share: float = 0.3,
    seed: int = 1,
) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of the pair model's prediction events, timestamps spread over
    [start, start + span). From `flip_at` (a fraction of the stream) on, amount and
    balance are correlated −rho instead of rho; from `leak_at` on, a `leak_share` of the
    events carry a unique identifier as their merchant."""
    rng = np.random.default_rng(seed)
    pos = np.arange(n)
    flipped = pos >= int(flip_at * n) if flip_at is not None else np.zeros(n, dtype=bool)
    x, merchant, score = pair_rows(rng, n, np.where(flipped, -rho, rho))
    leaked = (
        (pos >= int(leak_at * n)) & (rng.random(n) < leak_share) if leak_at is not None else None
    )
    ts = start + pos * (span_seconds / n)
    out = []
    for i in range(n):
        pid = f"{model_id}-{seed}-{i}"
        feats: dict[str, object] = dict(zip(PAIR_NUMERIC, x[i].round(4).tolist(), strict=True))
        feats["merchant"] = (
            f"txn-{pid}" if leaked is not None and leaked[i] else MERCHANTS[merchant[i]]
        )
        event = {
            "prediction_id": pid,
            "model_id": model_id,
            "model_version": "1.0.0",
            "timestamp": float(ts[i]),
            "features": feats,
            "prediction": {"score": round(float(score[i]), 5), "label": int(score[i] >= 0.5)},
        }
        out.append((pid.encode(), orjson.dumps(event)))
    return out
