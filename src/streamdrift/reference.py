"""Turn a reference file (training data, a healthy period) into a `ReferenceProfile`.

Reads CSV, Parquet and JSON lines with pyarrow, infers for each column whether it is
numeric or categorical, and summarises it in the mergeable shape windows use.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from streamdrift import correlation, estimation, outliers, reconstruction
from streamdrift.config import CATEGORICAL_STATISTICS, MonitorConfig, check_importance
from streamdrift.errors import ConfigError, ReferenceFileError
from streamdrift.performance import (
    PerformanceSketch,
    class_key,
    performance_metrics,
    score_edges,
)
from streamdrift.profile import (
    CategoricalProfile,
    ColumnProfile,
    MultivariateProfile,
    NumericProfile,
    ReferenceProfile,
    SliceProfile,
    Task,
    bin_index,
    category_key,
)
from streamdrift.slices import OTHER, clean, segment_slice

#: Integer columns with at most this many distinct values are categories (flags, codes),
#: not quantities: binning 0/1 on quantiles says less than counting the two values.
MAX_INTEGER_LEVELS = 10

#: Columns that identify or time an event rather than describe it.
NON_FEATURE_COLUMNS = {"prediction_id", "timestamp", "event_time", "model_id", "model_version"}


#: Column names that usually hold a label or a model's output, not an input: taken as a
#: feature (no --label-column / --prediction-column names them), `register` warns.
OUTPUT_LIKE_NAME = re.compile(r"label|target|y|outcome|is_.+|score|prob.*|pred.*", re.IGNORECASE)


def read_table(path: str | Path) -> pa.Table:
    """Read CSV, Parquet or JSON lines by file extension; one-line errors for bad files."""
    p = Path(path)
    if not p.exists():
        raise ReferenceFileError(f"reference file {p} does not exist", "check the --reference path")
    if not p.is_file():
        raise ReferenceFileError(
            f"reference {p} is not a file", "pass a CSV, Parquet or JSONL file"
        )
    if p.stat().st_size == 0:
        raise ReferenceFileError(f"reference file {p} is empty", "pass a file with reference rows")
    suffix = "".join(s for s in p.suffixes[-2:] if s != ".gz").lower() or p.suffix.lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            table = pq.read_table(p)
        elif suffix.endswith((".jsonl", ".ndjson", ".json")):
            import pyarrow.json as pj

            table = pj.read_json(p)
        elif suffix.endswith((".csv", ".tsv")):
            import pyarrow.csv as pcsv

            parse = pcsv.ParseOptions(delimiter="\t" if suffix.endswith(".tsv") else ",")
            # an empty cell is a missing value in text columns too, as in JSON lines and
            # Parquet (and pandas): not a category ""
            convert = pcsv.ConvertOptions(strings_can_be_null=True)
            table = pcsv.read_csv(p, parse_options=parse, convert_options=convert)
        else:
            raise ReferenceFileError(
                f"reference file {p} has an unknown type '{p.suffix}'",
                "use .csv, .parquet or .jsonl",
            )
    except pa.ArrowInvalid as e:
        first = str(e).splitlines()[0]
        raise ReferenceFileError(f"cannot read {p}: {first}", "check the file's format") from None
    if table.num_rows == 0:
        raise ReferenceFileError(f"reference file {p} has no rows", "pass a file with rows")
    return table


def _is_numeric(col: pa.ChunkedArray) -> bool:
    t = col.type
    if pa.types.is_floating(t):
        return True
    if pa.types.is_integer(t):
        return pc.count_distinct(col).as_py() > MAX_INTEGER_LEVELS
    return False


def _usable(col: pa.ChunkedArray) -> bool:
    t = col.type
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_dictionary(t)
    )


def numeric_profile(values: np.ndarray, missing: int, bins: int) -> NumericProfile:
    """Quantile edges (deduplicated: a column with ties gets fewer bins) and counts."""
    finite = values[np.isfinite(values)]
    missing += int(values.size - finite.size)
    if finite.size == 0:
        raise ValueError("no finite values")
    qs = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1))
    edges = np.unique(qs)
    if edges.size == 1:
        edges = np.repeat(edges, 2)  # a constant: one closed inner bin [c, c]
    counts = np.bincount(bin_index(edges, finite), minlength=edges.size + 1)
    return NumericProfile(
        edges=edges.tolist(),
        counts=counts.tolist(),
        count=int(finite.size),
        missing=missing,
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        min=float(finite.min()),
        max=float(finite.max()),
    )


def categorical_profile(values: list[object], max_categories: int) -> CategoricalProfile:
    present = [category_key(v) for v in values if v is not None]
    counts = Counter(present)
    top = dict(counts.most_common(max_categories))
    return CategoricalProfile(
        categories=top,
        other=len(present) - sum(top.values()),
        count=len(present),
        missing=len(values) - len(present),
        cardinality=len(counts),
    )


def column_profile(table: pa.Table, name: str, config: MonitorConfig, kind: str | None = None):
    col = table.column(name)
    if not _usable(col):
        raise ReferenceFileError(
            f"column '{name}' has type {col.type}, which cannot be monitored",
            "give numbers, strings or booleans, or leave it out of --features",
        )
    if col.null_count == len(col):
        raise ReferenceFileError(
            f"column '{name}' has no values in the reference",
            "fill it or leave it out of --features",
        )
    if kind is None:
        kind = "numeric" if _is_numeric(col) else "categorical"
    if kind == "numeric":
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise ReferenceFileError(
                f"column '{name}' is not numeric ({col.type})", "use a categorical column instead"
            )
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        try:
            return numeric_profile(values, 0, config.numeric_bins)
        except ValueError:
            raise ReferenceFileError(
                f"column '{name}' has no finite values", "fix the column or leave it out"
            ) from None
    return categorical_profile(col.to_pylist(), config.max_categories)


def build_profile(
    model_id: str,
    path: str | Path,
    *,
    task: Task = "binary",
    prediction_column: str | None = None,
    label_column: str | None = None,
    features: list[str] | None = None,
    config: MonitorConfig | None = None,
) -> ReferenceProfile:
    """Profile every feature column (all but the prediction, label and id columns unless
    `features` names them) and the prediction and label columns when given."""
    config = config or MonitorConfig()
    table = read_table(path)
    columns = set(table.column_names)
    for option, col_name in (
        ("--prediction-column", prediction_column),
        ("--label-column", label_column),
    ):
        if col_name is not None and col_name not in columns:
            raise ReferenceFileError(
                f"{option} '{col_name}' is not a column of {Path(path).name}",
                f"columns are: {', '.join(table.column_names)}",
            )
    if features:
        unknown = [f for f in features if f not in columns]
        if unknown:
            raise ReferenceFileError(
                f"feature column(s) {', '.join(unknown)} not in {Path(path).name}",
                f"columns are: {', '.join(table.column_names)}",
            )
        names = list(dict.fromkeys(features))
    else:
        skip = NON_FEATURE_COLUMNS | {prediction_column, label_column}
        skip |= set(config.slices.segment_keys)
        names = [c for c in table.column_names if c not in skip and _usable(table.column(c))]
    if not names:
        raise ReferenceFileError(
            f"{Path(path).name} has no usable feature columns", "name them with --features"
        )
    if label_column:
        check_task(table, task, label_column, config)
    output_kind = "numeric" if task == "regression" else None
    prediction = label = None
    if prediction_column:
        prediction = column_profile(table, prediction_column, config, output_kind)
    if label_column:
        label_kind = "numeric" if task == "regression" else "categorical"
        label = column_profile(table, label_column, config, label_kind)
    positive = negative = None
    if task == "binary" and isinstance(label, CategoricalProfile):
        positive, negative = binary_classes(label)
    columns_profiled = {n: column_profile(table, n, config) for n in names}
    config = check_feature_settings(config, columns_profiled)
    profile = ReferenceProfile(
        model_id=model_id,
        created_at=datetime.now(UTC),
        source=Path(path).name,
        rows=table.num_rows,
        task=task,
        prediction_column=prediction_column,
        label_column=label_column,
        features=columns_profiled,
        prediction=prediction,
        label=label,
        positive_class=positive,
        negative_class=negative,
        config=config,
    )
    numeric = profile.numeric_features()
    if numeric:
        matrix = np.column_stack(
            [table.column(n).cast(pa.float64()).to_numpy(zero_copy_only=False) for n in numeric]
        )
        profile.outliers = outliers.fit(matrix, numeric, config.outlier_rate)
        profile.multivariate = fit_multivariate(matrix, numeric, config)
    if prediction_column and positive and isinstance(prediction, NumericProfile):
        # before any performance is computed: the reference's is counted in these bins too
        profile.score_edges = score_edges(
            table.column(prediction_column).cast(pa.float64()).to_numpy(zero_copy_only=False)
        )
    if prediction_column and label_column:
        profile.reference_performance = reference_performance(
            profile,
            table.column(prediction_column).to_pylist(),
            table.column(label_column).to_pylist(),
        )
        profile.calibration = score_calibration(
            profile,
            table.column(prediction_column).to_pylist(),
            table.column(label_column).to_pylist(),
        )
    profile.segments = segment_profiles(profile, table, Path(path).name)
    return profile


def fit_multivariate(
    matrix: np.ndarray, numeric: list[str], config: MonitorConfig
) -> MultivariateProfile | None:
    """The reference's joint structure (see `MultivariatePolicy`): the reconstruction
    model with its rows' cross-fitted errors binned like a numeric column, and the
    reference correlations of the chosen features; None when neither can be had (fewer
    than two numeric features, or both turned off)."""
    policy = config.multivariate
    x = np.where(np.isfinite(matrix), matrix, np.nan)
    out = MultivariateProfile()
    if policy.reconstruction:
        fitted = reconstruction.fit(x, numeric, policy.explained_variance)
        if fitted is not None:
            out.reconstruction, errors = fitted
            out.reconstruction_error = numeric_profile(errors, 0, config.numeric_bins)
    if policy.correlation:
        names, chosen_by = correlation_features(x, numeric, config)
        columns = [numeric.index(n) for n in names]
        out.correlation = correlation.fit(x[:, columns], names, chosen_by)
    if out.reconstruction is None and out.correlation is None:
        return None
    return out


def correlation_features(
    x: np.ndarray, numeric: list[str], config: MonitorConfig
) -> tuple[list[str], str]:
    """The numeric features whose pairs' correlations are watched, and why these: the
    config's `multivariate.correlation_features`, else the `correlation_top_k` most
    important (feature importance), the rest of the k (or all of them, without
    importance) by their strongest correlation with another feature in the reference,
    since the structure that exists is the structure that can break."""
    policy = config.multivariate
    if policy.correlation_features:
        return list(policy.correlation_features), "config"
    candidates = [j for j, n in enumerate(numeric) if correlation.PAIR_SEPARATOR not in n]
    if len(candidates) <= 2:
        return [numeric[j] for j in candidates], "reference"
    model = correlation.fit(x[:, candidates], [numeric[j] for j in candidates], "reference")
    assert model is not None
    strength = np.zeros(len(candidates))
    i, j = correlation.pair_indices(len(candidates))
    r = np.abs(np.nan_to_num(model.arrays()[2]))
    np.maximum.at(strength, i, r)
    np.maximum.at(strength, j, r)
    importance = config.feature_importance or {}
    order = sorted(
        range(len(candidates)),
        key=lambda q: (-importance.get(numeric[candidates[q]], 0.0), -strength[q], q),
    )[: policy.correlation_top_k]
    names = [numeric[candidates[q]] for q in order]
    by_importance = any(importance.get(n, 0.0) > 0 for n in names)
    return names, "importance" if by_importance else "reference"


def score_calibration(
    profile: ReferenceProfile, predictions: list[object], labels: list[object]
) -> estimation.ScoreCalibration | None:
    """A scored binary model's calibration for performance estimation before labels,
    from the reference rows that have a score and a label (see `estimation.calibrate`)."""
    if not (
        profile.task == "binary"
        and profile.positive_class is not None
        and isinstance(profile.prediction, NumericProfile)
    ):
        return None
    rows = [
        (float(p), class_key(y) == profile.positive_class)  # type: ignore[arg-type]
        for p, y in zip(predictions, labels, strict=True)
        if p is not None and y is not None
    ]
    if not rows:
        return None
    scores, positive = (np.asarray(c) for c in zip(*rows, strict=True))
    return estimation.calibrate(scores, positive, profile.config.decision_threshold)


def segment_profiles(
    profile: ReferenceProfile, table: pa.Table, source: str
) -> dict[str, dict[str, SliceProfile]]:
    """Per declared segment key, the reference of each of its most frequent values (and
    of the rest together, `__other__`), on the model's bins."""
    policy = profile.config.slices
    out: dict[str, dict[str, SliceProfile]] = {}
    # the whole reference's in-sample flags: what slices' flags are scaled by
    whole = _flagged(profile.outliers, table) if profile.outliers and policy.segment_keys else None
    for key in policy.segment_keys:
        if key not in table.column_names:
            raise ReferenceFileError(
                f"segment key '{key}' is not a column of {source}",
                "add the column to the reference (its values name the slices), or leave "
                "the key out of slices.segment_keys",
            )
        values = [
            None if v is None else clean(category_key(v)) for v in table.column(key).to_pylist()
        ]
        top = [v for v, _ in Counter(v for v in values if v is not None).most_common()]
        kept = set(top[: policy.max_segment_values])
        named = np.asarray([v if v in kept else (OTHER if v is not None else "") for v in values])
        slices: dict[str, SliceProfile] = {}
        for value in [*top[: policy.max_segment_values], OTHER]:
            rows = np.flatnonzero(named == value)
            if rows.size:
                slices[segment_slice(key, value)] = slice_profile(profile, table.take(rows), whole)
        out[key] = slices
    return out


