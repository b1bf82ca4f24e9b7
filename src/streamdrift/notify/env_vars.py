"""`${VAR}` in a routes file: secrets come from the environment, not the file.

A routing key or an SMTP password belongs in a secret store that sets environment
variables, not in a file checked into a repository. Every value read this way is
registered with `redaction.remember`, so it is masked wherever streamdrift prints text:
logs, error messages, the `.undelivered` topic, `streamdrift notify --check`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from streamdrift.errors import ConfigError
from streamdrift.redaction import remember

#: `${NAME}`; `$${NAME}` is a literal `${NAME}`
_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_env_vars(
    value: object, where: str, source: str, environ: Mapping[str, str] | None = None
) -> object:
    """`value` (a parsed JSON or YAML document) with every `${NAME}` in its strings
    replaced by the environment variable NAME. A variable that is not set, or a
    malformed reference, is a `ConfigError` naming the place (`where`, e.g.
    `sinks.ops.routing_key`) and the fix; `source` names the file."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        return _expand(value, where, source, env)
    if isinstance(value, list):
        return [expand_env_vars(v, f"{where}[{i}]", source, env) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            k: expand_env_vars(v, f"{where}.{k}" if where else str(k), source, env)
            for k, v in value.items()
        }
    return value


def _expand(text: str, where: str, source: str, env: Mapping[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        escaped, name = m[1], m[2]
        if escaped:
            return "${" + name + "}"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{source}: {where}: '${{{name}}}' is not an environment variable reference",
                "write ${NAME} with letters, digits and _ (or $${...} for a literal ${...})",
            )
        if name not in env:
            raise ConfigError(
                f"{source}: {where}: environment variable {name} is not set",
                f"export {name}=... before starting streamdrift notify",
            )
        found = env[name]
        remember(found)
        return found

    return _REFERENCE.sub(replace, text)
