"""A real `streamdrift worker` that dies between two models' applies of one batch.

Fault injection for `test_exactly_once`: a batch's applies go to Redis model by model,
and a worker can die between two of them. This one lets the first apply it sends run to
the end in Redis, then exits at once (`os._exit`, as a SIGKILL would stop it: nothing
flushed, committed or closed), before the next model's apply is sent."""

from __future__ import annotations

import logging
import os
import sys

from streamdrift.config import Settings
from streamdrift.store.applies import Applies, PendingApply, Prepared
from streamdrift.worker import Worker

_send = Applies.send


def _send_then_die(self: Applies, request: Prepared) -> PendingApply:
    pending = _send(self, request)
    self.read(pending)  # Redis ran it
    os._exit(137)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    Applies.send = _send_then_die  # type: ignore[method-assign]
    Worker(Settings()).run()