def slice_profile(profile: ReferenceProfile, rows: pa.Table, whole: int | None) -> SliceProfile:
    """One slice's reference on the model's bins and categories."""
    features: dict[str, ColumnProfile] = {}
    for name, col in profile.features.items():
        features[name] = _on_model_bins(rows.column(name), col, profile)
    prediction = None
    if profile.prediction_column and profile.prediction is not None:
        prediction = _on_model_bins(
            rows.column(profile.prediction_column), profile.prediction, profile
        )
    performance: dict[str, float] = {}
    if profile.prediction_column and profile.label_column:
        performance = reference_performance(
            profile,
            rows.column(profile.prediction_column).to_pylist(),
            rows.column(profile.label_column).to_pylist(),
        )
    return SliceProfile(
        rows=rows.num_rows,
        features=features,
        prediction=prediction,
        reference_performance=performance,
        outliers=_slice_outliers(profile, rows, whole),
    )


def _flagged(model: outliers.OutlierModel, table: pa.Table) -> int:
    """Rows of `table` the fitted outlier model flags (in-sample)."""
    x = np.column_stack(
        [table.column(n).cast(pa.float64()).to_numpy(zero_copy_only=False) for n in model.features]
    )
    center, scale, precision = model.arrays()
    return int((outliers.score(x, center, scale, precision) > model.threshold).sum())


