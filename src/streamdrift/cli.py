"""The `streamdrift` command line. User mistakes print one line with the fix, never a
traceback; exit codes: 0 fine, 1 failed, 2 user error. Nothing it prints shows a password:
settings are printed masked, and so is the traceback of a crash."""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from streamdrift import __version__
from streamdrift.config import MonitorConfig, Settings
from streamdrift.errors import StreamdriftError
from streamdrift.redaction import mask_text

err_console = Console(stderr=True)

#: model ids become the hash tag of every Redis key of the model: no braces, no spaces
MODEL_ID = re.compile(r"[A-Za-z0-9._:/-]{1,256}")


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StreamdriftError as e:
            msg = f"streamdrift: error: {e.problem}"
            if e.fix:
                msg += f" — {e.fix}"
            click.echo(msg, err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)
        except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception:
            # A bug or a library's error: the traceback stays (it is how it gets fixed),
            # but a library may have put a URL or a setting in it.
            click.echo(mask_text(traceback.format_exc()).rstrip("\n"), err=True)
            sys.exit(1)

    return wrapper


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as e:
        first = e.errors()[0]
        name = "STREAMDRIFT_" + str(first["loc"][0]).upper()
        raise StreamdriftError(f"{name}: {first['msg']}", "fix the environment variable") from None


def _store(settings: Settings):
    from streamdrift.store import Store

    store = Store(settings.redis_url)
    store.ping()
    return store


@click.group()
@click.version_option(__version__, prog_name="streamdrift")
def main() -> None:
    """streamdrift: a streaming monitor for machine-learning models on Kafka and Redis."""
    # A command says in one line of its own what is wrong with the broker; librdkafka's
    # log is for the long-running ones (worker, notify: `configure_logging`).
    logging.getLogger("streamdrift.librdkafka").setLevel(logging.CRITICAL)


@main.command()
@click.argument("model")
@click.option(
    "--reference",
    "reference",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV, Parquet or JSON lines of reference rows (e.g. training data).",
)
@click.option(
    "--task",
    type=click.Choice(["binary", "multiclass", "regression"]),
    default="binary",
    show_default=True,
)
@click.option("--prediction-column", help="Column holding the model's output.")
@click.option("--label-column", help="Column holding the ground truth.")
@click.option("--features", help="Comma-separated feature columns (default: all others).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="JSON monitor settings: window_seconds, drift thresholds, bins...",
)
@click.option(
    "--feature-importance",
    "importance_path",
    type=click.Path(path_type=Path),
    help="JSON object feature -> importance (default: the config's, or "
    "<reference>.importance.json beside the reference file).",
)
@click.option(
    "--champion",
    help="The version every other version is compared with on the same labelled ids "
    "(change it later with `streamdrift champion`).",
)
@_user_errors
def register(
    model: str,
    reference: Path,
    task: str,
    prediction_column: str | None,
    label_column: str | None,
    features: str | None,
    config_path: Path | None,
    importance_path: Path | None,
    champion: str | None,
) -> None:
    """Store MODEL's reference profile in Redis (replacing any earlier one)."""
    from streamdrift.reference import (
        build_profile,
        describe,
        output_like_features,
        resolve_importance,
    )

    if not MODEL_ID.fullmatch(model):
        raise StreamdriftError(
            f"model id '{model}' is not allowed",
            "use 1-256 letters, digits and . _ - : / (braces would break Redis Cluster hash tags)",
        )

    config = MonitorConfig.from_file(config_path)
    importance, importance_source = resolve_importance(reference, importance_path, config)
    config = config.model_copy(update={"feature_importance": importance})
    names = [f.strip() for f in features.split(",") if f.strip()] if features else None
    profile = build_profile(
        model,
        reference,
        task=task,  # type: ignore[arg-type]
        prediction_column=prediction_column,
        label_column=label_column,
        features=names,
        config=config,
    )
    settings = _settings()
    store = _store(settings)
    store.check_eviction_policy(settings.allow_eviction)
    champion_name = _version_name(champion, profile) if champion is not None else None
    saved, replaced = store.profiles.save(profile)
    if champion_name is not None:
        store.profiles.set_champion(model, champion_name)
    numeric, categorical = saved.numeric_features(), saved.categorical_features()
    verb = f"replaced the profile (now revision {saved.revision})" if replaced else "registered"
    click.echo(
        f"{verb} model '{model}' from {reference.name}: {saved.rows:,} rows, "
        f"{len(numeric)} numeric and {len(categorical)} categorical features"
        + (f", prediction '{prediction_column}'" if prediction_column else "")
        + (f", label '{label_column}'" if label_column else "")
        + f"; windows of {saved.config.window_seconds}s"
        + f"; drift against {' and '.join(saved.config.drift.baselines)}"
        + (f"; feature importance from {importance_source}" if importance_source else "")
        + (f"; champion {champion}" if champion is not None else "")
    )
    if replaced:
        click.echo(
            "windows counted against the earlier reference stay readable until they "
            "expire; new events count against this one"
        )
    for line in describe(saved):
        click.echo(line)
    if saved.outliers is not None and saved.outliers.warning:
        click.echo(f"streamdrift: warning: {saved.outliers.warning}", err=True)
    if names is None:  # features chosen by elimination: say which look like outputs
        for name in output_like_features(profile):
            click.echo(
                f"streamdrift: warning: column '{name}' is taken as a feature, but its name "
                "reads like a label or a score; if it is one, pass it as --label-column or "
                "--prediction-column (or list the features with --features)",
                err=True,
            )


