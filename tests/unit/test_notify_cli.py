"""`streamdrift notify`'s mistakes, through the real command line (no servers needed:
each fails before connecting): one line naming the problem and the fix, exit code 2,
no traceback, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

import streamdrift

SRC = Path(streamdrift.__file__).resolve().parents[1]


def one_line(*args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), clean.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, "-m", "streamdrift", "notify", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("streamdrift: error: ") and " — " in line
    return line


def test_mistakes_are_one_line_with_the_fix(tmp_path):
    assert "--routes FILE or --webhook URL" in one_line()
    assert "not both" in one_line("--routes", "r.yaml", "--webhook", "http://127.0.0.1:1/")
    assert "not found" in one_line("--routes", str(tmp_path / "nope.yaml"))
    assert "http://" in one_line("--webhook", "alerts.internal/hook")
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        yaml.safe_dump(
            {
                "sinks": {"p": {"type": "pagerduty", "routing_key": "${PD_KEY_X}"}},
                "routes": [{"sinks": "p"}, {"sinks": "q"}],
            }
        )
    )
    line = one_line("--routes", str(routes))
    assert "PD_KEY_X is not set" in line and "export PD_KEY_X" in line
    line = one_line("--routes", str(routes), PD_KEY_X="pd-secret-key-77")
    assert "names sink 'q'" in line and "define it under `sinks:`" in line
    assert "pd-secret-key-77" not in line


def test_check_prints_the_routes_in_force_without_secrets(tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        yaml.safe_dump(
            {
                "sinks": {
                    "pager": {"type": "pagerduty", "routing_key": "${PD_KEY_X}"},
                    "chat": {"type": "slack", "url": "${SLACK_X}"},
                },
                "routes": [{"match": {"route": "ops"}, "sinks": "pager"}, {"sinks": "chat"}],
            }
        )
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), clean.get("PYTHONPATH")]))
    secrets = {"PD_KEY_X": "pd-secret-key-77", "SLACK_X": "https://hooks.slack.com/T/B/tok-99"}
    res = subprocess.run(
        [sys.executable, "-m", "streamdrift", "notify", "--routes", str(routes), "--check"],
        env={**clean, **secrets},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "pd-secret-key-77" not in res.stdout and "tok-99" not in res.stdout
    lines = res.stdout.splitlines()
    # in the file's order (safe_dump sorts the keys)
    assert lines[1].split()[:2] == ["chat", "slack"]
    assert "https://hooks.slack.com/…" in lines[1]
    assert lines[2].split()[:2] == ["pager", "pagerduty"]
    assert lines[-2:] == ["  1. route=ops → pager", "  2. every alert → chat"]