def _slice_outliers(profile: ReferenceProfile, rows: pa.Table, whole: int | None) -> float | None:
    """How many of a slice's reference rows lie beyond the threshold, on the scale of the
    calibrated rate: its in-sample flags times the model's out-of-sample-to-in-sample
    ratio (the threshold was set on out-of-sample scores, which flag more)."""
    model = profile.outliers
    if model is None or whole is None:
        return None
    mine = _flagged(model, rows)
    if whole == 0:
        return model.expected_rate * rows.num_rows
    return mine * model.expected_rate * profile.rows / whole


def _on_model_bins(
    col: pa.ChunkedArray, model: ColumnProfile, profile: ReferenceProfile
) -> ColumnProfile:
    """A column of a slice's rows summarised like the model's column (same edges, same
    categories), so that slice and model windows compare count for count. A slice with
    no value of the column keeps the model's summary."""
    if isinstance(model, NumericProfile):
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return model
        edges = model.edge_array()
        return NumericProfile(
            edges=model.edges,
            counts=np.bincount(bin_index(edges, finite), minlength=edges.size + 1).tolist(),
            count=int(finite.size),
            missing=int(values.size - finite.size),
            mean=float(finite.mean()),
            std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            min=float(finite.min()),
            max=float(finite.max()),
        )
    present = [category_key(v) for v in col.to_pylist() if v is not None]
    if not present:
        return model
    counts = Counter(present)
    kept = {k: counts.get(k, 0) for k in model.categories}
    return CategoricalProfile(
        categories=kept,
        other=len(present) - sum(kept.values()),
        count=len(present),
        missing=len(col) - len(present),
        cardinality=len(counts),
    )


