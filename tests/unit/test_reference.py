"""build_profile on CSV, TSV, Parquet and JSON lines, checked against numpy and Counter."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamdrift.config import MonitorConfig
from streamdrift.errors import ReferenceFileError
from streamdrift.reference import build_profile, describe, output_like_features, read_table

N = 240


def write(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    """Write rows in the format the file name says; None is an empty cell / null."""
    names = list(rows[0])
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            w.writerow(names)
            for r in rows:
                w.writerow(["" if r[k] is None else r[k] for k in names])
    elif path.suffix in (".jsonl", ".ndjson", ".json"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix in (".parquet", ".pq"):
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    else:
        raise AssertionError(path)
    return path


@pytest.fixture
def rows() -> list[dict]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(N):
        out.append(
            {
                "prediction_id": f"p{i}",
                "amount": None if i % 17 == 0 else float(rng.normal(50.0, 12.0)),
                "age": int(rng.integers(18, 90)),  # many distinct integers: numeric
                "code": None if i % 31 == 0 else int(rng.integers(0, 5)),  # few: categorical
                "country": None if i % 13 == 0 else ["DE", "FR", "US"][int(rng.integers(0, 3))],
                "vip": bool(rng.integers(0, 2)),
                "const": 7.5,
                "score": float(rng.uniform()),
                "label": int(rng.integers(0, 2)),
            }
        )
    return out


def column(rows: list[dict], name: str) -> list:
    return [r[name] for r in rows]


def features_of(profile) -> dict:
    return {k: v.model_dump() for k, v in profile.features.items()}


SUFFIXES = [".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson"]


def test_all_formats_give_the_same_profile(tmp_path, rows):
    profiles = [
        build_profile(
            "m", write(tmp_path / f"ref{s}", rows), prediction_column="score", label_column="label"
        )
        for s in SUFFIXES
    ]
    first = profiles[0]
    assert first.rows == N
    for suffix, p in zip(SUFFIXES[1:], profiles[1:], strict=True):
        assert p.rows == N, suffix
        assert features_of(p) == features_of(first), suffix
        assert p.prediction.model_dump() == first.prediction.model_dump(), suffix
        assert p.label.model_dump() == first.label.model_dump(), suffix
        assert p.source == f"ref{suffix}"


def test_inference_of_kinds(tmp_path, rows):
    p = build_profile(
        "m", write(tmp_path / "ref.csv", rows), prediction_column="score", label_column="label"
    )
    kinds = {k: v.kind for k, v in p.features.items()}
    assert kinds == {
        "amount": "numeric",
        "age": "numeric",
        "code": "categorical",
        "country": "categorical",
        "vip": "categorical",
        "const": "numeric",
    }
    assert p.numeric_features() == ["amount", "age", "const"]
    assert p.categorical_features() == ["code", "country", "vip"]
    assert "prediction_id" not in p.features  # an identifier, not a feature
    assert (p.prediction_column, p.label_column) == ("score", "label")


@pytest.mark.parametrize(("levels", "kind"), [(10, "categorical"), (11, "numeric")])
def test_integer_levels_threshold(tmp_path, levels, kind):
    data = [{"n": i % levels, "x": float(i)} for i in range(100)]
    p = build_profile("m", write(tmp_path / "ref.parquet", data))
    assert p.features["n"].kind == kind


@pytest.mark.parametrize("bins", [4, 10, 20])
@pytest.mark.parametrize("name", ["amount", "age"])
def test_numeric_profile_matches_numpy(tmp_path, rows, name, bins):
    p = build_profile(
        "m", write(tmp_path / "ref.jsonl", rows), config=MonitorConfig(numeric_bins=bins)
    )
    prof = p.features[name]
    raw = column(rows, name)
    values = np.array([v for v in raw if v is not None], dtype=np.float64)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    assert prof.edges == pytest.approx(edges.tolist(), rel=1e-12, abs=0)
    assert len(prof.counts) == len(prof.edges) + 1
    inner, _ = np.histogram(values, bins=np.asarray(prof.edges))
    assert prof.counts == [0, *inner.tolist(), 0]
    assert sum(prof.counts) == prof.count == values.size
    assert prof.missing == sum(v is None for v in raw)
    assert prof.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert prof.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert (prof.min, prof.max) == (values.min(), values.max())


def test_integers_with_ties_get_fewer_bins(tmp_path):
    data = [{"x": v} for v in [1] * 50 + list(range(2, 30))]
    prof = build_profile("m", write(tmp_path / "r.parquet", data)).features["x"]
    values = np.array([d["x"] for d in data], dtype=float)
    assert prof.edges == np.unique(np.quantile(values, np.linspace(0, 1, 11))).tolist()
    assert len(prof.edges) < 11
    assert sum(prof.counts) == len(data)


def test_constant_column(tmp_path, rows):
    prof = build_profile("m", write(tmp_path / "ref.csv", rows)).features["const"]
    assert prof.kind == "numeric"
    assert prof.edges == [7.5, 7.5]
    assert prof.counts == [0, N, 0]
    assert (prof.count, prof.missing, prof.mean, prof.std, prof.min, prof.max) == (
        N,
        0,
        7.5,
        0.0,
        7.5,
        7.5,
    )


def test_single_row(tmp_path):
    prof = build_profile("m", write(tmp_path / "r.csv", [{"x": 2.5}])).features["x"]
    assert (prof.count, prof.mean, prof.std, prof.edges) == (1, 2.5, 0.0, [2.5, 2.5])


def test_categorical_profiles_match_counter(tmp_path, rows):
    p = build_profile("m", write(tmp_path / "ref.csv", rows))
    expected = {
        "country": Counter(v for v in column(rows, "country") if v is not None),
        "code": Counter(str(v) for v in column(rows, "code") if v is not None),
        "vip": Counter("true" if v else "false" for v in column(rows, "vip")),
    }
    for name, counts in expected.items():
        prof = p.features[name]
        missing = sum(v is None for v in column(rows, name))
        assert prof.categories == dict(counts), name
        assert (prof.other, prof.count, prof.missing, prof.cardinality) == (
            0,
            N - missing,
            missing,
            len(counts),
        ), name
    assert p.features["country"].missing > 0  # empty CSV cells are missing, not ""
    assert "" not in p.features["country"].categories


def test_category_cap_keeps_the_most_frequent(tmp_path):
    freq = {"a": 10, "b": 8, "c": 6, "d": 4, "e": 2, "f": 1}
    data = [{"cat": k, "x": 1.0} for k, n in freq.items() for _ in range(n)]
    data += [{"cat": None, "x": 1.0}] * 3
    data = [data[i] for i in np.random.default_rng(0).permutation(len(data))]
    prof = build_profile(
        "m", write(tmp_path / "r.jsonl", data), config=MonitorConfig(max_categories=3)
    ).features["cat"]
    assert prof.categories == {"a": 10, "b": 8, "c": 6}
    assert prof.other == 4 + 2 + 1
    assert (prof.count, prof.missing, prof.cardinality) == (31, 3, 6)


def test_prediction_and_label_columns(tmp_path, rows):
    p = build_profile(
        "m", write(tmp_path / "ref.parquet", rows), prediction_column="score", label_column="label"
    )
    assert "score" not in p.features and "label" not in p.features
    score = np.array(column(rows, "score"))
    assert p.prediction.kind == "numeric"
    assert p.prediction.count == N
    assert p.prediction.mean == pytest.approx(score.mean(), rel=1e-12)
    assert p.prediction.edges == pytest.approx(
        np.unique(np.quantile(score, np.linspace(0, 1, 11))).tolist(), rel=1e-12
    )
    assert p.label.kind == "categorical"
    assert p.label.categories == dict(Counter(str(v) for v in column(rows, "label")))


def test_without_prediction_and_label_they_are_features(tmp_path, rows):
    p = build_profile("m", write(tmp_path / "ref.csv", rows))
    assert p.prediction is None and p.label is None
    assert p.features["score"].kind == "numeric"
    assert p.features["label"].kind == "categorical"


def test_regression_profiles_outputs_as_numbers(tmp_path, rows):
    p = build_profile(
        "m",
        write(tmp_path / "ref.csv", rows),
        task="regression",
        prediction_column="score",
        label_column="code",
    )
    assert p.task == "regression"
    assert p.label.kind == "numeric"  # even with five integer levels
    labels = np.array([c for c in column(rows, "code") if c is not None], dtype=float)
    assert p.label.mean == pytest.approx(labels.mean(), rel=1e-12)
    assert p.label.count == labels.size


def test_features_option_selects_columns_in_order(tmp_path, rows):
    p = build_profile("m", write(tmp_path / "ref.csv", rows), features=["vip", "amount", "vip"])
    assert list(p.features) == ["vip", "amount"]


def test_non_finite_reference_values_are_missing(tmp_path):
    values = [1.0, 2.0, float("inf"), 3.0, None, float("-inf"), 4.0]
    data = [{"x": v, "c": "a"} for v in values]
    finite = np.array([1.0, 2.0, 3.0, 4.0])
    for path in (write(tmp_path / "r.parquet", data), tmp_path / "r.csv"):
        if path.suffix == ".csv":  # as pandas writes them
            path.write_text("x,c\n1.0,a\n2.0,a\ninf,a\n3.0,a\n,a\n-inf,a\n4.0,a\n")
        prof = build_profile("m", path).features["x"]
        assert (prof.count, prof.missing) == (4, 3), path.suffix
        assert (prof.min, prof.max) == (1.0, 4.0)
        assert prof.mean == pytest.approx(finite.mean())
        assert prof.std == pytest.approx(finite.std(ddof=1))
        assert all(np.isfinite(prof.edges))


def test_profile_round_trips_through_json(tmp_path, rows):
    p = build_profile(
        "m", write(tmp_path / "ref.csv", rows), prediction_column="score", label_column="label"
    )
    again = type(p).model_validate_json(p.model_dump_json())
    assert again == p


# ---- errors ---------------------------------------------------------------------------


def problem(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", tmp_path / "nope.csv")
    assert "nope.csv" in problem(e) and "does not exist" in problem(e)


def test_directory(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ReferenceFileError, match="not a file"):
        read_table(tmp_path / "d.csv")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path)
    assert f"empty{suffix}" in problem(e) and "is empty" in problem(e)


def test_header_only_csv(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("amount,country\n")
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path)
    assert "no rows" in problem(e)


def test_unknown_extension(tmp_path):
    path = tmp_path / "ref.xlsx"
    path.write_text("amount\n1\n")
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path)
    assert "unknown type" in problem(e) and ".xlsx" in problem(e)
    assert ".csv" in e.value.fix


def test_unreadable_content(tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text('{"amount": 1}\n{"amount": \n')
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path)
    assert "cannot read" in problem(e) and "ref.jsonl" in problem(e)


def test_unknown_feature_column(tmp_path, rows):
    path = write(tmp_path / "ref.csv", rows)
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path, features=["amount", "colour", "size"])
    assert "colour" in problem(e) and "size" in problem(e) and "ref.csv" in problem(e)
    assert "amount" in e.value.fix  # lists the columns there are


@pytest.mark.parametrize("option", ["prediction_column", "label_column"])
def test_unknown_output_column(tmp_path, rows, option):
    path = write(tmp_path / "ref.csv", rows)
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path, **{option: "proba"})
    flag = "--" + option.replace("_", "-")
    assert f"{flag} 'proba'" in problem(e) and "not a column" in problem(e)


def test_all_null_column(tmp_path):
    schema = pa.schema([("x", pa.float64()), ("empty", pa.float64())])
    data = [{"x": float(i), "empty": None} for i in range(20)]
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", write(tmp_path / "r.parquet", data, schema))
    assert "'empty'" in problem(e) and "no values" in problem(e)


def test_all_null_column_named_in_features_of_csv(tmp_path):
    data = [{"x": float(i), "empty": None} for i in range(20)]
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", write(tmp_path / "r.csv", data), features=["x", "empty"])
    assert "'empty'" in problem(e) and "null" in problem(e)


def test_no_usable_feature_columns(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("prediction_id,timestamp\na,1\nb,2\n")
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path)
    assert "no usable feature columns" in problem(e)


# ---- the task against the label, and what registration understood ---------------------


@pytest.mark.parametrize(
    ("task", "label", "problem", "fix"),
    [
        ("binary", "score", "is a continuous number: 240 distinct values", "--task regression"),
        ("binary", "age", "is a continuous number", "--task regression"),  # 72 whole numbers
        ("binary", "code", "has 5 classes (0, 1, 2, ...)", "--task multiclass"),
        ("binary", "country", "has 3 classes ('DE', 'FR', 'US')", "--task multiclass"),
        ("multiclass", "score", "is a continuous number", "--task regression"),
        ("multiclass", "amount", "is a continuous number", "--task regression"),
        ("regression", "label", "has only 2 distinct values (0, 1)", "--task binary"),
        ("regression", "vip", "has only 2 distinct values (False, True)", "--task binary"),
    ],
)
def test_a_task_the_label_contradicts_is_refused(tmp_path, rows, task, label, problem, fix):
    path = write(tmp_path / "ref.parquet", rows)
    with pytest.raises(ReferenceFileError) as e:
        build_profile("m", path, task=task, label_column=label)
    assert e.value.problem.startswith(f"--task {task}, but label '{label}' ")
    assert problem in e.value.problem
    assert fix in e.value.fix
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("task", "label"),
    [
        ("binary", "label"),
        ("binary", "vip"),
        ("binary", "const"),  # one class: nothing contradicts binary
        ("multiclass", "code"),
        ("multiclass", "country"),
        ("multiclass", "age"),  # 72 whole numbers: more than max_categories (50) keeps
        ("regression", "score"),
        ("regression", "code"),
    ],
)
def test_a_task_the_label_fits_is_taken(tmp_path, rows, task, label):
    path = write(tmp_path / "ref.parquet", rows)
    if (task, label) == ("multiclass", "age"):  # more whole numbers than categories kept
        with pytest.raises(ReferenceFileError, match="continuous"):
            build_profile("m", path, task=task, label_column=label)
        config = MonitorConfig(max_categories=100)
        assert build_profile("m", path, task=task, label_column=label, config=config).task == task
        return
    assert build_profile("m", path, task=task, label_column=label).task == task


def test_output_like_feature_names():
    from streamdrift.reference import OUTPUT_LIKE_NAME

    flagged = [
        "label",
        "Label",
        "target",
        "y",
        "outcome",
        "is_fraud",
        "score",
        "prob",
        "proba",
        "probability",
        "pred",
        "prediction",
        "predicted_class",
    ]
    kept = ["amount", "age", "yield", "credit_score", "is", "island", "y2", "my_label", "this_"]
    assert [n for n in flagged if not OUTPUT_LIKE_NAME.fullmatch(n)] == []
    assert [n for n in kept if OUTPUT_LIKE_NAME.fullmatch(n)] == []


def test_features_named_like_outputs_are_reported(tmp_path, rows):
    path = write(tmp_path / "ref.csv", rows)
    assert output_like_features(build_profile("m", path)) == ["score", "label"]
    named = build_profile("m", path, prediction_column="score", label_column="label")
    assert output_like_features(named) == []


def test_describe_says_kind_bins_categories_and_performance(tmp_path, rows):
    path = write(tmp_path / "ref.csv", rows)
    p = build_profile("m", path, prediction_column="score", label_column="label")
    lines = describe(p)
    assert lines[0] == "task binary, positive class '1'"
    by_name = {line.split()[1]: line for line in lines[1:-2]}
    assert list(by_name) == ["score", "label", *p.features]
    assert lines[-2].startswith("outliers: joint score over ")
    assert by_name["score"].split()[0] == "prediction"
    assert by_name["label"].split()[0] == "label"
    assert "numeric" in by_name["amount"] and "10 bins on [" in by_name["amount"]
    assert "+2 outside the reference range" in by_name["amount"]
    assert "1 bins on [7.5, 7.5]" in by_name["const"]
    code = p.features["code"]
    assert "categorical  5 categories (" in by_name["code"]
    top = max(code.categories, key=code.categories.__getitem__)
    assert f"categories ({top}," in by_name["code"]
    assert "categorical  2 categories" in by_name["vip"]
    auc = p.reference_performance["roc_auc"]
    assert lines[-1].startswith(f"reference performance: roc_auc {auc:.4g} (headline); accuracy ")


def test_describe_without_outputs_says_why_there_is_no_performance(tmp_path, rows):
    lines = describe(build_profile("m", write(tmp_path / "ref.csv", rows)))
    assert lines[-1] == (
        "reference performance: none (give --prediction-column and --label-column)"
    )
    regression = build_profile(
        "m",
        write(tmp_path / "reg.csv", rows),
        task="regression",
        prediction_column="score",
        label_column="age",
    )
    assert describe(regression)[-1].startswith("reference performance: mae ")
