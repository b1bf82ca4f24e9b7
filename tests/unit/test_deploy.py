"""Static checks of the deployment files (docker-compose.yml, deploy/).

No Docker engine is needed: the files are parsed and their properties asserted.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
K8S_DIR = REPO_ROOT / "deploy" / "kubernetes"
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMETHEUS_FILE = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
GRAFANA_PROVISIONING = GRAFANA_DIR / "provisioning"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "streamdrift.json"
METRICS_PORT = 9400
WORKER_JOB = "streamdrift-worker"
MONITORING_PROFILE = "monitoring"

# What a worker exports on /metrics, by metric type, as registered in
# src/streamdrift/telemetry.py (test_metric_list_matches_telemetry_code keeps
# this in step with the code). Counters are written without `_total`, as
# prometheus_client names their families.
COUNTERS = frozenset(
    {
        "streamdrift_events",
        "streamdrift_bytes",
        "streamdrift_predictions_counted",
        "streamdrift_replayed_events",
        "streamdrift_labels_joined",
        "streamdrift_batches",
        "streamdrift_dead_letters",
        "streamdrift_alerts",
        "streamdrift_fence_conflicts",
        "streamdrift_join_rereads",
        "streamdrift_resyncs",
        "streamdrift_topic_recreated",
    }
)
HISTOGRAMS = frozenset(
    {
        "streamdrift_batch_seconds",
        "streamdrift_apply_seconds",
        "streamdrift_apply_script_seconds",
        "streamdrift_evaluation_seconds",
    }
)
# The health of the models a worker evaluates (src/streamdrift/model_health.py): gauges
# labelled by model, registered in the same registry.
MODEL_GAUGES = frozenset(
    {
        "streamdrift_model_window_start_timestamp_seconds",
        "streamdrift_model_window_seconds",
        "streamdrift_model_window_events",
        "streamdrift_model_feature_drift",
        "streamdrift_model_feature_drifted",
        "streamdrift_model_drifted_features",
        "streamdrift_model_drift_threshold",
        "streamdrift_model_output_drift",
        "streamdrift_model_output_drifted",
        "streamdrift_model_performance",
        "streamdrift_model_performance_reference",
        "streamdrift_model_label_coverage",
        "streamdrift_model_outlier_share",
        "streamdrift_model_outlier_rate",
        "streamdrift_model_open_episodes",
    }
)
GAUGES = (
    frozenset(
        {
            "streamdrift_consumer_lag",
            "streamdrift_last_loop_timestamp_seconds",
            "streamdrift_assigned_partitions",
            "streamdrift_paused",
            "streamdrift_state_lost",
            "streamdrift_batch_limit",
            "streamdrift_join_records_held",
        }
    )
    | MODEL_GAUGES
)
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Series names a PromQL expression may use. `_created` series exist too but
# are not meant for queries.
COUNTER_SERIES = frozenset(f"{c}_total" for c in COUNTERS)
HISTOGRAM_SERIES = frozenset(h + s for h in HISTOGRAMS for s in HISTOGRAM_SUFFIXES)
QUERYABLE_METRICS = COUNTER_SERIES | HISTOGRAM_SERIES | GAUGES
# A whole metric-name token starting with streamdrift_ (the full Prometheus
# name alphabet, so a misspelt `streamdrift_Events_total` is caught too).
METRIC_TOKEN = re.compile(r"(?<![A-Za-z0-9_:])streamdrift_[A-Za-z0-9_:]*")
RATE_CALL = re.compile(r"\b(?:rate|irate|increase)\(\s*$")

# The documented configuration contract. Anything else a deployment sets must
# be a librdkafka pass-through (STREAMDRIFT_KAFKA_<SETTING>).
DOCUMENTED_ENV_VARS = frozenset(
    {
        "STREAMDRIFT_KAFKA_BOOTSTRAP",
        "STREAMDRIFT_REDIS_URL",
        "STREAMDRIFT_PREDICTIONS_TOPIC",
        "STREAMDRIFT_LABELS_TOPIC",
        "STREAMDRIFT_ALERTS_TOPIC",
        "STREAMDRIFT_CONSUMER_GROUP",
        "STREAMDRIFT_METRICS_PORT",
        "STREAMDRIFT_METRICS_MAX_FEATURES",
        "STREAMDRIFT_NOTIFY_GROUP",
        "STREAMDRIFT_NOTIFY_METRICS_PORT",
    }
)
KAFKA_PASSTHROUGH_PREFIX = "STREAMDRIFT_KAFKA_"

REQUIRED_TOPICS = (
    "predictions",
    "labels",
    "alerts",
    "alerts.undelivered",
    "predictions.dlq",
    "labels.dlq",
)
STREAMDRIFT_SERVICES = ("worker", "demo-producer", "notify")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml missing at the repository root"
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict) and svcs
    return svcs


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a map or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str] = {}
        for item in env:
            name, _, value = str(item).partition("=")
            out[name] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command_words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _depends_on(service: dict[str, Any]) -> list[str]:
    deps = service.get("depends_on") or []
    return list(deps.keys()) if isinstance(deps, dict) else list(deps)


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path, doc))
    return docs


# --------------------------------------------------------------- compose: shape


def test_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "redis", "topics", "worker", "demo-producer"):
        assert name in services, f"service {name!r} missing"


def test_no_zookeeper_anywhere(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "zookeeper" not in name.lower()
        assert "zookeeper" not in str(svc.get("image", "")).lower()
        for key in _env(svc):
            assert "ZOOKEEPER" not in key.upper(), f"{name} sets {key}"


def test_kafka_is_official_image_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = _env(kafka)
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert {"broker", "controller"} <= roles
    assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS")
    assert env.get("KAFKA_NODE_ID")
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false"
    # In-network listener on 9092 and a host-facing one advertised on localhost.
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka:9092" in advertised
    assert "localhost:29092" in advertised
    assert "kafka-topics.sh" in " ".join(_command_words(kafka["healthcheck"]["test"]))


def test_redis_image_and_persistence(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    assert "--appendonly" in _command_words(redis.get("command"))
    assert "ping" in _command_words(redis["healthcheck"]["test"])


def test_topics_service_creates_every_topic(services: dict[str, dict[str, Any]]) -> None:
    topics = services["topics"]
    assert str(topics["image"]).startswith("apache/kafka:")
    script = " ".join(
        _command_words(topics.get("entrypoint")) + [str(c) for c in _as_list(topics["command"])]
    )
    assert "kafka-topics.sh" in script
    assert "--create" in script
    assert "--if-not-exists" in script
    # Each topic name must appear as a whole word in the script (so that
    # "predictions" is not satisfied merely by "predictions.dlq").
    for topic in REQUIRED_TOPICS:
        pattern = rf"(?<![\w.]){re.escape(topic)}(?![\w.])"
        assert re.search(pattern, script), f"topic {topic!r} is not created"
    assert _depends_on(topics) == ["kafka"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_depends_on_names_an_existing_service(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        for dep in _depends_on(svc):
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert dep != name


# -------------------------------------------------------------- compose: worker


def test_worker_builds_from_deploy_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    build = services["worker"]["build"]
    assert isinstance(build, dict)
    # The context is the repository root: the Dockerfile copies pyproject.toml and src/.
    assert build["context"] in (".", "./")
    assert build["dockerfile"] == "deploy/Dockerfile"
    assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()


def test_dockerfile_entrypoint_and_install() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM\s+(\$\{PYTHON_IMAGE\}|python:3\.11-slim)", text, re.M)
    assert "python:3.11-slim" in text
    assert re.search(r'^ENTRYPOINT\s+\[\s*"streamdrift"\s*\]\s*$', text, re.M)
    assert re.search(r'^CMD\s+\[\s*"worker"\s*\]\s*$', text, re.M)
    assert re.search(r"^COPY\s+pyproject\.toml\s+README\.md\s+\./\s*$", text, re.M)
    assert re.search(r"^COPY\s+src\s+\./src\s*$", text, re.M)
    assert "pip install --no-cache-dir ." in text
    # The last USER instruction must not be root.
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users, "image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerignore_excludes_local_state() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", ".git", ".streamdrift", ".pytest_cache"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"
    # The build needs these, so they must not be excluded.
    for needed in ("src", "pyproject.toml", "README.md"):
        assert needed not in ignored


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    # A fixed host port would clash as soon as a second replica starts.
    for port in worker.get("ports") or []:
        published = port.get("published") if isinstance(port, dict) else None
        assert isinstance(port, dict) and published is None, f"fixed host port {port!r}"
    assert worker["deploy"]["replicas"] >= 2
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["stop_grace_period"] == "30s"
    assert worker["restart"] == "unless-stopped"


def test_worker_command_and_dependencies(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert _command_words(worker["command"]) == ["worker"]
    deps = worker["depends_on"]
    assert deps["topics"]["condition"] == "service_completed_successfully"
    assert deps["redis"]["condition"] == "service_healthy"


def test_worker_env_points_at_compose_services(services: dict[str, dict[str, Any]]) -> None:
    env = _env(services["worker"])
    bootstrap = [s.strip() for s in env["STREAMDRIFT_KAFKA_BOOTSTRAP"].split(",")]
    assert bootstrap and all(s.split(":")[0] == "kafka" for s in bootstrap)
    # Must be the in-network listener, not the host-facing one.
    assert "kafka:9092" in bootstrap
    assert re.fullmatch(r"redis://redis(:6379)?(/\d+)?", env["STREAMDRIFT_REDIS_URL"])
    assert env["STREAMDRIFT_PREDICTIONS_TOPIC"] == "predictions"
    assert env["STREAMDRIFT_LABELS_TOPIC"] == "labels"
    assert env["STREAMDRIFT_ALERTS_TOPIC"] == "alerts"


def test_demo_producer(services: dict[str, dict[str, Any]]) -> None:
    demo = services["demo-producer"]
    assert demo["build"] == services["worker"]["build"]
    words = _command_words(demo["command"])
    assert words[0] == "produce-demo"
    assert "--register" in words
    assert words[words.index("--model") + 1] == "demo"
    assert "demo" in demo.get("profiles", [])
    assert "worker" in _depends_on(demo)
    assert str(demo["restart"]) == "no"
    assert "container_name" not in demo


def test_compose_env_names_follow_the_contract(services: dict[str, dict[str, Any]]) -> None:
    seen: set[str] = set()
    for name, svc in services.items():
        env = _env(svc)
        for key in env:
            if key in _routes_variables():
                continue  # the user's own secrets and addresses, for the routes file
            if name in STREAMDRIFT_SERVICES or key.startswith("STREAMDRIFT"):
                assert key in DOCUMENTED_ENV_VARS or key.startswith(KAFKA_PASSTHROUGH_PREFIX), (
                    f"{name} sets undocumented variable {key}"
                )
                seen.add(key)
    assert "STREAMDRIFT_KAFKA_BOOTSTRAP" in seen
    assert "STREAMDRIFT_REDIS_URL" in seen


def test_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for svc_name in ("kafka", "redis"):
        mounts = services[svc_name].get("volumes") or []
        sources = {str(m).split(":")[0] for m in mounts}
        assert sources & declared, f"{svc_name} has no named volume"


# ------------------------------------------------------------------ kubernetes


def test_kubernetes_files_parse() -> None:
    names = {p.name for p in K8S_DIR.glob("*.yaml")}
    assert {"worker-deployment.yaml", "configmap.yaml"} <= names
    docs = _k8s_docs()
    assert docs
    for path, doc in docs:
        assert isinstance(doc, dict), path
        assert doc.get("apiVersion") and doc.get("kind"), path


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in _k8s_docs() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_kubernetes_deployment_runs_worker() -> None:
    deployment = _one("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    # Selector must match the pod labels or the API server rejects it.
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    run = _command_words(container.get("command")) + _command_words(container.get("args"))
    # Either the image ENTRYPOINT (streamdrift) plus args [worker], or an
    # explicit command that ends with `streamdrift worker`.
    assert run in (["worker"], ["streamdrift", "worker"]), run
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_kubernetes_deployment_takes_env_from_configmap() -> None:
    configmap = _one("ConfigMap")
    deployment = _one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    refs = [
        src["configMapRef"]["name"] for src in container.get("envFrom", []) if "configMapRef" in src
    ]
    assert configmap["metadata"]["name"] in refs
    for key in configmap["data"]:
        assert key in DOCUMENTED_ENV_VARS or key.startswith(KAFKA_PASSTHROUGH_PREFIX), key
    assert {"STREAMDRIFT_KAFKA_BOOTSTRAP", "STREAMDRIFT_REDIS_URL"} <= set(configmap["data"])
    assert all(isinstance(v, str) for v in configmap["data"].values())


def _metric_names(expr: str) -> list[str]:
    return METRIC_TOKEN.findall(expr)


def _unknown_metrics(expr: str) -> list[str]:
    return [name for name in _metric_names(expr) if name not in QUERYABLE_METRICS]


def _misused_metrics(expr: str) -> list[str]:
    """Counter and histogram series read raw, or gauges passed to rate()/increase()."""
    bad = []
    for match in METRIC_TOKEN.finditer(expr):
        name = match.group()
        in_rate = bool(RATE_CALL.search(expr[: match.start()]))
        if name in COUNTER_SERIES or name in HISTOGRAM_SERIES:
            if not in_rate:
                bad.append(f"{name} outside rate()/increase()")
        elif name in GAUGES and in_rate:
            bad.append(f"gauge {name} inside rate()/increase()")
    return bad


def _check_expr(expr: Any, where: str, need_metric: bool) -> None:
    assert isinstance(expr, str) and expr.strip(), f"{where}: empty expr"
    unknown = _unknown_metrics(expr)
    assert not unknown, f"{where}: metrics not exported by the worker: {unknown}\n{expr}"
    misused = _misused_metrics(expr)
    assert not misused, f"{where}: {misused}\n{expr}"
    if need_metric:
        assert _metric_names(expr), f"{where}: uses no streamdrift metric\n{expr}"
    if "histogram_quantile" in expr:
        assert "_bucket" in expr, f"{where}: histogram_quantile needs a _bucket series"
        assert re.search(r"\bby\s*\([^)]*\ble\b", expr), f"{where}: aggregate keeping `le`"


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, short or long syntax."""
    out = []
    for mount in service.get("volumes") or []:
        if isinstance(mount, dict):
            out.append((str(mount["source"]), str(mount["target"])))
        else:
            source, target = str(mount).split(":")[:2]
            out.append((source, target))
    return out


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository path a bind mount shows at `container_path` in the container."""
    wanted = PurePosixPath(container_path)
    best: tuple[int, Path] | None = None
    for source, target in _mounts(service):
        target_path = PurePosixPath(target)
        if _is_bind(source) and (wanted == target_path or target_path in wanted.parents):
            host = (COMPOSE_FILE.parent / source / wanted.relative_to(target_path)).resolve()
            depth = len(target_path.parts)
            if best is None or depth > best[0]:
                best = (depth, host)
    assert best is not None, f"{container_path} is not bind-mounted from the repository"
    return best[1]


def _flag(words: list[str], name: str) -> str:
    for i, word in enumerate(words):
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
        if word == name:
            return words[i + 1]
    raise AssertionError(f"{name} not given in {words}")


# ------------------------------------------------------------ metric names


def test_metric_list_matches_telemetry_code() -> None:
    from streamdrift.telemetry import WorkerMetrics

    registered: dict[str, str] = {
        family.name: family.type for family in WorkerMetrics().registry.collect()
    }
    expected = (
        {c: "counter" for c in COUNTERS}
        | {h: "histogram" for h in HISTOGRAMS}
        | {g: "gauge" for g in GAUGES}
    )
    assert registered == expected


def test_metric_name_check_catches_mistakes() -> None:
    assert _unknown_metrics("sum(rate(streamdrift_events_total[5m]))") == []
    assert _unknown_metrics("rate(streamdrift_apply_seconds_bucket[5m])") == []
    assert _unknown_metrics("time() - streamdrift_last_loop_timestamp_seconds") == []
    for wrong in (
        "rate(streamdrift_event_total[5m])",  # misspelt
        "rate(streamdrift_events[5m])",  # counter without _total
        "rate(streamdrift_events_created[5m])",
        "streamdrift_consumer_lag_bucket",  # gauges have no buckets
        "streamdrift_assigned_partitions_total",
        "rate(streamdrift_Events_total[5m])",
    ):
        assert _unknown_metrics(wrong), wrong
    assert _misused_metrics("sum(streamdrift_events_total)")
    assert _misused_metrics("rate(streamdrift_consumer_lag[5m])")
    assert not _misused_metrics("increase(streamdrift_alerts_total{type=~'.+'}[1h])")
    assert not _misused_metrics("deriv(streamdrift_consumer_lag[10m])")


# ---------------------------------------------------------------- prometheus


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    assert PROMETHEUS_FILE.is_file()
    data = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _rule_files(config: dict[str, Any]) -> list[Path]:
    # Prometheus resolves rule_files relative to the config file.
    return [PROMETHEUS_FILE.parent / name for name in config.get("rule_files") or []]


def _alert_rules(config: dict[str, Any]) -> list[dict[str, Any]]:
    rules = []
    for path in _rule_files(config):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            rules.extend(group["rules"])
    return rules


def test_prometheus_scrapes_every_worker_replica(
    prometheus_config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    job = jobs[WORKER_JOB]
    interval = job.get(
        "scrape_interval", prometheus_config.get("global", {}).get("scrape_interval")
    )
    assert interval == "15s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # The worker service scales, so its replicas are found through Docker DNS
    # (one A record per container), not listed statically.
    assert "static_configs" not in job
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A"
    assert sd["port"] == METRICS_PORT
    assert sd["names"] == ["worker"]
    assert "worker" in services
    worker = services["worker"]
    assert str(METRICS_PORT) in [str(p) for p in worker.get("expose") or []]
    assert _env(worker)["STREAMDRIFT_METRICS_PORT"] == str(METRICS_PORT)


def test_prometheus_rule_files_parse(prometheus_config: dict[str, Any]) -> None:
    paths = _rule_files(prometheus_config)
    assert paths, "prometheus.yml loads no rule file"
    names: list[str] = []
    for path in paths:
        assert path.is_file(), f"rule file {path} missing"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(doc, dict) and doc.get("groups"), path
        for group in doc["groups"]:
            assert group.get("name"), path
            assert group.get("rules"), f"{path}: group {group['name']} has no rules"
            for rule in group["rules"]:
                assert isinstance(rule.get("alert"), str) and rule["alert"], rule
                assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), rule
                if "for" in rule:
                    assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(rule["for"])), rule
                assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info")
                assert rule.get("annotations", {}).get("summary"), rule["alert"]
                names.append(rule["alert"])
    assert len(names) == len(set(names)), "duplicate alert names"
    assert len(names) >= 4


def test_alert_exprs_use_only_exported_metrics(prometheus_config: dict[str, Any]) -> None:
    used: set[str] = set()
    for rule in _alert_rules(prometheus_config):
        _check_expr(rule["expr"], f"alert {rule['alert']}", need_metric=False)
        used.update(_metric_names(rule["expr"]))
    # The rules watch the worker's liveness, lag, dead letters and Redis latency.
    for metric in (
        "streamdrift_last_loop_timestamp_seconds",
        "streamdrift_consumer_lag",
        "streamdrift_dead_letters_total",
        "streamdrift_apply_seconds_bucket",
    ):
        assert metric in used, f"no alert rule uses {metric}"
    exprs = " ".join(rule["expr"] for rule in _alert_rules(prometheus_config))
    assert f'job="{WORKER_JOB}"' in exprs, "no alert on scrape failures (up == 0)"


def test_apply_latency_rule_needs_applies(prometheus_config: dict[str, Any]) -> None:
    """A p99 over no applies is no news: an idle deployment must not page."""
    rules = {rule["alert"]: rule for rule in _alert_rules(prometheus_config)}
    expr = rules["StreamdriftRedisApplyLatencyHigh"]["expr"]
    assert re.search(r"histogram_quantile\(0\.99,[^\n]*streamdrift_apply_seconds_bucket", expr)
    assert re.search(
        r"\band\s+sum\(rate\(streamdrift_apply_seconds_count\[\w+\]\)\)\s*>\s*0", expr
    ), expr


def test_model_health_rules(prometheus_config: dict[str, Any]) -> None:
    from streamdrift.monitors import ERROR_METRICS

    rules = {rule["alert"]: rule for rule in _alert_rules(prometheus_config)}
    used: set[str] = set()
    for name in (
        "StreamdriftModelBelowReference",
        "StreamdriftModelNoCompleteWindow",
        "StreamdriftModelNotEvaluated",
    ):
        names = _metric_names(rules[name]["expr"])
        assert set(names) <= MODEL_GAUGES, (name, names)
        assert "by (model" in rules[name]["expr"], f"{name}: one alert per model"
        used.update(names)
    assert {
        "streamdrift_model_performance",
        "streamdrift_model_performance_reference",
        "streamdrift_model_window_start_timestamp_seconds",
        "streamdrift_model_window_seconds",
    } <= used
    # "worse" is lower, except for the monitors' error metrics, where it is higher
    below = rules["StreamdriftModelBelowReference"]["expr"]
    for op, comparison in (("!~", "<"), ("=~", ">")):
        (regex,) = re.findall(rf'metric{op}"([^"]+)"', below)
        assert set(regex.split("|")) == ERROR_METRICS
        assert re.search(rf'metric{op}"[^"]+"\}}\)\s*{comparison} on \(model, metric\)', below)


# ------------------------------------------------------------------- grafana


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows, rows excluded."""
    out = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def _datasource_uid() -> str:
    doc = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    return str(ds["uid"])


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "streamdrift-health"
    assert dashboard["title"] == "streamdrift: monitor health"
    assert dashboard["schemaVersion"] == 39
    panels = _panels(dashboard)
    assert len(panels) >= 10
    rows = [p for p in dashboard["panels"] if p.get("type") == "row"]
    ids = [p["id"] for p in rows + panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel.get("title") and panel.get("type") and panel.get("gridPos"), panel
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"


def test_dashboard_queries_use_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    uid = _datasource_uid()
    used: set[str] = set()
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == uid
            where = f"panel {panel['title']!r} target {target.get('refId')}"
            _check_expr(target.get("expr"), where, need_metric=True)
            used.update(_metric_names(target["expr"]))
    # And every metric the worker exports is on the dashboard somewhere.
    shown = {c for c in COUNTERS if f"{c}_total" in used}
    shown |= {h for h in HISTOGRAMS if f"{h}_bucket" in used}
    shown |= GAUGES & used
    assert shown == COUNTERS | HISTOGRAMS | GAUGES, (
        f"not on the dashboard: {sorted((COUNTERS | HISTOGRAMS | GAUGES) - shown)}"
    )


def test_dashboard_has_the_key_panels(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    joined = "\n".join(exprs)
    for histogram in HISTOGRAMS:
        assert re.search(rf"histogram_quantile\(0\.99,[^\n]*{histogram}_bucket", joined), histogram
    assert re.search(r"histogram_quantile\(0\.5,[^\n]*streamdrift_batch_seconds_bucket", joined)
    assert "time() - streamdrift_last_loop_timestamp_seconds" in joined
    assert re.search(r"increase\(streamdrift_alerts_total\[1h\]\)", joined)
    assert re.search(r"by \(topic, partition\) \(streamdrift_consumer_lag\)", joined)
    assert re.search(r"by \(instance\) \(streamdrift_assigned_partitions\)", joined)


def _model_health_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels of the "Model health" row: those below it, up to the next row."""
    top = dashboard["panels"]
    (row,) = [
        i for i, p in enumerate(top) if p.get("type") == "row" and p["title"] == "Model health"
    ]
    nested = top[row].get("panels") or []
    below = []
    for panel in top[row + 1 :]:
        if panel.get("type") == "row":
            break
        below.append(panel)
    return nested + below


def test_dashboard_model_health_row(dashboard: dict[str, Any]) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
    assert variable["type"] == "query" and variable["includeAll"] and variable["multi"]
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    (metric,) = _metric_names(query)
    assert metric in MODEL_GAUGES and query == f"label_values({metric}, model)"
    panels = _model_health_panels(dashboard)
    assert len(panels) >= 8
    used: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            names = _metric_names(target["expr"])
            assert set(names) <= MODEL_GAUGES, (panel["title"], names)
            # every selector of a model gauge follows the template variable
            assert target["expr"].count('{model=~"$model"}') == len(names), target["expr"]
            used.update(names)
    assert used == MODEL_GAUGES, f"not in the row: {sorted(MODEL_GAUGES - used)}"
    titles = " / ".join(p["title"] for p in panels).lower()
    for shown in ("drift per feature", "drifted", "reference", "label coverage", "outlier"):
        assert shown in titles, shown


def test_grafana_provisioning_points_at_the_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    assert _host_path(grafana, "/etc/grafana/provisioning") == GRAFANA_PROVISIONING.resolve()
    doc = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml").read_text(encoding="utf-8")
    )
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert _host_path(grafana, path) == DASHBOARD_FILE.parent.resolve()
    assert DASHBOARD_FILE.is_file()


# ------------------------------------------------------- compose: monitoring


def test_monitoring_services_are_behind_a_profile(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, image in (("prometheus", "prom/prometheus:v"), ("grafana", "grafana/grafana:")):
        svc = services[name]
        assert str(svc["image"]).startswith(image), svc["image"]
        assert MONITORING_PROFILE in svc.get("profiles", []), f"{name} not in the profile"
        mounts = _mounts(svc)
        assert mounts, f"{name} mounts nothing"
        for source, _ in mounts:
            if _is_bind(source):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} missing"
                assert source.startswith("./deploy/"), source
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    assert "worker" in _depends_on(services["prometheus"])
    assert "prometheus" in _depends_on(services["grafana"])
    # Nothing the default `docker compose up` starts may need them.
    for name, svc in services.items():
        if MONITORING_PROFILE not in svc.get("profiles", []):
            assert not {"prometheus", "grafana"} & set(_depends_on(svc)), name


def test_prometheus_service_loads_the_repo_config(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    mounts = [str(m) for m in prometheus["volumes"] if isinstance(m, str)]
    assert any(m.startswith("./deploy/prometheus:") and m.endswith(":ro") for m in mounts), (
        "deploy/prometheus is not mounted read-only"
    )
    # The default config path, or the one passed on the command line, must be
    # the repository's prometheus.yml; its rule files sit next to it.
    words = _command_words(prometheus.get("command"))
    config = _flag(words, "--config.file") if words else "/etc/prometheus/prometheus.yml"
    assert _host_path(prometheus, config) == PROMETHEUS_FILE.resolve()
    ports = [str(p) for p in prometheus.get("ports") or []]
    assert any(p.endswith(":9090") or p == "9090" for p in ports), ports


def test_grafana_service_access(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    env = _env(grafana)
    anonymous = env.get("GF_AUTH_ANONYMOUS_ENABLED", "").lower() == "true"
    assert anonymous or env.get("GF_SECURITY_ADMIN_PASSWORD")
    if anonymous:
        assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer"
    ports = [str(p) for p in grafana.get("ports") or []]
    assert any(p.endswith(":3000") or p == "3000" for p in ports), ports


# -------------------------------------------------- compose: worker health


def _healthcheck_code(worker: dict[str, Any]) -> str:
    test = worker["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", test
    assert test[1] in ("python", "python3"), "the image has python, not curl"
    assert test[2] == "-c"
    return str(test[3])


def test_worker_healthcheck_calls_healthz(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    code = _healthcheck_code(worker)
    assert f"127.0.0.1:{METRICS_PORT}/healthz" in code
    words = " ".join(_command_words(worker["healthcheck"]["test"]))
    assert "curl" not in words and "wget" not in words
    health = worker["healthcheck"]
    assert health.get("start_period"), "no grace for the worker's start-up"


def test_worker_healthcheck_code_runs(services: dict[str, dict[str, Any]]) -> None:
    """Run the healthcheck's python snippet against a real health server."""
    from streamdrift.telemetry import HealthServer, WorkerMetrics

    metrics = WorkerMetrics()
    server = HealthServer(metrics, lambda: (True, "ok"), port=0, host="127.0.0.1")
    assert server.port, "health server did not start"
    code = _healthcheck_code(services["worker"]).replace(f":{METRICS_PORT}/", f":{server.port}/")
    try:
        # Loop never turned: /healthz is 503 and the check must fail.
        stale = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
        assert stale.returncode != 0
        metrics.last_loop.set(time.time())
        fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
        assert fresh.returncode == 0, fresh.stderr.decode()
    finally:
        server.close()


# --------------------------------------------------------- kubernetes: health


def _probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, str) and not port.isdigit():
        (named,) = [p for p in container.get("ports", []) if p.get("name") == port]
        return int(named["containerPort"])
    return int(port)


def test_kubernetes_probes_and_scrape_annotations() -> None:
    deployment = _one("Deployment")
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    liveness = container["livenessProbe"]
    readiness = container["readinessProbe"]
    assert liveness["httpGet"]["path"] == "/healthz"
    assert readiness["httpGet"]["path"] == "/readyz"
    assert _probe_port(container, liveness) == METRICS_PORT
    assert _probe_port(container, readiness) == METRICS_PORT
    assert METRICS_PORT in [p["containerPort"] for p in container["ports"]]
    # /healthz only fails after 60 s without a loop turn; do not restart sooner.
    assert liveness.get("initialDelaySeconds", 0) > 0
    annotations = template["metadata"]["annotations"]
    # Annotation values must be strings, or the API server rejects the object.
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert all(isinstance(v, str) for v in annotations.values())


def test_notify_service_reads_the_shipped_routes(services: dict[str, dict[str, Any]]) -> None:
    """The compose notify service mounts deploy/routes.yaml, and that file is a valid
    routes file (every ${VAR} it names is given to the service)."""
    from streamdrift.notify.routes import load_routes

    notify = services["notify"]
    assert notify["profiles"] == ["notify"]
    assert any("deploy/routes.yaml" in str(v) for v in notify["volumes"])
    env = {k: str(v) for k, v in _env(notify).items()}
    names = sorted(_routes_variables())
    assert names and all(n in env for n in names)
    with pytest.MonkeyPatch.context() as mp:
        for n in names:
            mp.setenv(n, "http://127.0.0.1:9/hook")
        load_routes(REPO_ROOT / "deploy" / "routes.yaml")


def _routes_variables() -> set[str]:
    """The ${VAR}s the shipped routes file reads (comments left out)."""
    text = (REPO_ROOT / "deploy" / "routes.yaml").read_text()
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return set(re.findall(r"\$\{(\w+)\}", "\n".join(lines)))