def check_feature_settings(
    config: MonitorConfig, features: Mapping[str, ColumnProfile]
) -> MonitorConfig:
    """The config's per-feature policies and importances checked against the profiled
    features, importances normalised to sum 1: a name the model does not have, or a
    statistic a categorical feature cannot have (KS, Wasserstein), is a user's error."""
    known = f"the model's features are: {', '.join(features)}"
    unknown = [n for n in config.features if n not in features]
    if unknown:
        raise ConfigError(
            f"monitor config 'features' names unknown feature(s) {', '.join(unknown)}", known
        )
    for name, own in config.features.items():
        kind = features[name].kind
        if own.statistic and kind == "categorical" and own.statistic not in CATEGORICAL_STATISTICS:
            raise ConfigError(
                f"feature '{name}' is categorical: statistic '{own.statistic}' does not apply",
                f"use one of {', '.join(sorted(CATEGORICAL_STATISTICS))} for it",
            )
    declared = config.multivariate.correlation_features or []
    wrong = [n for n in declared if getattr(features.get(n), "kind", None) != "numeric"]
    if wrong:
        numeric = ", ".join(n for n, p in features.items() if p.kind == "numeric") or "none"
        raise ConfigError(
            f"multivariate.correlation_features names {', '.join(wrong)}, "
            "not numeric features of the model",
            f"name numeric features: {numeric}",
        )
    odd = [n for n in declared if correlation.PAIR_SEPARATOR in n]
    if odd:
        raise ConfigError(
            f"multivariate.correlation_features: {', '.join(odd)} holds "
            f"'{correlation.PAIR_SEPARATOR}', which separates the two names of a pair",
            "leave that feature out of correlation_features",
        )
    weights = config.feature_importance
    if weights is None:
        return config
    unknown = [n for n in weights if n not in features]
    if unknown:
        raise ConfigError(
            f"feature importance names unknown feature(s) {', '.join(unknown)}", known
        )
    total = sum(weights.values())
    normalised = {n: w / total for n, w in weights.items()}
    return config.model_copy(update={"feature_importance": normalised})


