"""The command line against real servers: user mistakes give one line with the fix and
exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamdrift import synthetic

from .conftest import cli

pytestmark = pytest.mark.integration


def _one_line_error(res: subprocess.CompletedProcess, *pieces: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("streamdrift: error: ")
    for p in pieces:
        assert p in lines[0], lines[0]


def test_register_errors_name_the_problem_and_the_fix(settings, model_id, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    ref = synthetic.write_reference(tmp_path / "ref.csv", rows=500)
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"a": pa.array([None, None], pa.float64()), "b": [1.0, 2.0]}), nulls)
    bad_config = tmp_path / "bad.json"
    bad_config.write_text('{"window_seconds": "hourly"}')

    _one_line_error(
        cli(settings, "register", model_id, "--reference", str(tmp_path / "no.csv")),
        "does not exist",
        "--reference",
    )
    _one_line_error(cli(settings, "register", model_id, "--reference", str(empty)), "is empty")
    _one_line_error(
        cli(settings, "register", model_id, "--reference", str(ref), "--features", "f00,nope"),
        "nope",
        "columns are:",
    )
    _one_line_error(
        cli(
            settings, "register", model_id, "--reference", str(ref), "--prediction-column", "proba"
        ),
        "proba",
    )
    _one_line_error(
        cli(settings, "register", model_id, "--reference", str(nulls), "--features", "a,b"),
        "'a'",
        "no values",
    )
    _one_line_error(
        cli(settings, "register", model_id, "--reference", str(ref), "--config", str(bad_config)),
        "window_seconds",
    )
    _one_line_error(
        cli(settings, "inspect", "never-registered"), "not registered", "streamdrift register"
    )


def test_register_parquet_and_jsonl_and_replace(settings, store, model_id, tmp_path):
    csv = synthetic.write_reference(tmp_path / "ref.csv", rows=2000)
    table = pa.csv.read_csv(csv)
    pq.write_table(table, tmp_path / "ref.parquet")
    (tmp_path / "ref.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in table.to_pylist()))

    first = cli(
        settings,
        "register",
        model_id,
        "--reference",
        str(tmp_path / "ref.parquet"),
        "--prediction-column",
        "score",
        "--label-column",
        "is_fraud",
    )
    assert first.returncode == 0, first.stderr
    assert "registered model" in first.stdout and "20 numeric and 2 categorical" in first.stdout
    second = cli(
        settings,
        "register",
        model_id,
        "--reference",
        str(tmp_path / "ref.jsonl"),
        "--prediction-column",
        "score",
        "--label-column",
        "is_fraud",
    )
    assert second.returncode == 0, second.stderr
    assert "replaced the profile (now revision 2)" in second.stdout
    profile = store.profiles.load(model_id)
    assert profile.revision == 2 and profile.rows == 2000
    assert profile.prediction.kind == "numeric" and profile.label.kind == "categorical"
    assert set(profile.label.categories) == {"0", "1"}
    raw = store.redis.get(f"sd:{{{model_id}}}:profile")
    assert orjson.loads(raw)["features"]["f00"]["kind"] == "numeric"  # readable JSON


def test_unreachable_redis_is_a_one_line_error(settings, tmp_path):
    ref = synthetic.write_reference(tmp_path / "ref.csv", rows=200)
    env = {**os.environ, "STREAMDRIFT_REDIS_URL": "redis://127.0.0.1:1/0"}
    res = subprocess.run(
        [sys.executable, "-m", "streamdrift", "register", "m", "--reference", str(ref)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_line_error(res, "cannot reach Redis", "STREAMDRIFT_REDIS_URL")


def test_alerts_command_reads_the_topic(settings, tmp_path):
    from streamdrift import kafka_io

    p = kafka_io.producer(settings)
    alert = {
        "alert_id": "a" * 32,
        "type": "data_drift",
        "severity": "warning",
        "model_id": "m1",
        "model_version": None,
        "feature": "f00",
        "statistic": "psi",
        "value": 0.5,
        "threshold": 0.2,
        "window_start": "2026-11-22T10:00:00Z",
        "window_end": "2026-11-22T11:00:00Z",
        "sample_size": 1000,
        "reference_size": 5000,
        "message": "m1: feature 'f00' drifted",
        "created_at": "2026-11-22T11:00:01Z",
        "context": {},
    }
    p.produce(settings.alerts_topic, value=orjson.dumps(alert))
    p.produce(settings.alerts_topic, value=orjson.dumps({**alert, "model_id": "m2"}))
    p.flush(10)
    res = cli(settings, "alerts", "--json", "--model", "m1")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert [orjson.loads(x)["model_id"] for x in lines] == ["m1"]
    plain = cli(settings, "alerts")
    assert "m1: feature 'f00' drifted" in plain.stdout and plain.stdout.count("data_drift") == 2


def test_alerts_follow_waits_for_the_topic_and_starts_at_the_end(settings):
    """The alerts topic does not exist yet: `alerts --follow` says it waits, then shows
    what arrives after it started (not what was there before), in aligned columns."""
    import time

    from streamdrift import kafka_io
    from streamdrift.config import Settings

    from .conftest import env_for

    topic = f"{settings.alerts_topic}-later"
    env = {**env_for(settings), "STREAMDRIFT_ALERTS_TOPIC": topic}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdrift", "alerts", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert "waiting for topic" in proc.stderr.readline()
        later = Settings(**{**settings.model_dump(), "alerts_topic": topic})
        p = kafka_io.producer(later)
        base = {
            "alert_id": "b" * 32, "type": "data_drift", "severity": "warning", "model_id": "m",
            "model_version": None, "feature": "f", "statistic": "psi", "value": 0.5,
            "threshold": 0.2, "window_start": "2026-11-22T10:00:00Z",
            "window_end": "2026-11-22T11:00:00Z", "sample_size": 1, "reference_size": 1,
            "created_at": "2026-11-22T11:00:01Z", "context": {},
        }  # fmt: skip
        p.produce(topic, value=orjson.dumps({**base, "message": "before"}))
        p.flush(10)
        time.sleep(4)  # the follower finds the topic (it looks every second), at its end
        p.produce(topic, value=orjson.dumps({**base, "message": "first after"}))
        p.produce(
            topic,
            value=orjson.dumps(
                {**base, "type": "volume", "severity": "critical", "message": "second after"}
            ),
        )
        p.flush(10)
        lines = [proc.stdout.readline(), proc.stdout.readline()]
    finally:
        proc.terminate()
        proc.wait(10)
    assert [line.rstrip("\n").rsplit(" ", 2)[-2:] for line in lines] == [
        ["first", "after"],
        ["second", "after"],
    ]
    assert lines[0].index("first after") == lines[1].index("second after")  # aligned


def test_a_broker_out_of_reach_is_one_line_naming_the_address_and_its_variable(settings):
    from .conftest import env_for

    env = {**env_for(settings), "STREAMDRIFT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    res = subprocess.run(
        [sys.executable, "-m", "streamdrift", "alerts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_line_error(res, "cannot reach Kafka at 127.0.0.1:1", "STREAMDRIFT_KAFKA_BOOTSTRAP")


def test_register_says_what_it_understood(settings, model_id, tmp_path):
    ref = synthetic.write_reference(tmp_path / "ref.csv", rows=2000)
    res = cli(
        settings,
        "register",
        model_id,
        "--reference",
        str(ref),
        "--prediction-column",
        "score",
        "--label-column",
        "is_fraud",
    )
    assert res.returncode == 0, res.stderr
    # 2,000 rows hold two beyond the 0.1 % outlier threshold: said, and nothing else
    (warning,) = res.stderr.splitlines()
    assert warning.startswith("streamdrift: warning: 2,000 reference rows hold about 2 beyond")
    lines = res.stdout.splitlines()
    assert "task binary, positive class '1'" in lines
    assert any(line.startswith("outliers: joint score over ") for line in lines)
    rows = {line.split()[1]: line.split() for line in lines if line.startswith("  ")}
    assert rows["score"][:3] == ["prediction", "score", "numeric"]
    assert rows["is_fraud"][:5] == ["label", "is_fraud", "categorical", "2", "categories"]
    assert rows["f00"][:5] == ["feature", "f00", "numeric", "10", "bins"]
    assert rows["country"][:3] == ["feature", "country", "categorical"]
    assert len(rows) == 2 + 22
    (perf,) = [line for line in lines if line.startswith("reference performance: ")]
    assert perf.startswith("reference performance: roc_auc 0.") and "(headline)" in perf


def test_register_refuses_a_task_the_label_contradicts(settings, model_id, tmp_path):
    ref = synthetic.write_reference(tmp_path / "ref.csv", rows=500)
    _one_line_error(
        cli(settings, "register", model_id, "--reference", str(ref), "--label-column", "score"),
        "--task binary, but label 'score' is a continuous number",
        "use --task regression",
    )
    _one_line_error(
        cli(
            settings,
            "register",
            model_id,
            *("--reference", str(ref), "--task", "regression", "--label-column", "is_fraud"),
        ),
        "--task regression, but label 'is_fraud' has only 2 distinct values (0, 1)",
        "use --task binary",
    )
    _one_line_error(
        cli(
            settings,
            "register",
            model_id,
            *("--reference", str(ref), "--task", "binary", "--label-column", "country"),
        ),
        "--task binary, but label 'country' has 6 classes",
        "use --task multiclass",
    )
    _one_line_error(
        cli(
            settings,
            "register",
            model_id,
            *("--reference", str(ref), "--task", "multiclass", "--label-column", "f03"),
        ),
        "--task multiclass, but label 'f03' is a continuous number",
        "use --task regression",
    )


def test_register_warns_about_features_named_like_outputs(settings, model_id, tmp_path):
    ref = synthetic.write_reference(tmp_path / "ref.csv", rows=500)
    res = cli(settings, "register", model_id, "--reference", str(ref))
    assert res.returncode == 0, res.stderr
    small, *warnings = res.stderr.strip().splitlines()
    assert len(warnings) == 2, res.stderr
    assert small.startswith("streamdrift: warning: 500 reference rows hold about 0.5 beyond")
    for name, line in zip(["score", "is_fraud"], warnings, strict=True):
        assert line.startswith(f"streamdrift: warning: column '{name}' is taken as a feature")
        assert "--label-column or --prediction-column" in line
    assert "reference performance: none (give --prediction-column and --label-column)" in (
        res.stdout
    )
    # named as features on purpose: no warning about them (the small reference's stays)
    chosen = cli(settings, "register", model_id, "--reference", str(ref), "--features", "score,f00")
    assert chosen.returncode == 0, chosen.stderr
    (only,) = chosen.stderr.splitlines()
    assert only.startswith("streamdrift: warning: 500 reference rows hold about 0.5 beyond")
