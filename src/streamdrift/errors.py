"""Errors a user can cause, each carrying the fix.

The CLI catches `StreamdriftError` and prints one line (problem, then fix) instead of a
traceback: a wrong file name is a user's mistake, not a crash of the tool.

Messages are masked when the error is made (`redaction.mask_text`): they name URLs and
settings so the user knows where it failed, and pass through logs and tracebacks, so the
password must be gone before anything prints them.
"""

from __future__ import annotations

from streamdrift.redaction import mask_text


class StreamdriftError(Exception):
    """A problem the user can fix; `fix` says how."""

    def __init__(self, problem: str, fix: str = "") -> None:
        problem, fix = mask_text(problem), mask_text(fix)
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} ({self.fix})" if self.fix else self.problem


class ReferenceFileError(StreamdriftError):
    """The reference file cannot become a profile (missing, empty, unknown column...)."""


class ConfigError(StreamdriftError):
    """A monitor configuration or setting is invalid."""


class UnknownModelError(StreamdriftError):
    """The model has no registered reference profile."""


class ConnectionProblem(StreamdriftError):
    """Kafka or Redis cannot be reached."""
