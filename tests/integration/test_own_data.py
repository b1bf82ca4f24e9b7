"""A new user's first day, with the commands of the README's "your own model" walk:
`streamdrift up`, `register` on their own reference CSV, `send` their own predictions,
a `worker`, and an alert on the shifted feature; everything counted exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from .test_up import _up

pytestmark = pytest.mark.integration


def _table(rng: np.random.Generator, n: int, shift: float) -> pa.Table:
    age = rng.normal(40 + shift, 10, n)
    income = rng.lognormal(10, 0.5, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    logit = (age - 40) / 10 - (np.log(income) - 10)
    score = 1 / (1 + np.exp(-logit))
    churned = (rng.random(n) < score).astype(int)
    return pa.table({"age": age, "income": income, "plan": plan, "score": score,
                     "churned": churned})  # fmt: skip


def test_own_csv_from_up_to_an_alert(tmp_path):
    rng = np.random.default_rng(2)
    pcsv.write_csv(_table(rng, 5000, 0.0), tmp_path / "train.csv")
    pcsv.write_csv(_table(rng, 3000, 8.0), tmp_path / "today.csv")
    proc, exports = _up(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env.update(exports)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, "-m", "streamdrift", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    try:
        run("register", "churn", "--reference", "train.csv",
            "--prediction-column", "score", "--label-column", "churned")  # fmt: skip
        sent = run("send", "churn", "today.csv", "--prediction-column", "score",
                   "--label-column", "churned")  # fmt: skip
        assert "sent 3,000 predictions and 3,000 labels" in sent.stdout
        run("worker", "--max-seconds", "12", timeout=90)
        alerts = run("alerts", "--json").stdout.splitlines()
        drift = [a for a in alerts if '"type":"data_drift"' in a]
        assert any('"feature":"age"' in a for a in drift), alerts
        report = run("inspect", "churn", "--json").stdout
        assert '"count":3000' in report.replace(" ", "")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
