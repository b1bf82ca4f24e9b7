"""`streamdrift send`: a table of predictions (CSV, Parquet, JSON lines) as prediction
events, and its label column as label events, through the Python SDK: the shortest way
from one's own data to what a worker counts and alerts on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from streamdrift.client import Monitor
from streamdrift.client.validation import InvalidEvent
from streamdrift.errors import ReferenceFileError, StreamdriftError
from streamdrift.reference import NON_FEATURE_COLUMNS, read_table


@dataclass(frozen=True, slots=True)
class Sent:
    predictions: int
    labels: int
    undelivered: int
    seconds: float


def send_table(
    path: Path,
    *,
    bootstrap: str,
    model_id: str,
    prediction_column: str,
    label_column: str | None = None,
    id_column: str | None = None,
    time_column: str | None = None,
    version: str | None = None,
    predictions_topic: str = "predictions",
    labels_topic: str = "labels",
    extra: dict[str, str] | None = None,
) -> Sent:
    """Every row a prediction (its other columns the features; ids `<file>-<row>` unless
    `id_column`; times now unless `time_column`), its label too when `label_column`."""
    table = read_table(path)
    names = set(table.column_names)
    for option, column in (
        ("--prediction-column", prediction_column),
        ("--label-column", label_column),
        ("--id-column", id_column),
        ("--time-column", time_column),
    ):
        if column is not None and column not in names:
            raise ReferenceFileError(
                f"{option} '{column}' is not a column of {path.name}",
                f"columns are: {', '.join(table.column_names)}",
            )
    skip = NON_FEATURE_COLUMNS | {prediction_column, label_column, id_column, time_column}
    features = [c for c in table.column_names if c not in skip]
    rows = _rows(table, features)
    predictions = table.column(prediction_column).to_pylist()
    labels = table.column(label_column).to_pylist() if label_column else None
    ids = (
        [str(v) for v in table.column(id_column).to_pylist()]
        if id_column
        else [f"{path.stem}-{i}" for i in range(table.num_rows)]
    )
    times = table.column(time_column).to_pylist() if time_column else None
    start = time.monotonic()
    now = time.time()
    sent_labels = 0
    monitor = Monitor(
        bootstrap=bootstrap,
        model_id=model_id,
        version=version,
        predictions_topic=predictions_topic,
        labels_topic=labels_topic,
        **(extra or {}),
    )
    with monitor:
        for i, features_row in enumerate(rows):
            ts = times[i] if times is not None else now
            try:
                monitor.log_prediction(ids[i], features_row, predictions[i], timestamp=ts)
                if labels is not None and labels[i] is not None:
                    monitor.log_label(ids[i], labels[i], timestamp=ts)
                    sent_labels += 1
            except InvalidEvent as e:
                monitor.flush(30)
                raise StreamdriftError(
                    f"row {i + 1} of {path.name} is not a valid event: {e} "
                    f"({i:,} rows before it were sent)",
                    "fix the row, then send the rows from it on",
                ) from None
        undelivered = monitor.flush(30)
    return Sent(len(rows), sent_labels, undelivered, time.monotonic() - start)


def _rows(table: pa.Table, features: list[str]) -> list[dict[str, object]]:
    """Each row's features as a dict; NaN (a CSV's empty number) is a missing value."""
    columns = {name: table.column(name).to_pylist() for name in features}
    out = []
    for i in range(table.num_rows):
        row: dict[str, object] = {}
        for name, values in columns.items():
            v = values[i]
            row[name] = None if isinstance(v, float) and v != v else v
        out.append(row)
    return out
