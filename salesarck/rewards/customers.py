"""Who bought: a payment's customer reference (email or mobile) normalised for matching `users`.

Emails are compared lower-cased; mobiles in E.164 (via `phonenumbers`, the tenant's country as
the default region). No match means an anonymous transaction: no wallet, no points.
"""

from __future__ import annotations

from typing import Any

import phonenumbers

MAX_EMAIL_CHARS = 320


def normalize_email(raw: Any) -> str | None:
    """Lower-cased, trimmed email, or None when it is not plausibly an address."""
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    if not text or len(text) > MAX_EMAIL_CHARS or "@" not in text[1:-1] or " " in text \
            or not text.isprintable():
        return None
    return text


def normalize_mobile(raw: Any, region: str | None = "US") -> str | None:
    """E.164 (`+14155550100`) for a valid number, else None; `region` resolves national formats."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        return None
    try:
        parsed = phonenumbers.parse(raw, (region or "US").upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_customer_ref(ref: Any, region: str | None = "US") -> tuple[dict[str, Any], str | None, str | None]:
    """(customer_ref to store, email for matching, E.164 mobile for matching)."""
    if not isinstance(ref, dict):
        return {}, None, None
    out = {k: v for k, v in ref.items() if isinstance(k, str)}
    email = normalize_email(out.get("email"))
    mobile = normalize_mobile(out.get("mobile"), region)
    if email:
        out["email"] = email
    if mobile:
        out["mobile"] = mobile
    return out, email, mobile
