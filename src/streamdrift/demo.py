"""`streamdrift demo`: the whole system on one machine.

Starts the embedded broker and Redis unless both are configured, registers a demo model,
runs two real worker processes (one consumer group), produces a stream whose inputs
drift half-way, prints alerts as they arrive, then a summary, and stops everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamdrift import embedded, kafka_io, synthetic
from streamdrift.config import MonitorConfig, Settings
from streamdrift.profile import ReferenceProfile
from streamdrift.redaction import mask_url
from streamdrift.reference import build_profile
from streamdrift.store import Store
from streamdrift.topic_reader import read_alerts

DEMO_MODEL = "fraud-demo"


def register_demo_model(store: Store, model: str, workdir: Path, window_seconds: int = 600):
    ref = synthetic.write_reference(workdir / f"{model}-reference.csv")
    config = MonitorConfig.model_validate(
        {
            "window_seconds": window_seconds,
            "evaluation_interval_seconds": 1.0,
            "outlier_alerts_per_window": 1,
            # a replay: a window is complete once nothing was written to it for 2 s
            "episodes": {"complete_after_idle_seconds": 2.0},
        }
    )
    profile = build_profile(
        model, ref, task="binary", prediction_column="score", label_column="is_fraud", config=config
    )
    return store.profiles.save(profile)[0]


def demo_stream(model: str, events: int, span_seconds: float, drift_at: float | None = 0.5):
    """The demo's predictions and labels, event times ending now: inputs f00, f03 and
    country shift from `drift_at` to 0.7 of the stream; from a quarter to half-way the
    labels stop matching the model (concept drift, no input drift); labels come 10 min
    to 3 h after."""
    return synthetic.labelled_events(
        model,
        events,
        time.time() - span_seconds,
        span_seconds,
        drift_at=drift_at,
        drift_until=0.7,
        concept_drift_at=0.25,
        concept_drift_until=0.5,
        delay_seconds=(600, 3 * 3600),
    )


def produce_stream(
    settings: Settings,
    topic: str,
    pairs: list[tuple[bytes, bytes]],
    what: str = "predictions",
    console: Console | None = None,
    rate: float | None = None,
) -> int:
    """Produce (key, value) pairs at about `rate` per second (None: as fast as the broker
    takes them), with a progress bar; returns how many were sent."""
    producer = kafka_io.producer(settings)
    started = time.monotonic()
    with Progress(
        TextColumn(f"[bold]{what:<11}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=console is None,
    ) as progress:
        task = progress.add_task(what, total=len(pairs))
        for i, (key, value) in enumerate(pairs):
            while True:
                try:
                    producer.produce(topic, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
                progress.update(task, completed=i)
                if rate:
                    time.sleep(max(0.0, i / rate - (time.monotonic() - started)))
        producer.flush(60)
        progress.update(task, completed=len(pairs))
    return len(pairs)


def _start_workers(settings: Settings, n: int, workdir: Path) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "STREAMDRIFT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STREAMDRIFT_REDIS_URL": settings.redis_url,
        "STREAMDRIFT_SESSION_TIMEOUT_MS": "6000",
        "STREAMDRIFT_METRICS_PORT": "0",  # two workers on one machine: any free port each
    }
    procs = []
    for i in range(n):
        log = open(workdir / f"worker-{i}.log", "wb")  # noqa: SIM115 - lives with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "streamdrift", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def _incomplete(store: Store, profile: ReferenceProfile) -> bool:
    """Windows that wait to be complete before their episodes can end; the latest
    window is the current one (its end is still ahead), so it is not waited for."""
    starts = store.windows.starts(profile.model_id, profile.revision)
    pending = store.episodes.load(profile.model_id).pending
    return any(s < starts[-1] for s in pending) if starts else False


def _counted(store: Store, model: str) -> int:
    profile = store.profiles.load(model)
    if profile is None:
        return 0
    return sum(
        w.count for w in store.windows.read(profile, store.windows.starts(model, profile.revision))
    )


def run_demo(events: int = 60_000, workers: int = 2, timeout: float = 120.0) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="streamdrift-demo-"))
    configured = (
        "STREAMDRIFT_KAFKA_BOOTSTRAP" in os.environ and "STREAMDRIFT_REDIS_URL" in os.environ
    )
    servers = None
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        if configured:
            settings = Settings()
            console.print(
                f"using Kafka at {mask_url(settings.kafka_bootstrap)}, "
                f"Redis at {mask_url(settings.redis_url)}"
            )
        else:
            servers = embedded.start(workdir)
            settings = Settings(
                kafka_bootstrap=servers.kafka_bootstrap, redis_url=servers.redis_url
            )
            console.print(
                f"started embedded Kafka-protocol broker (tansu) at "
                f"{servers.kafka_bootstrap} and Redis at {servers.redis_url}"
            )
        store = Store(settings.redis_url)
        store.ping()
        kafka_io.ensure_topics(settings)
        profile = register_demo_model(store, DEMO_MODEL, workdir)
        console.print(
            f"registered model [bold]{DEMO_MODEL}[/] from a 20,000-row reference: "
            f"{len(profile.features)} features, windows of "
            f"{profile.config.window_seconds // 60} min"
        )
        procs = _start_workers(settings, workers, workdir)
        console.print(f"started {workers} workers (one consumer group); logs in {workdir}")

        seen: list[dict] = []
        stop = threading.Event()

        def show_alerts() -> None:
            for alert in read_alerts(settings, follow=True, stop=stop):
                seen.append(alert)
                status = alert.get("status", "open")
                colour = {"open": "bold red", "escalated": "bold magenta"}.get(status, "green")
                hint = ""
                if alert["type"] == "performance_degradation":
                    hint = f" ({alert['context']['cause'].replace('_', ' ')})"
                if status == "resolved":
                    lasted = alert["context"].get("duration_seconds", 0) / 60
                    console.print(
                        f"[{colour}]{status.upper():<9}[/] {alert['type']:<23} "
                        f"{alert['feature']:<8} after {lasted:.0f} min "
                        f"({alert['window_start'][11:16]}–{alert['window_end'][11:16]}), "
                        f"peak {alert['statistic']}={alert['value']:.3f}"
                    )
                    continue
                console.print(
                    f"[{colour}]{status.upper():<9}[/] {alert['type']:<23} {alert['severity']:<8} "
                    f"{alert['feature']:<8} {alert['statistic']}={alert['value']:.3f} window "
                    f"{alert['window_start'][11:16]}–{alert['window_end'][11:16]} "
                    f"n={alert['sample_size']}{hint}"
                )

        reader = threading.Thread(target=show_alerts, daemon=True)
        reader.start()
        span = 12 * profile.config.window_seconds
        predictions, labels = demo_stream(DEMO_MODEL, events, span)
        console.print(
            f"producing {events:,} predictions over {span // 3600} h of event time: inputs "
            f"f00, f03 and country shift from half-way to 70 %; from a quarter to half-way "
            f"the outcome stops following the score (concept drift)"
        )
        produce_stream(
            settings, settings.predictions_topic, predictions, "predictions", console, rate=5000
        )
        console.print("ground truth arrives late (10 min to 3 h after each prediction):")
        produce_stream(settings, settings.labels_topic, labels, "labels", console, rate=10000)

        deadline = time.monotonic() + timeout
        while (
            _counted(store, DEMO_MODEL) < events
            or store.counters.join_stats(DEMO_MODEL).get("joined", 0) < events
        ) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                console.print("[red]a worker exited early; see its log[/]")
                return 1
            time.sleep(0.5)
        while (
            store.schedule.dirty(DEMO_MODEL) or _incomplete(store, profile)
        ) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2.0)
        stop.set()
        reader.join(5)
        counted = _counted(store, DEMO_MODEL)
        joined = store.counters.join_stats(DEMO_MODEL).get("joined", 0)
        _summary(console, store, seen, events, counted, joined, time.monotonic() - t0)
        _write_report(console, store, workdir / "demo-report.html")
        return 0 if counted == events and joined == events and seen else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if servers is not None:
            servers.stop()


def _summary(
    console: Console,
    store: Store,
    alerts: list[dict],
    produced: int,
    counted: int,
    joined: int,
    seconds: float,
) -> None:
    from streamdrift.report import model_report

    report = model_report(store, DEMO_MODEL)
    degraded = [
        (e["since"], e["last_seen"])
        for e in report["episodes"]
        if e["type"] == "performance_degradation"
    ]
    table = Table(title=f"{DEMO_MODEL}: windows")
    for col in (
        "window (UTC)",
        "events",
        "drifting inputs (PSI)",
        "labelled",
        "ROC-AUC",
        "accuracy",
    ):
        table.add_column(col)
    for w in report["windows"]:
        drifting = ", ".join(f"{f} {w['features'][f]['psi']:.2f}" for f in w["drifting"])
        perf = w["performance"]
        auc = perf.get("roc_auc")
        mark = " [red]degraded[/]" if any(a <= w["start"] <= b for a, b in degraded) else ""
        table.add_row(
            f"{w['start'][5:16]}",
            f"{w['count']:,}",
            drifting or "-",
            f"{int(perf.get('labelled', 0)):,}",
            (f"{auc:.3f}" if auc is not None else "-") + mark,
            f"{perf['accuracy']:.3f}" if perf.get("accuracy") is not None else "-",
        )
    console.print(table)
    by_type: dict[str, int] = {}
    for a in alerts:
        by_type[a["type"]] = by_type.get(a["type"], 0) + 1
    opened = sum(1 for a in alerts if a.get("status", "open") == "open")
    resolved = sum(1 for a in alerts if a.get("status") == "resolved")
    naive = naive_alert_count(store, DEMO_MODEL)
    console.print(
        f"{opened} episodes opened, {resolved} resolved: {len(alerts)} alerts where a "
        f"per-window monitor would have sent {naive} (one per finding per window, and one "
        f"per outlying event)"
    )
    reference_auc = report["reference_performance"].get("roc_auc")
    console.print(
        f"produced {produced:,} predictions, counted {counted:,} in Redis "
        f"({'exactly once' if produced == counted else 'MISMATCH'}); joined {joined:,} "
        f"labels; reference ROC-AUC {reference_auc:.3f}; {len(alerts)} alerts: "
        + ", ".join(f"{t} ×{n}" for t, n in sorted(by_type.items()))
        + f"; {seconds:.0f} s in all"
    )


def _write_report(console: Console, store: Store, path: Path) -> None:
    """The dashboard's charts of the run in one file: the embedded servers stop with
    the demo, the file stays."""
    from streamdrift.ui.export import report_documents, report_html

    path.write_text(report_html(report_documents(store, DEMO_MODEL)))
    console.print(f"the charts of this run, to open in a browser: {path}")


def naive_alert_count(store: Store, model: str) -> int:
    """What a monitor without episodes would have sent for the same windows: every
    finding of every window, and every recorded outlying event."""
    from streamdrift.conditions import History, window_conditions

    profile = store.profiles.load(model)
    if profile is None:
        return 0
    windows = store.windows.read(profile, store.windows.starts(model, profile.revision))
    total = 0
    for i, w in enumerate(windows):
        found = window_conditions(
            profile, w, History(recent=windows[:i]), time.time(), closed=True, followed=False
        )
        total += len(found.present) + len(w.outlier_examples)
    return total
