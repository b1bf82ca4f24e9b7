"""`streamdrift notify --check`: the sinks and routes in force, as a person reads them,
without their secrets (the caller masks the text too)."""

from __future__ import annotations

from streamdrift.notify.routes import Match, RoutesFile
from streamdrift.notify.sinks import build_sinks


def describe_routes(routes: RoutesFile) -> str:
    sinks = build_sinks(routes)
    lines = ["sinks:"]
    width = max(len(n) for n in sinks)
    for name, sink in sinks.items():
        config = routes.sinks[name]
        retry = routes.retry_of(name)
        lines.append(
            f"  {name:<{width}}  {sink.kind:<9}  {sink.describe()}; {retry.attempts} tries, "
            f"waits {retry.initial_seconds:g}–{retry.max_seconds:g} s, "
            f"{config.concurrency} at once"
        )
        sink.close()
    lines.append("routes (the first that matches decides; `continue` goes on to the next):")
    for i, route in enumerate(routes.routes, 1):
        more = " (continue)" if route.keep_going else ""
        lines.append(f"  {i}. {_match(route.match)} → {', '.join(route.sinks)}{more}")
    return "\n".join(lines)


def _match(match: Match) -> str:
    keys = [
        f"{key}={','.join(values)}" for key, values in match.model_dump(exclude_none=True).items()
    ]
    return " ".join(keys) or "every alert"
