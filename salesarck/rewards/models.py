"""Side tables of the rewards domain (keyed by the seed's ids; added by their own revision)."""

from __future__ import annotations

from salesarck.db.base import Base  # noqa: F401
