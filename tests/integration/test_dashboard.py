"""The dashboard and the report in a real browser, over a Redis a real worker filled.

Every chart is read back from plotly.js in the page (the traces it draws) and compared,
number by number, with what `streamdrift inspect --json` prints for the same model: the
charts show the state, not an approximation of it. Pages must draw without a console
error; the report must draw with the network switched off."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from streamdrift import synthetic
from streamdrift.config import Settings
from streamdrift.feature_report import feature_report
from streamdrift.store import Store
from streamdrift.ui.charts import MODEL_CHARTS
from streamdrift.worker import Worker

from .browser import chart_data, chromium, console_errors, open_page, screenshot, svg_marks
from .conftest import (
    cli,
    env_for,
    forget,
    make_settings,
    produce,
    register_fraud_model,
    register_model,
)

pytestmark = pytest.mark.integration

WINDOW = 600
HOUR = 3600
TOKEN = "correct-horse-battery-staple"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(settings, *args: str, token: str | None = None) -> Iterator[str]:
    """`streamdrift serve` as a user starts it, until the test ends."""
    port = _free_port()
    env = env_for(settings)
    if token:
        env["STREAMDRIFT_UI_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamdrift", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer in 30 s"
            time.sleep(0.1)
        yield base
        assert proc.poll() is None, "serve died during the test"
    finally:
        proc.terminate()
        proc.wait(10)


def _inspect(settings, *args: str) -> dict:
    res = cli(settings, "inspect", *args, "--json")
    assert res.returncode == 0, res.stderr
    return orjson.loads(res.stdout)


@pytest.fixture(scope="module")
def filled(servers, tmp_path_factory) -> tuple[Settings, str]:
    """A binary model whose inputs drift and whose labels turn against it half-way,
    counted and joined by a real worker: every chart has something to show. Filled once
    for the module's browser tests, which only read it."""
    settings = make_settings(servers)
    model_id = f"model-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("dashboard")
    register_fraud_model(settings, model_id, folder, window_seconds=WINDOW)
    start = (time.time() // WINDOW - 7) * WINDOW
    predictions, labels = synthetic.labelled_events(
        model_id,
        12_000,
        start,
        6 * WINDOW,
        drift_at=0.5,
        concept_drift_at=0.5,
        delay_seconds=(30, 300),
        seed=5,
    )
    produce(settings, predictions)
    produce(settings, labels, settings.labels_topic)
    stats = Worker(settings).run(max_seconds=120, install_signals=False, until_messages=24_000)
    assert stats.counted == 12_000
    yield settings, model_id
    forget(Store(settings.redis_url), model_id)


def _by_name(traces: list[dict]) -> dict[str, dict]:
    return {t["name"]: t for t in traces}


def _check_model_charts(traces: dict[str, list[dict]], doc: dict) -> None:
    """Each model chart's numbers against the `inspect --json` document."""
    windows = doc["windows"]
    starts = [w["start"] for w in windows]
    metric = doc["headline_metric"]

    heat, drifted = traces["chart-drift"]
    rows = [*windows[0]["features"], *(f"output: {o}" for o in windows[0]["outputs"])]
    assert heat["y"] == rows and heat["x"] == starts
    for i, row in enumerate(rows):
        section, name = ("outputs", row[8:]) if row.startswith("output: ") else ("features", row)
        assert heat["z"][i] == [w[section][name]["value"] for w in windows], row
    expected = {
        (w["start"], f) for w in windows for f, d in w["features"].items() if d["drifted"]
    } | {
        (w["start"], f"output: {o}")
        for w in windows
        for o, d in w["outputs"].items()
        if d["drifted"]
    }
    assert set(zip(drifted["x"], drifted["y"], strict=True)) == expected
    assert {f for _, f in expected} >= set(synthetic.DRIFTING)

    series = _by_name(traces["chart-metric"])
    assert series[metric]["x"] == starts
    assert series[metric]["y"] == [w["performance"][metric] for w in windows]
    ref = doc["reference_performance"][metric]
    assert series["reference"]["y"] == [ref, ref]
    if not doc["slice"]:
        assert series[f"estimated {metric}"]["y"] == [
            w["estimated_performance"]["metrics"][metric]["value"] for w in windows
        ]
    else:  # a slice: scores are binned for estimation for the whole model only
        assert all(w["estimated_performance"] is None for w in windows)
        assert f"estimated {metric}" not in series
    (coverage,) = traces["chart-coverage"]
    assert coverage["y"] == [w["performance"]["label_coverage"] for w in windows]
    (events,) = traces["chart-events"]
    assert events["x"] == starts and events["y"] == [w["count"] for w in windows]
    (outliers,) = traces["chart-outliers"]
    assert outliers["y"] == [w["outliers"] / w["count"] for w in windows]

    timeline = _by_name(traces["chart-alerts"])
    for severity in ("critical", "warning", "info"):
        mine = [a for a in doc["alerts"] if a["severity"] == severity]
        assert timeline[f"{severity} alerts"]["x"] == [a["window_start"] for a in mine]
    keys = {e["key"] for e in doc["episodes"]}
    drawn = timeline["open episodes"]["y"] + timeline["resolved episodes"]["y"]
    assert {k for k in drawn if k is not None} == keys
    assert doc["slice"] or keys >= {f"data_drift:{f}" for f in synthetic.DRIFTING}


def _check_histogram(trace_list: list[dict], doc: dict) -> None:
    bars = _by_name(trace_list)
    for side in ("window", "reference"):
        assert bars[side]["x"] == doc["bins"]
        assert bars[side]["y"] == doc[f"{side}_shares"]
        assert bars[side]["customdata"] == doc[f"{side}_counts"]


def test_each_page_draws_the_numbers_inspect_prints(filled, tmp_path):
    settings, model = filled
    doc = _inspect(settings, model)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with serving(settings, "--refresh", "0", token=TOKEN) as base, chromium() as d:
        # no token, no page; the token in the URL once becomes a cookie, out of the URL
        d.get(f"{base}/")
        assert "asks for a token" in d.find_element("tag name", "body").text
        d.get_log("browser")  # the 401 is logged by the browser: expected, dropped
        open_page(d, f"{base}/?token={TOKEN}", charts=1)
        assert "token" not in d.current_url
        cookie = d.get_cookie("streamdrift_ui_token")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # models: the row's figures and the traffic chart
        row = d.find_element("css selector", f"tr[data-model='{model}']")
        as_of = float(row.get_attribute("data-as-of"))
        recent = [w for w in doc["windows"] if _epoch(w["start"]) + WINDOW > as_of - HOUR]
        cells = {
            c.get_attribute("data-field"): c.text
            for c in row.find_elements("css selector", "td[data-field]")
        }
        assert int(cells["events_last_hour"].replace(",", "")) == sum(w["count"] for w in recent)
        opened = [e for e in doc["episodes"] if e["status"] == "open"]
        assert int(cells["open_episodes"]) == len(opened) > 0
        metric = doc["headline_metric"]
        labelled = [w for w in doc["windows"] if w["performance"].get("labelled")]
        assert cells["value"] == f"{labelled[-1]['performance'][metric]:.3f}"
        assert cells["reference"] == f"{doc['reference_performance'][metric]:.3f}"
        traffic = _by_name(chart_data(d, "chart-traffic"))[model]
        assert traffic["x"] == [w["start"] for w in doc["windows"]]
        assert traffic["y"] == [w["count"] for w in doc["windows"]]
        assert svg_marks(d, "chart-traffic") > 0
        assert console_errors(d) == []
        screenshot(d, shots / "models.png")

        # one model: six charts, each from the inspect document's numbers
        d.find_element("link text", model).click()
        ids = [div_id for div_id, _ in MODEL_CHARTS]
        open_page(d, d.current_url, charts=len(ids))
        traces = {i: chart_data(d, i) for i in ids}
        assert doc["windows"][0]["estimated_performance"]["metrics"]
        _check_model_charts(traces, doc)
        assert all(svg_marks(d, i) > 0 for i in ids)
        assert console_errors(d) == []
        screenshot(d, shots / "model.png")

        # a slice's page: its windows judged against its own reference, as inspect --slice
        d.find_element("link text", "v=1.0.0").click()
        open_page(d, d.current_url, charts=len(ids))
        version = _inspect(settings, model, "--slice", "v=1.0.0")
        _check_model_charts({i: chart_data(d, i) for i in ids}, version)
        assert console_errors(d) == []

        # one feature in the window it drifted most: the histogram of inspect --feature
        window, feature = max(
            ((w["start"], f) for w in doc["windows"] for f in synthetic.DRIFTING),
            key=lambda wf: next(
                w["features"][wf[1]]["value"] for w in doc["windows"] if w["start"] == wf[0]
            ),
        )
        open_page(d, f"{base}/models/{model}/features/{feature}?window={window}", charts=1)
        detail = _inspect(settings, model, "--feature", feature, "--window", window)
        assert detail["window"]["start"] == window and detail["statistics"]["drifted"]
        _check_histogram(chart_data(d, "chart-histogram"), detail)
        assert svg_marks(d, "chart-histogram") == 2 * len(detail["bins"])
        assert "drifted" in d.find_element("css selector", "main").text
        assert console_errors(d) == []
        screenshot(d, shots / "feature.png")
    assert {p.name for p in shots.iterdir()} == {"models.png", "model.png", "feature.png"}


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_the_report_is_one_file_that_draws_offline(filled, tmp_path):
    settings, model = filled
    html, data = tmp_path / "report.html", tmp_path / "report.json"
    res = cli(settings, "report", model, "--html", str(html), "--json", str(data))
    assert res.returncode == 0, res.stderr
    docs = orjson.loads(data.read_bytes())
    assert docs["model"] == _inspect(settings, model)
    drifted = {
        f for w in docs["model"]["windows"] for f, d in w["features"].items() if d["drifted"]
    }
    assert {f["feature"] for f in docs["features"]} == drifted
    store = Store(settings.redis_url)  # `inspect --feature`'s document, in-process this time
    for f in docs["features"]:
        assert f == feature_report(store, model, f["feature"], _epoch(f["window"]["start"]))

    with chromium() as d:
        d.set_network_conditions(
            offline=True, latency=0, download_throughput=0, upload_throughput=0
        )
        charts = 6 + len(docs["features"])
        open_page(d, html.as_uri(), charts=charts)
        ids = [div_id for div_id, _ in MODEL_CHARTS]
        _check_model_charts({i: chart_data(d, i) for i in ids}, docs["model"])
        for i, f in enumerate(docs["features"]):
            _check_histogram(chart_data(d, f"chart-histogram-{i}"), f)
        fetched = d.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []
        assert console_errors(d) == []
        screenshot(d, tmp_path / "report.png")


def _models(base: str, headers: dict[str, str]) -> list[str]:
    res = httpx.get(f"{base}/api/models", headers=headers, timeout=30)
    assert res.status_code == 200, res.text
    return [r["model_id"] for r in res.json()]


def _listening_address(port: int) -> str:
    """The local address a TCP port is listened on, from the kernel's table."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


def test_read_only_guarded_and_honest_when_redis_is_gone(settings, redis_node, tmp_path):
    node = redis_node()
    mine = settings.model_copy(update={"redis_url": node.url})
    register_model(mine, "credit", synthetic.write_reference(tmp_path / "ref.csv", rows=2000))
    with serving(mine, token=TOKEN) as base:
        assert _listening_address(int(base.rsplit(":", 1)[1])) == "127.0.0.1"
        bearer = {"Authorization": f"Bearer {TOKEN}"}

        refused = httpx.get(f"{base}/api/models")
        assert refused.status_code == 401 and "STREAMDRIFT_UI_TOKEN" in refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert httpx.get(f"{base}/", headers={"Authorization": "Bearer nope"}).status_code == 401
        first = httpx.get(f"{base}/models/credit?token={TOKEN}&windows=5")
        assert first.status_code == 303 and first.headers["Location"] == "/models/credit?windows=5"
        assert "HttpOnly" in first.headers["Set-Cookie"]
        page = httpx.get(f"{base}/", cookies={"streamdrift_ui_token": TOKEN})
        assert page.status_code == 200 and '<meta http-equiv="refresh" content="30">' in page.text
        assert httpx.post(f"{base}/api/models", headers=bearer).status_code == 405

        rows = httpx.get(f"{base}/api/models", headers=bearer).json()
        assert [r["model_id"] for r in rows] == ["credit"] and rows[0]["events_last_hour"] == 0
        unknown = httpx.get(f"{base}/api/models/nope", headers=bearer)
        assert unknown.status_code == 404
        assert "streamdrift register nope" in unknown.json()["fix"]
        no_feature = httpx.get(f"{base}/models/credit/features/zzz", headers=bearer)
        assert no_feature.status_code == 404 and "f00" in no_feature.text
        bad_time = httpx.get(f"{base}/api/models/credit?since=someday", headers=bearer)
        assert bad_time.status_code == 400 and "since 'someday'" in bad_time.json()["error"]
        js = httpx.get(f"{base}/static/plotly.min.js", headers=bearer)
        assert js.status_code == 200 and b"plotly" in js.content[:2000].lower()

        # Redis killed: a named 503, the server stays up; restarted: the same answer
        node.kill()
        down = httpx.get(f"{base}/api/models", headers=bearer, timeout=30)
        assert down.status_code == 503 and "cannot be read" in down.json()["error"]
        assert httpx.get(f"{base}/", headers=bearer, timeout=30).status_code == 503
        node.start()
        assert _models(base, bearer) == ["credit"]

        # Redis frozen: the page gives up after the reply timeout instead of hanging
        node.freeze()
        try:
            began = time.monotonic()
            frozen = httpx.get(f"{base}/api/models", headers=bearer, timeout=60)
            assert frozen.status_code == 503 and time.monotonic() - began < 30
        finally:
            node.thaw()
        assert _models(base, bearer) == ["credit"]
