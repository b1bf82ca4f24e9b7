"""Static checks of the deployment files (docker-compose.yml, deploy/).

No Docker engine is needed: the files are parsed and their properties asserted.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
K8S_DIR = REPO_ROOT / "deploy" / "kubernetes"

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
    }
)
KAFKA_PASSTHROUGH_PREFIX = "STREAMDRIFT_KAFKA_"

REQUIRED_TOPICS = ("predictions", "labels", "alerts", "predictions.dlq", "labels.dlq")
STREAMDRIFT_SERVICES = ("worker", "demo-producer")


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
