"""Outlier scoring: how far one event lies from the reference, jointly over its numeric
features, calibrated so that reference-like traffic is flagged at a chosen rate.

The score is a robust Mahalanobis distance: features standardised by the reference's
median and IQR (robust to the reference's own outliers), correlation from the clipped
standardised values with Ledoit–Wolf-style shrinkage towards the identity (stable with
20+ features), and the flagging threshold taken at the (1 - rate) quantile of scores on
a held-out half of the reference — an empirical calibration, not a χ² assumption, since
real features are rarely Gaussian. Scoring a batch is one matrix product.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

#: standardised values are clipped here when estimating the correlation, so a handful
#: of wild reference rows cannot shape it
_CLIP = 5.0
#: shrinkage towards the identity (Ledoit & Wolf 2004 use a data-driven weight; a fixed
#: small one is enough to keep the inverse stable)
_SHRINK = 0.05


class OutlierModel(BaseModel):
    """The reference's outlier model, stored inside the profile (plain JSON numbers)."""

    features: list[str]
    center: list[float]
    scale: list[float]
    precision: list[list[float]]
    threshold: float
    rate: float

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray(self.center), np.asarray(self.scale), np.asarray(self.precision))


def _standardise(x: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (x - center) / scale
    return np.where(np.isnan(z), 0.0, z)  # a missing value is not evidence of anything


def fit(x: np.ndarray, features: list[str], rate: float, seed: int = 0) -> OutlierModel | None:
    """Fit on one half of the reference rows, calibrate the threshold on the other."""
    if x.shape[1] == 0 or x.shape[0] < 200:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(x.shape[0])
    fit_rows, calib_rows = x[order[::2]], x[order[1::2]]
    center = np.nanmedian(fit_rows, axis=0)
    q75, q25 = np.nanpercentile(fit_rows, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    spread = np.nanstd(fit_rows, axis=0)
    scale = np.where(scale > 0, scale, np.where(spread > 0, spread, 1.0))
    z = np.clip(_standardise(fit_rows, center, scale), -_CLIP, _CLIP)
    corr = np.cov(z, rowvar=False).reshape(x.shape[1], x.shape[1])
    corr = (1 - _SHRINK) * corr + _SHRINK * np.diag(np.diag(corr))
    precision = np.linalg.pinv(corr)
    scores = score(calib_rows, center, scale, precision)
    threshold = float(np.quantile(scores, 1 - rate))
    return OutlierModel(
        features=features,
        center=center.tolist(),
        scale=scale.tolist(),
        precision=precision.tolist(),
        threshold=threshold,
        rate=rate,
    )


def score(x: np.ndarray, center: np.ndarray, scale: np.ndarray, precision: np.ndarray):
    """Robust Mahalanobis distance of each row."""
    z = _standardise(x, center, scale)
    return np.sqrt(np.maximum(((z @ precision) * z).sum(axis=1), 0.0))


def contributions(x_row: np.ndarray, model: OutlierModel, top: int = 3) -> list[dict]:
    """The features that make one event extreme: each one's share of the squared
    distance, z_j (P z)_j, largest first, with the standardised value."""
    center, scale, precision = model.arrays()
    z = _standardise(x_row[None, :], center, scale)[0]
    parts = z * (precision @ z)
    order = np.argsort(-parts)[:top]
    return [
        {
            "feature": model.features[j],
            "z": round(float(z[j]), 3),
            "share": round(float(parts[j] / max(parts.sum(), 1e-12)), 3),
        }
        for j in order
    ]
