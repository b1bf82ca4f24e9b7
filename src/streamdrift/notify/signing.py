"""The webhook signature: HMAC-SHA256 over the timestamp and the body.

A receiver that shares the secret recomputes it to know the request came from us and was
not altered. The timestamp is signed with the body (`<timestamp>.<body>`, as Stripe and
Slack sign theirs), so a recorded request cannot be replayed later under a fresh
timestamp header: receivers should also refuse timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac

#: headers of a signed webhook request
SIGNATURE_HEADER = "X-Streamdrift-Signature"
TIMESTAMP_HEADER = "X-Streamdrift-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, `<timestamp>.` + body)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does: compare in constant time, so timing reveals nothing."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)