#: The feature importance found beside a reference file, e.g. train.csv.importance.json.
IMPORTANCE_SUFFIX = ".importance.json"


def importance_sidecar(reference: str | Path) -> Path:
    return Path(f"{reference}{IMPORTANCE_SUFFIX}")


def read_importance(path: str | Path) -> dict[str, float]:
    """A feature importance file: a JSON object, feature -> number >= 0 (any scale)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"feature importance file {p} not found", "pass an existing JSON file")
    fix = 'write a JSON object of feature -> importance, e.g. {"amount": 0.4, "age": 0.1}'
    try:
        doc = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"feature importance file {p} is not valid JSON: {e}", fix) from None
    if not isinstance(doc, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in doc.values()
    ):
        raise ConfigError(f"feature importance file {p} is not an object of numbers", fix)
    try:
        return check_importance({str(k): float(v) for k, v in doc.items()})
    except ValueError as e:
        raise ConfigError(f"feature importance file {p}: {e}", fix) from None


def resolve_importance(
    reference: str | Path, explicit: str | Path | None, config: MonitorConfig
) -> tuple[dict[str, float] | None, str | None]:
    """The feature importance to register, and where it comes from: the file given
    (`register --feature-importance`), else the monitor config's `feature_importance`,
    else `<reference>.importance.json` beside the reference file, else none."""
    if explicit is not None:
        return read_importance(explicit), Path(explicit).name
    if config.feature_importance is not None:
        return config.feature_importance, "the monitor config"
    sidecar = importance_sidecar(reference)
    if sidecar.is_file():
        return read_importance(sidecar), sidecar.name
    return None, None


def binary_classes(label: CategoricalProfile) -> tuple[str | None, str | None]:
    """The positive class of a binary label: "1" or "true" when the labels are 0/1 or
    booleans, else the rarer of two classes (what a score usually predicts)."""
    classes = [class_key(c) for c in label.categories]
    for pos, neg in (("1", "0"), ("true", "false")):
        if set(classes) <= {pos, neg}:
            return pos, neg
    if len(classes) == 2:
        # one sort, so that two equally frequent classes are still two different classes
        rare, common = sorted(label.categories, key=label.categories.__getitem__)
        return class_key(rare), class_key(common)
    return None, None


def reference_performance(
    profile: ReferenceProfile, predictions: list[object], labels: list[object]
) -> dict[str, float]:
    """The model's performance on the reference rows that have both columns: the
    baseline performance-degradation alerts compare each window with."""
    rows = [
        (p, y) for p, y in zip(predictions, labels, strict=True) if p is not None and y is not None
    ]
    if not rows:
        return {}
    preds, actual = [p for p, _ in rows], [y for _, y in rows]
    sketch = pairs_sketch(profile, preds, actual)
    return performance_metrics(
        sketch, profile.task, profile.positive_class, score_edges=profile.score_edges
    )


def pairs_sketch(profile: ReferenceProfile, preds: list[object], actual: list[object]):
    """The performance sketch of (prediction column value, label) pairs."""
    if profile.task == "regression":
        return PerformanceSketch.from_pairs(
            "regression",
            actual,
            score=np.asarray(preds, dtype=np.float64),
            shift=profile.label_shift(),
        )
    if isinstance(profile.prediction, NumericProfile) and profile.positive_class:
        scores = np.asarray(preds, dtype=np.float64)
        classes = [predicted_class(profile, float(s)) for s in scores]
        return PerformanceSketch.from_pairs(
            profile.task,
            actual,
            classes,
            scores,
            profile.positive_class,
            score_edges=profile.score_edges,
        )
    return PerformanceSketch.from_pairs(profile.task, actual, preds)


def predicted_class(profile: ReferenceProfile, score: float) -> str | None:
    """The class a binary score stands for, at the decision threshold."""
    threshold = profile.config.decision_threshold
    return profile.positive_class if score >= threshold else profile.negative_class


def _examples(col: pa.ChunkedArray, n: int = 3) -> str:
    """A few of a column's distinct values, for an error message."""
    values = pc.unique(col.drop_null()).to_pylist()
    try:
        values.sort()
    except TypeError:
        values.sort(key=str)
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else repr(v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")


def check_task(table: pa.Table, task: str, label_column: str, config: MonitorConfig) -> None:
    """Refuse a task the label column contradicts: `binary` with more than two classes or
    a continuous number, `multiclass` with a continuous number, `regression` with two
    values or fewer. A label is continuous when it has more than two distinct numbers,
    some fractional or more of them than a categorical column keeps (`max_categories`)."""
    col = table.column(label_column)
    distinct = pc.count_distinct(col).as_py()
    numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
    fractional = False
    if pa.types.is_floating(col.type):
        values = col.to_numpy(zero_copy_only=False)
        finite = values[np.isfinite(values)]
        fractional = bool((finite != np.round(finite)).any())
    continuous = numeric and distinct > 2 and (fractional or distinct > config.max_categories)
    what = f"label '{label_column}'"
    seen = f"{distinct} distinct value{'s' if distinct != 1 else ''} ({_examples(col)})"
    if task in ("binary", "multiclass") and continuous:
        raise ReferenceFileError(
            f"--task {task}, but {what} is a continuous number: {seen}",
            "use --task regression, or pass the column of classes as --label-column",
        )
    if task == "binary" and distinct > 2:
        raise ReferenceFileError(
            f"--task binary, but {what} has {distinct} classes ({_examples(col)})",
            "use --task multiclass",
        )
    if task == "regression" and distinct <= 2:
        raise ReferenceFileError(
            f"--task regression, but {what} has only {seen}: classes, not a quantity",
            "use --task binary",
        )


def output_like_features(profile: ReferenceProfile) -> list[str]:
    """Features named like a label or a score (label, target, y, outcome, is_*, score,
    prob*, pred*): often the label or the model's output left among the inputs."""
    return [n for n in profile.features if OUTPUT_LIKE_NAME.fullmatch(n)]


def _column_line(role: str, name: str, col: ColumnProfile) -> str:
    if isinstance(col, NumericProfile):
        inner = max(len(col.edges) - 1, 1)
        shape = (
            f"numeric      {inner} bins on [{col.min:.6g}, {col.max:.6g}]"
            f" (+2 outside the reference range)"
        )
    else:
        top = sorted(col.categories.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(k for k, _ in top[:5]) + (", ..." if len(top) > 5 else "")
        other = f", {col.other:,} other" if col.other else ""
        shape = f"categorical  {len(col.categories)} categories ({shown}){other}"
    return f"  {role:<10} {name:<24} {shape}"


def describe(profile: ReferenceProfile) -> list[str]:
    """What registration understood, one line each: per column its role, inferred kind
    and bins or categories; then the reference performance with its headline metric."""
    from streamdrift.monitors import headline_metric

    lines = [
        f"task {profile.task}"
        + (f", positive class '{profile.positive_class}'" if profile.positive_class else "")
    ]
    if profile.prediction is not None and profile.prediction_column:
        lines.append(_column_line("prediction", profile.prediction_column, profile.prediction))
    if profile.label is not None and profile.label_column:
        lines.append(_column_line("label", profile.label_column, profile.label))
    lines += [_column_line("feature", n, c) for n, c in profile.features.items()]
    model = profile.outliers
    if model is not None:
        lines.append(
            f"outliers: joint score over {len(model.features)} numeric features, threshold "
            f"{model.threshold:.4g}, flags {model.expected_rate:.3%} of reference-like events"
            + (f" (configured {model.rate:.3%})" if model.flag_rate is not None else "")
            + (f"; {model.tail_rows:,.0f} reference rows beyond it" if model.tail_rows else "")
        )
    perf = profile.reference_performance
    if perf:
        metric = headline_metric(profile)
        others = [
            f"{m} {v:.4g}"
            for m, v in perf.items()
            if m != metric and isinstance(v, float | int) and m in _SHOWN_METRICS
        ]
        value = perf.get(metric)
        head = f"{metric} {value:.4g}" if isinstance(value, float | int) else f"{metric} n/a"
        lines.append(
            f"reference performance: {head} (headline)"
            + (f"; {', '.join(others)}" if others else "")
        )
    elif profile.prediction_column and profile.label_column:
        lines.append("reference performance: none (no row has both a prediction and a label)")
    else:
        lines.append("reference performance: none (give --prediction-column and --label-column)")
    return lines


_SHOWN_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall", "mae", "rmse", "r2")