def _version_name(version: str, profile) -> str:
    """A version as slices and the join name it; comparisons need version slices."""
    from streamdrift.slices import clean

    if not profile.config.slices.max_versions:
        raise StreamdriftError(
            f"model '{profile.model_id}' keeps no version slices (slices.max_versions is 0)",
            "set slices.max_versions above 0 in the monitor config to compare versions",
        )
    return clean(version)


@main.command()
@click.argument("model")
@click.argument("version", required=False)
@click.option("--clear", is_flag=True, help="Compare no versions any more.")
@_user_errors
def champion(model: str, version: str | None, clear: bool) -> None:
    """Show MODEL's champion version, or make VERSION the champion: each other version's
    predictions of the same labelled ids are compared with its (DeLong, McNemar, paired
    t), and a `challenger_comparison` alert says when one is significantly better or
    worse."""
    store = _store(_settings())
    profile = store.profiles.load(model)
    if profile is None:
        raise StreamdriftError(
            f"model '{model}' is not registered", f"run `streamdrift register {model} ...` first"
        )
    if clear:
        store.profiles.set_champion(model, None)
        click.echo(f"model '{model}' has no champion: versions are not compared")
        return
    if version is None:
        current = store.profiles.champion(model)
        click.echo(current if current is not None else f"model '{model}' has no champion")
        return
    name = _version_name(version, profile)
    store.profiles.set_champion(model, name)
    click.echo(
        f"champion of model '{model}' is now {name}; the workers' next batches compare "
        "every other version with it"
    )


@main.command()
@click.option("--max-seconds", type=float, default=None, help="Stop after this long (tests).")
@click.option("--log-level", default="INFO", show_default=True)
@_user_errors
def worker(max_seconds: float | None, log_level: str) -> None:
    """Run one stateless worker until SIGTERM (finish the batch, commit, leave the group)."""
    from streamdrift.telemetry import configure_logging
    from streamdrift.worker import Worker

    settings = _settings()
    configure_logging(log_level, settings.log_format)
    started = time.monotonic()
    store = _store_when_reachable(settings, max_seconds)
    if store is None:
        return
    left = max_seconds - (time.monotonic() - started) if max_seconds else None
    stats = Worker(settings, store=store).run(max_seconds=left)
    logging.getLogger("streamdrift.worker").info(
        "stopped: %d batches, %d messages, %d counted, %d dead letters, %d alerts",
        stats.batches,
        stats.messages,
        stats.counted,
        sum(stats.dead.values()),
        stats.alerts,
    )


def _store_when_reachable(settings: Settings, max_seconds: float | None) -> Any:
    """A Store, once Redis can be reached: a Redis Cluster's client reads the slot map as
    it is made, so a worker started before its cluster waits here (one log line), as it
    waits for a single server inside its loop."""
    from streamdrift.errors import ConnectionProblem
    from streamdrift.faults import Backoff
    from streamdrift.store import Store

    backoff, said = Backoff(), False
    deadline = time.monotonic() + max_seconds if max_seconds else None
    while deadline is None or time.monotonic() < deadline:
        try:
            return Store(settings.redis_url)
        except ConnectionProblem as e:
            if not said:
                logging.getLogger("streamdrift.worker").warning(
                    "waiting for redis: %s", e.problem, extra={"fault": "redis_unreachable"}
                )
                said = True
            time.sleep(backoff.next())
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _peak(episode: dict[str, Any]) -> str:
    """An episode's peak; named by its metric when a performance episode peaked on
    another than the one it is named by."""
    stat = episode.get("peak_statistic")
    named = episode["type"] == "performance_degradation" and stat and stat != episode["feature"]
    return f"{stat} {_fmt(episode['peak'])}" if named else _fmt(episode["peak"])


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def _estimate_cell(estimated: dict | None, metric: str) -> str:
    """A window's estimated metric with its band, `0.812 [0.781, 0.843]`; `!` marks an
    estimate below the reference beyond its band (degraded)."""
    if not estimated or estimated["metrics"].get(metric, {}).get("value") is None:
        return "-"
    e = estimated["metrics"][metric]
    mark = " !" if estimated["degraded"] else ""
    return f"{e['value']:.3f} [{e['lower']:.3f}, {e['upper']:.3f}]{mark}"


