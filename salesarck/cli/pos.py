"""`salesarck` commands of the pos domain (registered on import)."""

from __future__ import annotations
