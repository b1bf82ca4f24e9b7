"""Masking of credentials in anything streamdrift prints: `config`, logs, error messages.

A Redis URL carries its password (`redis://user:PASSWORD@host`) and librdkafka settings
carry SASL and TLS secrets (`sasl.password`, `ssl.key.pem`), yet both belong in messages:
a user fixing "cannot reach Redis at …" needs the host, the port and the user name. So
secrets are masked where text is made, keeping everything else readable, rather than
leaving URLs and settings out.

Masking errs on the side of hiding: an unusual URL may lose more than its password, never
less. Settings loaded at start also register their secret values (`remember`), so a
library's error that echoes one verbatim is caught by `mask_text` too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import unquote

__all__ = [
    "MASK",
    "is_secret_setting",
    "mask_any",
    "mask_settings",
    "mask_text",
    "mask_url",
    "remember",
    "url_password",
]

#: what a secret is replaced with
MASK = "***"

# Words that make a setting (or URL query parameter) secret wherever they appear in its
# name: librdkafka's sasl.password, ssl.key.password, ssl.keystore.password,
# sasl.oauthbearer.client.secret, redis-py's password and ssl_password, and the
# token/credential settings of plugins and cloud providers.
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "private", "jaas")
# Settings whose whole value is a secret though their names hold none of those words: a
# PEM private key, librdkafka's OAUTHBEARER config (may hold a client secret).
_SECRET_NAMES = frozenset({"ssl.key", "ssl.key.pem", "sasl.oauthbearer.config"})
# Settings whose names hold a secret word but whose values are URLs, not secrets (the
# OIDC token endpoint): masked as URLs, so the host stays visible.
_URL_SUFFIXES = (".url", ".endpoint")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._\-]*://")
# A URL inside free text: a scheme, then everything up to white space or a quote, the
# characters that end a URL in messages, reprs and JSON.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+._\-]*://[^\s\"'<>]+")
# An `@` preceded by `?key=…`: part of a query value, not the end of the user info.
_IN_QUERY = re.compile(r"\?[^@]*=[^@]*\Z")
_QUERY_PAIR = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")

# Secrets met while loading settings; replaced wherever they appear in text.
_known: frozenset[str] = frozenset()
# Shorter values would mask ordinary words all over the logs.
_MIN_REMEMBERED = 4


def _normal(name: str) -> str:
    return unquote(name).strip().lower().replace("_", ".").replace("-", ".")


def is_secret_setting(name: str) -> bool:
    """Whether a setting's value must not be printed; by name only, so a new librdkafka
    option like `sasl.oauthbearer.client.secret` is masked without a code change."""
    n = _normal(name)
    if n.endswith(_URL_SUFFIXES):
        return False
    return n in _SECRET_NAMES or any(word in n for word in _SECRET_WORDS)


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """(user info, the rest) of what follows `scheme://`.

    The user info ends at the last `@` that is not inside a query value, not at the first
    `/`, `?` or `#` as RFC 3986 would have it: passwords pasted into URLs unencoded often
    hold those characters, and taking the last `@` masks all of such a password."""
    at = len(rest)
    while (at := rest.rfind("@", 0, at)) >= 0:
        if not _IN_QUERY.search(rest, 0, at):
            return rest[:at], rest[at + 1 :]
    return None, rest


def _mask_query(part: str) -> str:
    return _QUERY_PAIR.sub(
        lambda m: f"{m[1]}{m[2]}={MASK}" if m[3] and is_secret_setting(m[2]) else m[0], part
    )


def mask_url(url: str) -> str:
    """The URL with its password, and any secret query parameter (`?password=`,
    `?ssl_password=`), replaced by `***`; user, hosts, port, path and other parameters stay
    so a message still says where it tried to connect.

    Works on any scheme (redis, rediss, unix, redis+cluster with several hosts, a Kafka
    listener) and on a bare `user:password@host:port`; a URL without a password comes
    back unchanged.
    """
    m = _SCHEME.match(url)
    if m:
        scheme, rest = url[: m.end()], url[m.end() :]
    elif "@" in url:
        scheme, rest = "", url
    else:
        return _mask_query(url)
    userinfo, hosts = _split_userinfo(rest)
    if userinfo is None:
        return scheme + _mask_query(rest)
    user, colon, password = userinfo.partition(":")
    if colon and password:
        userinfo = f"{user}:{MASK}"
    return f"{scheme}{userinfo}@{_mask_query(hosts)}"


def url_password(url: str) -> str | None:
    """The password of a URL as `mask_url` sees it, or None; for `remember`."""
    m = _SCHEME.match(url)
    userinfo, _ = _split_userinfo(url[m.end() :] if m else url)
    if userinfo is None:
        return None
    _, colon, password = userinfo.partition(":")
    return password if colon and password else None


V = TypeVar("V")


def mask_settings(settings: Mapping[str, V]) -> dict[str, V | str]:
    """A copy of librdkafka-style settings with secret values replaced by `***`.

    Keys are matched by name, case-insensitively, `_` and `.` alike (`SASL_PASSWORD` is
    `sasl.password`): any name containing password, secret, token, credential, private or
    jaas, and `ssl.key.pem`, `ssl_key`, `sasl.oauthbearer.config`. Values that are URLs
    (`bootstrap.servers` with a scheme, the OIDC token endpoint) keep all but their
    passwords. Empty values stay empty: an unset password is worth seeing."""
    out: dict[str, V | str] = {}
    for key, value in settings.items():
        if is_secret_setting(key) and value not in ("", None):
            out[key] = MASK
        elif isinstance(value, str) and "://" in value:
            out[key] = mask_url(value)
        else:
            out[key] = value
    return out


def remember(*secrets: str | None) -> None:
    """Register secret values to be masked wherever they appear in text, also unquoted:
    a library may echo a password found in a URL or a setting without the URL around it."""
    global _known
    found = set(_known)
    for secret in secrets:
        if secret:
            found.update(s for s in (secret, unquote(secret)) if len(s) >= _MIN_REMEMBERED)
    _known = frozenset(found)


def mask_text(text: str) -> str:
    """Free text (a log line, an exception message) with the passwords of every URL in it
    masked, and every remembered secret replaced by `***`."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: mask_url(m[0]), text)
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_any(value: Any) -> Any:
    """`mask_text` for strings, `mask_settings` for mappings; anything else unchanged.
    For log records, whose extra fields may be either."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_any(v) for k, v in mask_settings(value).items()}
    return value