@main.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option("--last", type=int, default=None, help="Only the last N windows.")
@click.option("--version", "version", default=None, help="Only model version V's slice.")
@click.option(
    "--slice", "slice_name", default=None, help="Only one slice, e.g. region=eu or v=2.0."
)
@click.option("--since", default=None, help="Windows from this time (RFC 3339, or an age: 6h).")
@click.option("--until", default=None, help="Windows before this time (RFC 3339, or an age).")
@click.option(
    "--feature",
    default=None,
    help="One feature (or prediction, label) bin by bin against its reference.",
)
@click.option(
    "--window", "window", default=None, help="With --feature: the window starting then (latest)."
)
@_user_errors
def inspect(
    model: str,
    as_json: bool,
    last: int | None,
    version: str | None,
    slice_name: str | None,
    since: str | None,
    until: str | None,
    feature: str | None,
    window: str | None,
) -> None:
    """Show MODEL's windows, drift per feature and alerts, from Redis; with --version or
    --slice, one slice's windows judged against its own reference; with --feature, one
    feature's histogram in one window against the reference's, and its statistics."""
    from streamdrift.report import model_report
    from streamdrift.slices import clean, version_slice
    from streamdrift.time_spec import parse_time

    if version is not None and slice_name is not None:
        raise click.UsageError("give --version or --slice, not both")
    if window is not None and feature is None:
        raise click.UsageError("--window goes with --feature")
    if feature is not None:
        _inspect_feature(model, feature, window, as_json)
        return
    if version is not None:
        slice_name = version_slice(clean(version))
    report = model_report(
        _store(_settings()),
        model,
        last,
        slice_name,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
    )
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    console = Console(width=None if sys.stdout.isatty() else 200)  # pipes get whole rows
    console.print(
        (f"[bold]{model}[/] slice {report['slice']}, " if report["slice"] else f"[bold]{model}[/] ")
        + f"revision {report['revision']}, reference "
        f"{report['reference']['source']} ({report['reference']['rows']:,} rows)"
    )
    metric = report["headline_metric"]
    opened = [e for e in report["episodes"] if e["status"] == "open"]
    if opened:
        table = Table(title=f"open episodes ({len(opened)})")
        for col in ("since (UTC)", "type", "feature", "severity", "lasted", "peak", "route"):
            table.add_column(col)
        for e in opened:
            table.add_row(
                e["since"][:16],
                e["type"] or "-",
                e["feature"] or "-",
                e["severity"],
                _duration(e["duration_seconds"]),
                _peak(e),
                e["route"] or "-",
            )
        console.print(table)
    else:
        console.print("no open episodes")
    estimation = report["estimation"]
    estimated = estimation["metric"] if estimation else None
    windows = Table(title="windows")
    for col in (
        "start (UTC)",
        "end",
        "events",
        "invalid",
        "drifting features",
        "labelled",
        "coverage",
        "label delay",
        metric,
        *([f"estimated {estimated}"] if estimated else []),
        "output drift",
        "outliers",
        "quality",
    ):
        windows.add_column(col)
    for w in report["windows"]:
        drifting = ", ".join(f"{f} ({w['features'][f]['psi']:.2f})" for f in w["drifting"]) or "-"
        perf = w["performance"]
        outputs = ", ".join(name for name, o in w["outputs"].items() if o["drifted"]) or "-"
        windows.add_row(
            w["start"][:16],
            w["end"][11:16],
            f"{w['count']:,}",
            str(sum(w["invalid"].values())),
            drifting,
            f"{int(perf.get('labelled', 0)):,}",
            _fmt(perf.get("label_coverage"), 2),
            _duration(perf.get("label_delay_mean_seconds")),
            _fmt(perf.get(metric)),
            *([_estimate_cell(w["estimated_performance"], estimated)] if estimated else []),
            outputs,
            f"{w['outliers']:,}",
            ", ".join(f"{q['kind']} {q['feature']}" for q in w["quality"]) or "-",
        )
    console.print(windows)
    if report["windows"] and report["windows"][-1]["slices"]:
        latest = report["windows"][-1]
        table = Table(title=f"slices side by side ({latest['start'][:16]})")
        for col in ("slice", "events", "labelled", metric, "drifting features"):
            table.add_column(col)
        for name, sl in latest["slices"].items():
            table.add_row(
                name,
                f"{sl['count']:,}",
                f"{sl['labelled']:,}",
                _fmt(sl.get(metric)),
                ", ".join(sl["drifting"]) or "-",
            )
        console.print(table)
    if report["windows"] and report["windows"][-1]["champion_challenger"]:
        latest = report["windows"][-1]
        table = Table(title=f"champion {report['champion']} against challengers")
        for col in ("challenger", "metric", "pairs", "champion", "challenger ", "p", "verdict"):
            table.add_column(col)
        for r in latest["champion_challenger"]:
            table.add_row(
                r["challenger"],
                r["metric"],
                f"{r['pairs']:,}",
                _fmt(r["champion_value"]),
                _fmt(r["challenger_value"]),
                _fmt(r["p_value"], 4),
                r["outcome"],
            )
        console.print(table)
    reference = report["reference_performance"]
    if reference:
        console.print(
            f"reference {metric}: {_fmt(reference.get(metric))} on "
            f"{int(reference.get('labelled', 0)):,} labelled rows; join: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(report["join"].items())) or "nothing yet")
        )
    if estimation:
        ref = estimation["reference"].get(estimated, {})
        console.print(
            f"reference {estimated} estimated from scores {_fmt(ref.get('estimated'))} "
            f"(realized {_fmt(ref.get('realized'))}; scores "
            + (
                "calibrated into probabilities by isotonic regression)"
                if estimation["calibrated"]
                else "taken as probabilities)"
            )
        )
    if report["windows"]:
        latest = report["windows"][-1]
        console.print(
            f"drift of the latest window judged against: {_baselines_line(latest['baselines'])}"
        )
        table = Table(title=f"features in the latest window ({latest['start'][:16]})")
        for col in (
            "feature",
            "kind",
            "n",
            "missing",
            "w",
            "psi",
            "js",
            "hellinger",
            "p-value",
            "judged by",
            "drifted",
        ):
            table.add_column(col)

        def against_threshold(kv: tuple[str, dict[str, Any]]) -> float:
            return -((kv[1]["value"] or 0.0) / kv[1]["threshold"])

        # the verdict's p-value: under Cohen's w the minimum-effect test's
        for name, f in sorted(latest["features"].items(), key=against_threshold):
            table.add_row(
                name,
                f["kind"],
                str(f["sample_size"]),
                str(f["missing"]),
                _fmt(f.get("cohen_w")),
                _fmt(f["psi"]),
                _fmt(f["jensen_shannon"]),
                _fmt(f["hellinger"]),
                _fmt(f["p_value"], 4),
                ", ".join(f["judged_by"]) or "-",
                "YES" if f["drifted"] else ("" if f["enabled"] else "disabled"),
            )
        console.print(table)
        weighted = latest["importance_weighted_drift"]
        if weighted is not None:
            top = ", ".join(f"{c['feature']} {c['contribution']:.2f}" for c in weighted["top"])
            console.print(
                f"importance-weighted drift {weighted['value']:.3f} "
                f"(threshold {weighted['threshold']:g}"
                + (", DRIFTED" if weighted["drifted"] else "")
                + ")"
                + (f": {top}" if top else "")
            )
        _print_depth(console, latest)
        _print_sequential(console, latest)
    if report["dead_letters"]:
        console.print(
            "dead letters: "
            + ", ".join(f"{r} {n}" for r, n in sorted(report["dead_letters"].items()))
        )
    examples = [(w["start"], ex) for w in report["windows"] for ex in w["outlier_examples"]]
    if examples:
        console.print(f"outlying events recorded (latest {min(len(examples), 10)}):")
        for start, ex in examples[-10:]:
            parts = ", ".join(f"{f['feature']} z={f['z']:+.1f}" for f in ex["features"])
            console.print(f"  {start[:16]} {ex['prediction_id']} score {ex['score']:.2f}: {parts}")
    console.print(f"{len(report['alerts'])} alert(s)")
    for a in report["alerts"][-20:]:
        status = a.get("status", "open")
        console.print(f"  {a['created_at'][:19]} {status:<9} {a['severity']:<8} {a['message']}")


