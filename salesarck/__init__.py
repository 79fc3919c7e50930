"""SalesArck Recon: ingest POS data, post loyalty rewards, reconcile wallet balances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from salesarck.api import SalesArck

__version__ = "0.1.0"
__all__ = ["connect", "__version__"]


def connect(url: Any = None, actor: Any = None, readonly: bool = True) -> SalesArck:
    """Open the project's database for analysis: `db = salesarck.connect()` (see `salesarck.api.connect`).

    Imported lazily so `import salesarck` builds no engine and loads no pandas.
    """
    from salesarck.api import connect as _connect

    return _connect(url=url, actor=actor, readonly=readonly)
