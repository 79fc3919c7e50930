"""`salesarck` commands of the webhooks domain (registered on import)."""

from __future__ import annotations
