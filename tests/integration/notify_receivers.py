"""Real receivers for the notifier's tests and benchmark, on loopback: an HTTP server
(standing in for a webhook, Slack and PagerDuty) and an SMTP server (aiosmtpd), each
recording what arrived and when."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from aiosmtpd.controller import Controller

from streamdrift.embedded import free_port


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    #: time.time() when the body had arrived
    at: float
    #: the receiver's `run` then (tests bump it when they restart the notifier)
    run: int

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """An HTTP/1.1 server recording every POST. Per path: the status it answers
    (default 200) and a delay before answering (a slow receiver)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        self.run = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers
            # http.server writes the headers and the body in two segments: with Nagle's
            # algorithm the body waits for the client's delayed ACK (~40 ms), which real
            # servers (TCP_NODELAY) do not make their clients wait
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # the client went away mid-body (a notifier killed while sending):
                    # no real server acts on half a request, nor does this one record it
                    self.close_connection = True
                    return
                with outer._lock:
                    outer.requests.append(
                        Request(self.path, dict(self.headers), body, time.time(), outer.run)
                    )
                time.sleep(outer.delay.get(self.path, 0.0))
                status = outer.status.get(self.path, 200)
                reply = b"ok" if status < 300 else b"server trouble"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Inbox:
    """aiosmtpd's handler: every mail accepted, kept parsed."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


def smtp_server() -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, inbox
