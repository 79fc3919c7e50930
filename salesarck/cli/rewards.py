"""`salesarck` commands of the rewards domain (registered on import)."""

from __future__ import annotations
