"""`streamdrift serve`: the read-only dashboard over HTTP.

It reads Redis only (never Kafka, never a write), so it can run anywhere the state can
be read and as many times as wanted. It binds to 127.0.0.1 unless told otherwise: the
pages show feature values and alert messages. With a token, a browser opens
`/?token=…` once and keeps it in an HttpOnly, same-site cookie; programs send
`Authorization: Bearer …`. Every page has a JSON twin under `/api/`, the same documents
as `inspect --json`."""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import orjson
from redis.exceptions import RedisError

from streamdrift.errors import StreamdriftError, UnknownModelError
from streamdrift.feature_report import feature_report
from streamdrift.redaction import mask_url
from streamdrift.report import model_report
from streamdrift.store import Store
from streamdrift.time_spec import parse_time
from streamdrift.ui import pages, views

log = logging.getLogger(__name__)
COOKIE = "streamdrift_ui_token"
#: windows a model page shows when the URL does not say
DEFAULT_WINDOWS = 48


class Response:
    def __init__(self, code: int, body: bytes, content_type: str, **headers: str) -> None:
        self.code, self.body, self.content_type, self.headers = code, body, content_type, headers


def _html(text: str, code: int = 200) -> Response:
    return Response(code, text.encode(), "text/html; charset=utf-8")


def _json(doc: Any, code: int = 200) -> Response:
    return Response(code, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), "application/json")


class Dashboard:
    """The routes, apart from HTTP, so each page is a call from a query to a Response."""

    def __init__(
        self, store: Store, token: str | None = None, refresh: int = 30, windows: int = 48
    ) -> None:
        self.store = store
        self.token = token
        self.refresh = refresh
        self.windows = windows

    def authorised(self, headers: Any, query: dict[str, str]) -> tuple[bool, bool]:
        """(allowed, came with ?token=): a browser's first visit brings the token in the
        URL; it is then moved to a cookie and out of the address bar."""
        if not self.token:
            return True, False
        expected = self.token.encode()

        def same(given: str | None) -> bool:
            return given is not None and hmac.compare_digest(given.encode(), expected)

        if same(query.get("token")):
            return True, True
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and same(auth[7:].strip()):
            return True, False
        cookie = SimpleCookie(headers.get("Cookie") or "")
        return (COOKIE in cookie and same(cookie[COOKIE].value)), False

    def route(self, path: str, query: dict[str, str]) -> Response:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        api = bool(parts) and parts[0] == "api"
        if api:
            parts = parts[1:]
        try:
            return self._route(parts, query, api)
        except UnknownModelError as e:
            return self._error(api, HTTPStatus.NOT_FOUND, e.problem, e.fix)
        except StreamdriftError as e:
            return self._error(api, HTTPStatus.BAD_REQUEST, e.problem, e.fix)
        except RedisError as e:
            log.warning("dashboard: Redis read failed: %s", e)
            return self._error(
                api,
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"Redis at {mask_url(self.store.url)} cannot be read ({type(e).__name__})",
                "the page comes back once Redis answers",
            )

    def _error(self, api: bool, code: HTTPStatus, problem: str, fix: str) -> Response:
        if api:
            return _json({"error": problem, "fix": fix}, code)
        return _html(
            pages.message_page(code.phrase, f"{problem} — {fix}" if fix else problem, code), code
        )

    def _route(self, parts: list[str], query: dict[str, str], api: bool) -> Response:
        if parts in ([], ["models"]):
            rows = views.model_rows(self.store, last=self.windows)
            return _json(rows) if api else _html(pages.models_page(rows, self.refresh))
        if parts[0] == "models" and len(parts) == 2:
            doc = self.model(parts[1], query)
            if api:
                return _json(doc)
            keep = {k: v for k, v in query.items() if k in ("since", "until", "windows", "slice")}
            return _html(pages.model_page(doc, refresh=self.refresh, query=urlencode(keep)))
        if parts[0] == "models" and len(parts) == 4 and parts[2] == "features":
            window = query.get("window")
            start = parse_time(window, "window") if window else None
            doc = feature_report(self.store, parts[1], parts[3], start)
            return _json(doc) if api else _html(pages.feature_page(doc, self.refresh))
        raise UnknownModelError(f"no page at /{'/'.join(parts)}", "start from the models page, /")

    def model(self, model: str, query: dict[str, str]) -> dict[str, Any]:
        """The model's document for the windows the query asks for: `since`, `until`
        (times or ages), `windows` (the last N, default the dashboard's), `slice` (one
        version or segment, judged against its own reference)."""
        since = parse_time(query["since"], "since") if query.get("since") else None
        until = parse_time(query["until"], "until") if query.get("until") else None
        try:
            last = int(query.get("windows") or self.windows)
        except ValueError:
            raise StreamdriftError(
                f"windows '{query['windows']}' is not a number", "give a count, e.g. windows=48"
            ) from None
        return model_report(
            self.store, model, last or None, query.get("slice") or None, since=since, until=until
        )


def make_server(dashboard: Dashboard, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamdrift"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path == "/healthz":
                return self._send(_json({"ok": True}))
            allowed, from_url = dashboard.authorised(self.headers, query)
            if not allowed:
                return self._send(
                    Response(
                        401,
                        b"401: this dashboard asks for a token: open /?token=TOKEN once, or "
                        b"send the header Authorization: Bearer TOKEN "
                        b"(the token is STREAMDRIFT_UI_TOKEN where serve runs)\n",
                        "text/plain; charset=utf-8",
                        **{"WWW-Authenticate": 'Bearer realm="streamdrift"'},
                    )
                )
            if from_url:
                rest = urlencode({k: v for k, v in query.items() if k != "token"})
                cookie = f"{COOKIE}={dashboard.token}; HttpOnly; SameSite=Strict; Path=/"
                return self._send(
                    Response(
                        303,
                        b"",
                        "text/plain",
                        Location=url.path + (f"?{rest}" if rest else ""),
                        **{"Set-Cookie": cookie},
                    )
                )
            if url.path == "/static/plotly.min.js":
                return self._send(
                    Response(
                        200,
                        pages.plotly_js(),
                        "application/javascript",
                        **{"Cache-Control": "max-age=86400"},
                    )
                )
            self._send(dashboard.route(url.path, query))

        def _refuse(self) -> None:
            self._send(
                Response(405, b"405: the dashboard is read-only\n", "text/plain", Allow="GET")
            )

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

        def _send(self, r: Response) -> None:
            self.send_response(r.code)
            self.send_header("Content-Type", r.content_type)
            self.send_header("Content-Length", str(len(r.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            if "Cache-Control" not in r.headers:
                self.send_header("Cache-Control", "no-store")
            for k, v in r.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(r.body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("dashboard: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> Callable[[], None]:
    """Serve in a background thread (tests, embedding); returns the stop function."""
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="streamdrift-ui")
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
