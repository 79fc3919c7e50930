"""Fake POS servers that ship with the project (tests, benchmarks, the demo).

`FAKE_PROVIDERS` maps a provider name to a factory building its fake from the `fakepos serve`
options; the Clover fake adds itself here. Each factory returns an object with an ASGI `.app`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class FakeServer(Protocol):
    app: Any


FakeFactory = Callable[..., FakeServer]


def _square(*, seed: int = 1, payments: int = 200, access_token: str | None = None, **kw: Any) -> FakeServer:
    from salesarck.pos.fake.square import DEFAULT_ACCESS_TOKEN, FakeSquare

    return FakeSquare(seed=seed, payments=payments, access_token=access_token or DEFAULT_ACCESS_TOKEN, **kw)


def _clover(*, seed: int = 1, payments: int = 200, access_token: str | None = None, **kw: Any) -> FakeServer:
    from salesarck.pos.fake.clover import DEFAULT_ACCESS_TOKEN, FakeClover

    return FakeClover(seed=seed, payments=payments, access_token=access_token or DEFAULT_ACCESS_TOKEN, **kw)


FAKE_PROVIDERS: dict[str, FakeFactory] = {"square": _square, "clover": _clover}


def build_fake(provider: str, **options: Any) -> FakeServer:
    """The fake for `provider`, built from `fakepos serve` options."""
    try:
        factory = FAKE_PROVIDERS[provider]
    except KeyError:
        from salesarck.errors import ValidationError

        raise ValidationError(f"no fake server for provider {provider!r}; choose one of "
                              f"{', '.join(sorted(FAKE_PROVIDERS))}") from None
    return factory(**options)
