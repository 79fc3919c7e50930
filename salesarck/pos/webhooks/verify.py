"""Webhook authenticity checks: Square's HMAC-SHA256 signature and Clover's static auth code.

Both compare in constant time (`hmac.compare_digest`) so response timing leaks nothing about the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SQUARE_SIGNATURE_HEADER = "x-square-hmacsha256-signature"
SQUARE_LEGACY_SIGNATURE_HEADER = "x-square-signature"  # HMAC-SHA1: refused
CLOVER_AUTH_HEADER = "x-clover-auth"
MAX_SIGNATURE_CHARS = 256


def square_signature(*, signature_key: str, notification_url: str, body: bytes) -> str:
    """base64(HMAC-SHA256(key, notification URL + raw body)), as Square computes it."""
    mac = hmac.new(signature_key.encode("utf-8"), notification_url.encode("utf-8") + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def verify_square_signature(
    *, signature_key: str, notification_url: str, body: bytes, signature: str | None
) -> bool:
    """True when `signature` is Square's signature of exactly these bytes sent to this URL."""
    if not signature or not signature_key or not notification_url or len(signature) > MAX_SIGNATURE_CHARS:
        return False
    expected = square_signature(signature_key=signature_key, notification_url=notification_url, body=body)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace"))


def verify_clover_auth(*, expected_code: str, presented: str | None) -> bool:
    """True when the `X-Clover-Auth` header equals the configured auth code."""
    if not presented or not expected_code or len(presented) > MAX_SIGNATURE_CHARS:
        return False
    return hmac.compare_digest(expected_code.encode("utf-8"), presented.strip().encode("utf-8", "replace"))
