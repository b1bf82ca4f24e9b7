"""`streamdrift demo` on a machine with nothing configured: embedded servers, two worker
processes, a drifting stream, alerts shown, everything counted once, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_with_embedded_servers():
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env["COLUMNS"] = "120"
    res = subprocess.run(
        [sys.executable, "-m", "streamdrift", "demo", "--events", "24000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "started embedded Kafka-protocol broker" in out
    # episodes: the input drift and the concept drift each open and resolve
    assert out.count("OPEN ") >= 3 and out.count("RESOLVED ") >= 3
    assert "per-window monitor would have sent" in " ".join(out.split())
    assert "counted 24,000 in Redis (exactly once)" in out
    assert "joined 24,000 labels" in " ".join(out.split())
    assert "performance_degradation" in out and "(concept drift)" in out
    for feature in ("f00", "f03", "country"):
        assert f" {feature} " in out
    # the run's charts stay in a file after the servers are gone
    report = Path(" ".join(out.split()).split("to open in a browser: ")[1].split()[0])
    html = report.read_text()
    assert html.count('class="plotly-graph-div"') >= 7 and "Plotly.newPlot" in html
