"""The reference profile: what "normal" looks like for one model, as readable JSON in Redis.

Numeric columns keep bin edges at the reference's quantiles (plus its min and max), the
reference counts in those bins, and moments; categorical columns keep capped category
counts. Windows are binned on the same edges, so every drift statistic is a comparison of
two count vectors of equal length (DESIGN decision 4).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

from streamdrift.config import MonitorConfig
from streamdrift.correlation import CorrelationModel
from streamdrift.estimation import ScoreCalibration
from streamdrift.outliers import OutlierModel
from streamdrift.reconstruction import ReconstructionModel

Task = Literal["binary", "multiclass", "regression"]

#: window column names of the model's outputs (not features)
PREDICTION = "__prediction__"
LABEL = "__label__"
#: window column name of the events' data reconstruction error (see reconstruction.py)
RECONSTRUCTION = "__reconstruction_error__"


class NumericProfile(BaseModel):
    """Reference distribution of a numeric column.

    `edges` run from the reference minimum to its maximum through its quantiles; the bins
    are: below the minimum, one bin per pair of adjacent edges (the last one closed), above
    the maximum. So `len(counts) == len(edges) + 1`.
    """

    kind: Literal["numeric"] = "numeric"
    edges: list[float]
    counts: list[int]
    count: int
    missing: int
    mean: float
    std: float
    min: float
    max: float

    def edge_array(self) -> np.ndarray:
        return np.asarray(self.edges, dtype=np.float64)

    def bin_positions(self, window_min: float | None = None, window_max: float | None = None):
        """One representative value per bin, for the binned Wasserstein distance: inner bins
        sit at their midpoints; the outer bins at the farthest value seen (or the edge)."""
        e = self.edge_array()
        inner = (e[:-1] + e[1:]) / 2
        low = min(e[0], window_min) if window_min is not None else e[0]
        high = max(e[-1], window_max) if window_max is not None else e[-1]
        return np.concatenate(([low], inner, [high]))


class CategoricalProfile(BaseModel):
    """Reference distribution of a categorical column: the most frequent categories and
    the count of all others together."""

    kind: Literal["categorical"] = "categorical"
    categories: dict[str, int]
    other: int
    count: int
    missing: int
    cardinality: int


ColumnProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class MultivariateProfile(BaseModel):
    """How the reference's numeric features move together (see `multivariate.py`): the
    principal components its events are reconstructed from, its own reconstruction
    errors binned like a numeric column, and the reference correlations of the
    features whose pairs are watched."""

    reconstruction: ReconstructionModel | None = None
    #: the reference rows' cross-fitted reconstruction errors (see reconstruction.py)
    reconstruction_error: NumericProfile | None = None
    correlation: CorrelationModel | None = None
    #: the models' columns among a batch's numeric ones (multivariate._columns)
    _columns: dict[tuple[str, ...], Any] = PrivateAttr(default_factory=dict)


class SliceProfile(BaseModel):
    """The reference rows of one segment value, on the model's bins: what "normal" looks
    like for that slice, so a region whose features always differ from the whole is not
    drifting, and its performance is compared with its own."""

    rows: int
    features: dict[str, ColumnProfile]
    prediction: ColumnProfile | None = None
    reference_performance: dict[str, float] = Field(default_factory=dict)
    #: the slice's reference rows the outlier threshold flags (as the model's share
    #: of out-of-sample flags would have them): a region living in a tail has more
    outliers: float | None = None


class ReferenceProfile(BaseModel):
    """Everything a worker needs to monitor one model, stored at `sd:{model}:profile`."""

    model_id: str
    revision: int = 1
    created_at: datetime
    source: str
    rows: int
    task: Task
    prediction_column: str | None = None
    label_column: str | None = None
    features: dict[str, ColumnProfile]
    prediction: ColumnProfile | None = None
    label: ColumnProfile | None = None
    #: binary: the class a score is the probability of, and the other one
    positive_class: str | None = None
    negative_class: str | None = None
    #: performance of the prediction column against the label column on the reference
    reference_performance: dict[str, float] = Field(default_factory=dict)
    #: binary with scores: the inner edges of the score bins ROC-AUC and calibration are
    #: counted in, placed by the reference's scores (`performance.score_edges`); None in
    #: profiles registered before they existed, whose windows keep the equal-width bins
    score_edges: list[float] | None = None
    #: the joint outlier model over the numeric features (None: too few rows or none)
    outliers: OutlierModel | None = None
    #: reference rows beyond the outlier threshold (None: the rate times the rows); a
    #: slice's own count in a slice's view of the profile
    reference_outliers: float | None = None
    #: the joint structure of the numeric features (None: fewer than two, or off)
    multivariate: MultivariateProfile | None = None
    #: binary with scores and labels: what performance estimation before labels (CBPE)
    #: needs of the reference (None: not such a model, or too few rows)
    calibration: ScoreCalibration | None = None
    config: MonitorConfig = Field(default_factory=MonitorConfig)
    #: segment key -> slice name ("region=eu", "region=__other__") -> its reference;
    #: the kept values of a key are those with a profile (but `__other__`)
    segments: dict[str, dict[str, SliceProfile]] = Field(default_factory=dict)
    #: the worker's per-profile constants (sketch._Layout), built on first use
    _layout: Any = PrivateAttr(default=None)

    def label_shift(self) -> float:
        """What a regressor's labels are shifted by before their sums are kept: the
        reference mean. Σy² − (Σy)²/n cancels catastrophically when the mean is large
        against the spread (prices, timestamps); around the mean it does not. R² is
        unchanged by the shift, so any constant will do, as long as one model's windows
        share it."""
        label = self.label
        return float(label.mean) if isinstance(label, NumericProfile) else 0.0

    def segment_values(self, key: str) -> list[str]:
        """The values of segment key `key` that have slices of their own."""
        prefix = f"{key}="
        return [
            name[len(prefix) :]
            for name in self.segments.get(key, {})
            if name[len(prefix) :] != "__other__"
        ]

    def slice_profile(self, name: str) -> ReferenceProfile:
        """The profile a slice is judged against: a segment value's own reference (on
        the model's bins), or the model's for a version (every version serves the same
        inputs) and for a segment value the reference lacks."""
        key = name.partition("=")[0]
        own = self.segments.get(key, {}).get(name)
        if own is None:
            return self
        view = self.model_copy(
            update={
                "rows": own.rows,
                "features": own.features,
                "prediction": own.prediction if own.prediction is not None else self.prediction,
                "reference_performance": own.reference_performance,
                "reference_outliers": own.outliers,
            }
        )
        view._layout = None
        return view

    def numeric_features(self) -> list[str]:
        return [n for n, p in self.features.items() if p.kind == "numeric"]

    def categorical_features(self) -> list[str]:
        return [n for n, p in self.features.items() if p.kind == "categorical"]

    def outputs(self) -> dict[str, ColumnProfile]:
        """The model's output columns as monitored in windows: the prediction (at once)
        and the label (once joined to its prediction)."""
        out: dict[str, ColumnProfile] = {}
        if self.prediction is not None:
            out[PREDICTION] = self.prediction
        if self.label is not None:
            out[LABEL] = self.label
        return out

    def derived_columns(self) -> dict[str, NumericProfile]:
        """Window columns computed from several features at once: the reconstruction
        error, binned like a numeric feature."""
        mv = self.multivariate
        if mv is None or mv.reconstruction_error is None:
            return {}
        return {RECONSTRUCTION: mv.reconstruction_error}


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin numbers for finite `values` against reference `edges` (see NumericProfile):
    0 below the minimum, len(edges) above the maximum, the maximum itself in the last inner
    bin. Vectorised: one searchsorted for a whole column."""
    idx = np.searchsorted(edges, values, side="right")
    idx[values == edges[-1]] = len(edges) - 1
    return idx


def category_key(value: object) -> str:
    """The one spelling of a category used in profiles and windows alike, so that JSON
    `true`, CSV `true` and Parquet booleans all count as "true", and 3 and 3.0 as "3"."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