def _inspect_feature(model: str, feature: str, window: str | None, as_json: bool) -> None:
    from streamdrift.feature_report import feature_report
    from streamdrift.time_spec import parse_time

    start = parse_time(window, "--window") if window else None
    doc = feature_report(_store(_settings()), model, feature, start)
    if as_json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    w = doc["window"]
    console.print(
        f"[bold]{model}[/] {feature} ({doc['kind']}) in window {w['start'][:16]}–"
        f"{w['end'][11:16]} UTC: {w['count']:,} events, {doc['missing']:,} missing"
    )
    table = Table(title="bins (the reference's)")
    for col in ("bin", "window", "share", "reference", "share "):
        table.add_column(col)
    for i, b in enumerate(doc["bins"]):
        table.add_row(
            b,
            f"{doc['window_counts'][i]:,}",
            f"{doc['window_shares'][i]:.2%}",
            f"{doc['reference_counts'][i]:,}",
            f"{doc['reference_shares'][i]:.2%}",
        )
    console.print(table)
    s = doc["statistics"]
    if s:
        console.print(
            ("DRIFTED" if s["drifted"] else "not drifted")
            + f": {s['statistic']} {_fmt(s['value'], 4)} (threshold {s['threshold']:g}), "
            f"p {_fmt(s['p_value'], 4)}, judged by {', '.join(s['judged_by']) or 'none'}"
        )
        numbers = {k: v for k, v in s.items() if isinstance(v, float | int)}
        numbers = {k: v for k, v in numbers.items() if not isinstance(v, bool)}
        console.print(", ".join(f"{k} {_fmt(v, 4)}" for k, v in numbers.items()))


