"""`salesarck` commands of the reconcile domain (registered on import)."""

from __future__ import annotations
