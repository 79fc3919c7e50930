"""ISO 4217 minor-unit exponents (USD 2, JPY 0, KWD 3), from the maintained `iso4217` package.

Points are computed per major currency unit, so every amount in minor units is scaled by
10^exponent. Migration 0004 copies the same table into `currency_minor_units` for SQL.
"""

from __future__ import annotations

from functools import cache

from iso4217 import Currency

from salesarck.errors import ValidationError


@cache
def exponent_table() -> dict[str, int]:
    """Every ISO 4217 code with a defined minor-unit exponent (funds like XAU have none: excluded)."""
    return {c.code: int(c.exponent) for c in Currency if c.exponent is not None}


def currency_exponent(code: str) -> int:
    """The ISO 4217 minor-unit exponent of `code` (case-insensitive); unknown -> ValidationError."""
    if not isinstance(code, str) or len(code) > 8:
        raise ValidationError(f"unknown currency {str(code)[:16]!r}")
    exp = exponent_table().get(code.strip().upper())
    if exp is None:
        raise ValidationError(f"unknown currency {code!r} (not an ISO 4217 code with minor units)")
    return exp


def normalize_currency(code: object) -> str:
    """Upper-case ISO 4217 code, validated; raises ValidationError naming the bad value."""
    if not isinstance(code, str):
        raise ValidationError(f"currency must be a string, got {type(code).__name__}")
    upper = code.strip().upper()
    currency_exponent(upper)
    return upper


def country_currency(country: str | None, default: str = "USD") -> str:
    """The current legal tender of an ISO 3166 country (CLDR via babel); `default` when unknown."""
    from babel.numbers import get_territory_currencies

    if not country or not isinstance(country, str) or len(country) != 2:
        return default
    try:
        found = get_territory_currencies(country.upper(), tender=True)
    except Exception:  # babel raises on territories it does not know
        return default
    for code in found:
        if code in exponent_table():
            return code
    return default