def _print_sequential(console: Console, window: dict[str, Any]) -> None:
    """The latest window's degradation scan and the CUSUMs that are running (above 0)."""
    for metric, t in (window.get("sequential") or {}).items():
        console.print(
            f"sequential scan, {metric}: {_fmt(t['value'])} on {int(t['after_labelled']):,} "
            f"labels since {t['since'][11:16]} against {_fmt(t['baseline'])} on "
            f"{int(t['labelled']):,} before; log-likelihood ratio {t['statistic']:.1f} "
            f"(alarm at {t['threshold']:.1f})" + (", ALARM" if t["alarm"] else "")
        )
    running = []
    for column, doc in (window.get("cumulative") or {}).items():
        for kind, r in doc.items():
            if r["cusum"] > 0:
                unit = "sd" if kind == "mean" else "share"
                running.append(
                    f"{column} {kind} {r['direction']} {r['cusum']:.3f} over "
                    f"{r['run_windows']} window(s), {r['run_shift']:+.3f} {unit}"
                    + (" RAISED" if r["raised"] else "")
                )
    if running:
        console.print("slow drift (CUSUM): " + "; ".join(running))


def _print_depth(console: Console, window: dict[str, Any]) -> None:
    """The latest window's multivariate drift and its categorical features' entropy
    and distinct counts."""
    mv = window.get("multivariate") or {}
    error, corr = mv.get("reconstruction_error"), mv.get("correlation")
    if error is not None:
        console.print(
            f"reconstruction error: {error['statistic']} {_fmt(error['value'])} "
            f"(threshold {error['threshold']:g}), mean {_fmt(error.get('mean'))}"
            + (", DRIFTED" if error["drifted"] else "")
        )
    if corr is not None:
        changed = "; ".join(
            f"{'|'.join(p['features'])} {p['reference']:+.2f} -> {p['window']:+.2f}"
            for p in corr["changed"]
        )
        console.print(
            f"correlations: {corr['pairs_judged']} pairs judged, "
            + (f"CHANGED: {changed}" if changed else "none changed")
        )
    depth = window.get("categorical_depth") or {}
    if depth:
        table = Table(title="categorical features in the latest window")
        for col in (
            "feature",
            "n",
            "distinct",
            "reference cardinality",
            "entropy (bits)",
            "reference entropy",
            "change",
        ):
            table.add_column(col)
        for name, d in depth.items():
            table.add_row(
                name,
                f"{d['sample_size']:,}",
                "-" if d["distinct"] is None else f"{d['distinct']:,}",
                f"{d['reference_cardinality']:,}",
                _fmt(d["entropy"]),
                _fmt(d["reference_entropy"]),
                "-" if d["entropy_change"] is None else f"{d['entropy_change']:+.3f}",
            )
        console.print(table)


def _baselines_line(baselines: dict[str, dict[str, Any]]) -> str:
    """The chosen baselines of a window and what each pooled, in words."""
    parts = []
    for name, b in baselines.items():
        if "rows" in b:
            parts.append(f"{name} ({b['source']}, {b['rows']:,} rows)")
        elif b["windows"] == 1:
            parts.append(f"{name} (1 window, {b['from'][:16]}, {b['events']:,} events)")
        elif b["windows"]:
            span = f"{b['from'][:16]} to {b['to'][:16]}"
            parts.append(f"{name} ({b['windows']} windows, {span}, {b['events']:,} events)")
        else:
            parts.append(f"{name} (no history yet: unavailable)")
    return "; ".join(parts)


