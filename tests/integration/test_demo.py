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
    # episodes: the input drift and the concept drift each open and resolve. The three
    # shifted inputs are one data_drift episode each, whatever the wall clock: the shift
    # covers one whole window and is contiguous (one episode per feature), and ends 3.6
    # windows before the stream, leaving at least the two complete clean windows that
    # resolve it. Escalations depend on how full the first drifted window was when it
    # was first evaluated, so only their features are fixed.
    drift = _alert_lines(out, "data_drift")
    assert sorted(drift["OPEN"]) == sorted(drift["RESOLVED"]) == ["country", "f00", "f03"]
    assert set(drift["ESCALATED"]) <= {"country", "f00", "f03"}
    # the summary counts the same alerts it printed
    shown = 6 + len(drift["ESCALATED"])
    assert f"data_drift ×{shown}," in " ".join(out.split())
    assert "per-window monitor would have sent" in " ".join(out.split())
    assert "counted 24,000 in Redis (exactly once)" in out
    assert "joined 24,000 labels" in " ".join(out.split())
    assert "performance_degradation" in out and "(concept drift)" in out
    # the concept drift's episode (on the headline metric) opens and resolves too; how
    # many times is not pinned down: its windows are judged while labels still join
    concept = _alert_lines(out, "performance_degradation")
    assert concept["OPEN"] and set(concept["OPEN"]) == set(concept["RESOLVED"]) == {"roc_auc"}
    for feature in ("f00", "f03", "country"):
        assert f" {feature} " in out
    # the run's charts stay in a file after the servers are gone
    report = Path(" ".join(out.split()).split("to open in a browser: ")[1].split()[0])
    html = report.read_text()
    assert html.count('class="plotly-graph-div"') >= 7 and "Plotly.newPlot" in html


def _alert_lines(out: str, kind: str) -> dict[str, list[str]]:
    """The features of the alerts of type `kind` the demo printed, by status: `OPEN
    data_drift warning f00 ...`, `RESOLVED data_drift f00 after ...`."""
    found: dict[str, list[str]] = {"OPEN": [], "ESCALATED": [], "RESOLVED": []}
    for line in out.splitlines():
        words = line.split()
        if len(words) > 3 and words[1] == kind:
            feature = words[2] if words[0] == "RESOLVED" else words[3]
            found.setdefault(words[0], []).append(feature)
    return found