@main.command()
@click.option(
    "--follow",
    is_flag=True,
    help="Keep waiting for new alerts (from now on; waits for the topic if need be).",
)
@click.option(
    "--from-beginning", is_flag=True, help="With --follow: first every alert already sent."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON alert per line.")
@click.option("--model", help="Only this model's alerts.")
@_user_errors
def alerts(follow: bool, from_beginning: bool, as_json: bool, model: str | None) -> None:
    """Print the alerts topic: every alert sent so far, or with --follow the new ones as
    they come."""
    from typing import get_args

    from streamdrift.events import AlertStatus, AlertType, Severity
    from streamdrift.topic_reader import read_alerts

    settings = _settings()

    def waiting(topics: list[str]) -> None:
        click.echo(f"waiting for topic {', '.join(topics)} to exist (no alert yet)", err=True)

    widths = [max(map(len, get_args(t))) for t in (Severity, AlertStatus, AlertType)]
    found = read_alerts(
        settings,
        follow=follow,
        model=model,
        from_beginning=from_beginning or not follow,
        on_wait=waiting,
    )
    for a in found:
        if as_json:
            click.echo(orjson.dumps(a).decode(), nl=True)
            sys.stdout.flush()
            continue
        cells = (a["severity"], a.get("status", "open"), a["type"])
        line = " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        click.echo(f"{a['created_at'][:19]} {line} {a['message']}")
        sys.stdout.flush()


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per reason.")
@click.pass_context
@_user_errors
def dlq(ctx: click.Context, as_json: bool) -> None:
    """Summarize the dead-letter topics: reason, count, models, an example.

    `streamdrift dlq replay` sends dead letters back once their cause is fixed."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from streamdrift.topic_reader import summarize_dead_letters

    groups = summarize_dead_letters(_settings())
    if as_json:
        for g in groups:
            click.echo(orjson.dumps(asdict(g)).decode())
        return
    if not groups:
        click.echo("no dead letters")
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="dead letters")
    for col in ("topic", "reason", "count", "models", "example (source: detail)"):
        table.add_column(col)
    for g in groups:
        models = ", ".join(f"{m} {n:,}" for m, n in sorted(g.models.items()))
        example = f"{g.example['source']}: {g.example['detail']}\n{g.example['value'][:120]}"
        table.add_row(g.topic, g.reason, f"{g.count:,}", models, example)
    console.print(table)


@dlq.command("replay")
@click.option("--reason", help="Only dead letters with this reason (e.g. unregistered_model).")
@click.option("--model", "model", help="Only dead letters of this model.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; produce nothing.")
@_user_errors
def dlq_replay(reason: str | None, model: str | None, dry_run: bool) -> None:
    """Send dead letters back to the topic they came from, each exactly once (running it
    again replays nothing twice). Fix their cause first: register the model, restore
    the profile, deploy the fix."""
    from streamdrift.replay import replay_dead_letters

    settings = _settings()
    report = replay_dead_letters(settings, _store(settings), reason, model, dry_run)
    verb = "would replay" if dry_run else "replayed"
    where = ", ".join(f"{n:,} to {t}" for t, n in sorted(report.by_topic.items()))
    click.echo(
        f"{report.matched:,} dead letter(s) matched: {verb} {report.replayed:,}"
        + (f" ({where})" if where else "")
        + f", {report.already:,} replayed before"
        + (f", {report.truncated:,} truncated (not replayable)" if report.truncated else "")
        + (
            f"; {report.recovered:,} of an interrupted replay found already sent"
            if report.recovered
            else ""
        )
    )


@main.command()
@click.option(
    "--routes",
    "routes_path",
    type=click.Path(path_type=Path),
    help="JSON or YAML file: the sinks, and which alerts go to which.",
)
@click.option("--webhook", help="Send every alert to this URL (instead of --routes).")
@click.option("--group", help="Consumer group [default: STREAMDRIFT_NOTIFY_GROUP].")
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Read the alerts topic from its start, not from the group's committed offsets.",
)
@click.option("--once", is_flag=True, help="Exit once the topic is read to its end and settled.")
@click.option(
    "--idle-exit",
    type=float,
    default=None,
    help="Exit after this many seconds without a new alert, everything settled.",
)
@click.option("--max-seconds", type=float, default=None, help="Stop after this long (tests).")
@click.option("--check", is_flag=True, help="Print the sinks and routes in force; deliver nothing.")
@click.option("--log-level", default="INFO", show_default=True)
@_user_errors
def notify(
    routes_path: Path | None,
    webhook: str | None,
    group: str | None,
    from_beginning: bool,
    once: bool,
    idle_exit: float | None,
    max_seconds: float | None,
    check: bool,
    log_level: str,
) -> None:
    """Deliver alerts to webhooks, Slack, PagerDuty and e-mail, as routes say (at least
    once; SIGTERM: finish what is in hand, commit, leave)."""
    from streamdrift.notify.routes import load_routes, webhook_only

    if (routes_path is None) == (webhook is None):
        raise StreamdriftError(
            "give either --routes FILE or --webhook URL"
            + (", not both" if routes_path is not None else ""),
            "--webhook sends every alert to one URL; a routes file chooses sinks per alert",
        )
    routes = load_routes(routes_path) if routes_path is not None else webhook_only(webhook or "")
    if check:
        from streamdrift.notify.summary import describe_routes

        click.echo(mask_text(describe_routes(routes)))
        return
    from streamdrift.notify.consumer import Notifier
    from streamdrift.telemetry import configure_logging

    settings = _settings()
    configure_logging(log_level, settings.log_format)
    notifier = Notifier(settings, routes, group=group, from_beginning=from_beginning)
    stats = notifier.run(once=once, idle_exit=idle_exit, max_seconds=max_seconds)
    logging.getLogger("streamdrift.notify").info(
        "stopped: %d alerts read, %d deliveries, %d given up (in %s), %d unrouted, %d not alerts",
        stats.alerts,
        stats.delivered,
        stats.gave_up,
        settings.undelivered_topic,
        stats.unrouted,
        stats.invalid,
    )


@main.command()
@click.option("--events", type=int, default=60_000, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@_user_errors
def demo(events: int, workers: int) -> None:
    """Run the whole system on this machine and show the alerts it raises."""
    from streamdrift.demo import run_demo

    sys.exit(run_demo(events=events, workers=workers))


@main.command()
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder Redis keeps its data in across restarts (default: a temporary one, "
    "gone when stopped).",
)
@click.option("--kafka-port", type=int, default=0, help="Broker port (default: any free one).")
@click.option("--redis-port", type=int, default=0, help="Redis port (default: any free one).")
@_user_errors
def up(data: Path | None, kafka_port: int, redis_port: int) -> None:
    """Run a Kafka-protocol broker and a Redis on this machine, in the foreground, for
    trying streamdrift on your own model without Docker; Ctrl-C stops both. The broker
    keeps topics in memory only; with --data, Redis keeps what was counted."""
    import signal
    import tempfile

    from streamdrift import embedded

    workdir = data if data is not None else Path(tempfile.mkdtemp(prefix="streamdrift-up-"))
    servers = embedded.start(
        workdir, kafka_port=kafka_port, redis_port=redis_port, persistent=data is not None
    )
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        click.echo(
            f"broker on {servers.kafka_bootstrap}, Redis on {servers.redis_url} "
            f"(data: {workdir}{'' if data else ', temporary'}); in another shell:"
        )
        click.echo(f"export STREAMDRIFT_KAFKA_BOOTSTRAP={servers.kafka_bootstrap}")
        click.echo(f"export STREAMDRIFT_REDIS_URL={servers.redis_url}")
        click.echo("Ctrl-C stops both.", err=True)
        sys.stdout.flush()
        while not stop:
            dead = [p for p in servers.processes if p.poll() is not None]
            if dead:
                raise StreamdriftError(
                    f"an embedded server exited (code {dead[0].returncode})",
                    f"see tansu.log and redis.log in {workdir}",
                )
            time.sleep(0.2)
    finally:
        servers.stop()
    click.echo("stopped", err=True)


@main.command()
@click.argument("model")
@click.argument("table", type=click.Path(path_type=Path))
@click.option("--prediction-column", required=True, help="Column holding the model's output.")
@click.option("--label-column", help="Column holding the ground truth (sent as labels).")
@click.option("--id-column", help="Column of prediction ids (default: <file>-<row>).")
@click.option("--time-column", help="Column of event times (default: now).")
@click.option("--version", "version", help="The model version the rows came from.")
@_user_errors
def send(
    model: str,
    table: Path,
    prediction_column: str,
    label_column: str | None,
    id_column: str | None,
    time_column: str | None,
    version: str | None,
) -> None:
    """Send TABLE's rows (CSV, Parquet, JSON lines) as MODEL's prediction events, and its
    label column as label events: your own data through the pipeline, no code needed."""
    from streamdrift.send import send_table

    settings = _settings()
    sent = send_table(
        table,
        bootstrap=settings.kafka_bootstrap,
        model_id=model,
        prediction_column=prediction_column,
        label_column=label_column,
        id_column=id_column,
        time_column=time_column,
        version=version,
        predictions_topic=settings.predictions_topic,
        labels_topic=settings.labels_topic,
        extra={k: v for k, v in settings.kafka_common().items() if k != "bootstrap.servers"},
    )
    click.echo(
        f"sent {sent.predictions:,} predictions and {sent.labels:,} labels of model "
        f"'{model}' in {sent.seconds:.1f} s"
        + (f"; {sent.undelivered:,} NOT delivered" if sent.undelivered else "")
    )
    if sent.undelivered:
        sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--refresh",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Seconds between page refreshes (0: never).",
)
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    default=48,
    show_default=True,
    help="Windows a model page shows (the latest).",
)
@_user_errors
def serve(host: str, port: int, refresh: int, windows: int) -> None:
    """Serve the read-only dashboard: models, each model's drift heatmap and
    performance, each feature against its reference. Reads Redis only. With
    STREAMDRIFT_UI_TOKEN set, asks for that token (open /?token=... once)."""
    from streamdrift.ui.server import Dashboard, make_server

    settings = _settings()
    token = settings.ui_token.get_secret_value() if settings.ui_token else None
    dashboard = Dashboard(_store(settings), token, refresh=refresh, windows=windows)
    try:
        server = make_server(dashboard, host, port)
    except OSError as e:
        raise StreamdriftError(
            f"cannot listen on {host}:{port}: {e.strerror}", "choose another --port"
        ) from None
    bound = server.server_address[1]
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    click.echo(
        f"dashboard on http://{shown}:{bound}/"
        + ("?token=... (STREAMDRIFT_UI_TOKEN)" if token else "")
        + (
            " — reachable from other machines"
            if host not in ("127.0.0.1", "::1", "localhost")
            else ""
        )
        + "; Ctrl-C stops it."
    )
    if host not in ("127.0.0.1", "::1", "localhost") and not token:
        click.echo(
            "warning: no STREAMDRIFT_UI_TOKEN: anyone who reaches this address sees the dashboard",
            err=True,
        )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command()
@click.argument("model")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report here.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write its data here.",
)
@click.option("--since", default=None, help="Windows from this time (RFC 3339, or an age: 6h).")
@click.option("--until", default=None, help="Windows before this time (RFC 3339, or an age).")
@click.option("--last", type=int, default=None, help="Only the last N windows.")
@_user_errors
def report(
    model: str,
    html_path: Path | None,
    json_path: Path | None,
    since: str | None,
    until: str | None,
    last: int | None,
) -> None:
    """Write MODEL's report: one self-contained HTML file with the dashboard's charts
    and each drifted feature's histogram (opens offline), and/or the data behind it."""
    from streamdrift.time_spec import parse_time
    from streamdrift.ui.export import report_documents, report_html

    if html_path is None and json_path is None:
        raise click.UsageError("give --html FILE, --json FILE, or both")
    docs = report_documents(
        _store(_settings()),
        model,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        last=last,
    )
    windows = docs["model"]["windows"]
    for path, body in (
        (json_path, lambda: orjson.dumps(docs, option=orjson.OPT_INDENT_2)),
        (html_path, lambda: report_html(docs).encode()),
    ):
        if path is None:
            continue
        try:
            path.write_bytes(body())
        except OSError as e:
            raise StreamdriftError(
                f"cannot write {path}: {e.strerror}", "choose a folder you can write to"
            ) from None
        click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    click.echo(
        f"{model}: {len(windows)} windows"
        + (f", {windows[0]['start'][:16]} to {windows[-1]['end'][:16]} UTC" if windows else "")
        + f", {len(docs['features'])} drifted feature(s) with histograms"
    )


@main.command("produce-demo")
@click.option("--model", default="demo", show_default=True)
@click.option("--events", type=int, default=20_000, show_default=True)
@click.option(
    "--drift-at",
    type=float,
    default=0.5,
    show_default=True,
    help="Fraction of the stream after which inputs drift (1 for none).",
)
@click.option("--register", "do_register", is_flag=True, help="Register the model first.")
@_user_errors
def produce_demo(model: str, events: int, drift_at: float, do_register: bool) -> None:
    """Produce a synthetic prediction stream and its late labels to Kafka."""
    import tempfile

    from streamdrift import kafka_io
    from streamdrift.demo import demo_stream, produce_stream, register_demo_model

    settings = _settings()
    kafka_io.ensure_topics(settings)
    if do_register:
        register_demo_model(_store(settings), model, Path(tempfile.mkdtemp()))
    start = time.monotonic()
    predictions, labels = demo_stream(model, events, 7200, drift_at if drift_at < 1 else None)
    produce_stream(settings, settings.predictions_topic, predictions, "predictions", err_console)
    produce_stream(settings, settings.labels_topic, labels, "labels", err_console)
    click.echo(
        f"produced {events:,} predictions and their labels in {time.monotonic() - start:.1f}s"
    )


@main.command()
@click.option("--defaults", is_flag=True, help="Also print the default monitor config.")
@_user_errors
def config(defaults: bool) -> None:
    """Print the settings in force (environment), passwords masked, and the default
    monitor config."""
    click.echo(orjson.dumps(_settings().redacted(), option=orjson.OPT_INDENT_2).decode())
    if defaults:
        click.echo(MonitorConfig().model_dump_json(indent=2))


@main.command()
@click.option(
    "--write",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Write the JSON Schemas into this directory.",
)
@_user_errors
def schemas(out_dir: Path | None) -> None:
    """Print (or write) the JSON Schemas of the event contract."""
    from streamdrift.schemas import all_schemas

    for name, schema in all_schemas().items():
        text = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"{name}.schema.json").write_text(text + "\n")
            click.echo(f"wrote {out_dir / f'{name}.schema.json'}")
        else:
            click.echo(text)


if __name__ == "__main__":  # pragma: no cover
    main()
