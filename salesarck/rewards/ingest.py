"""File import: a provider's own JSON export -> the one posting pipeline, in one transaction."""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.authz import Actor, Permission
from salesarck.errors import NotFound
from salesarck.pos.mapping import load_payment_file
from salesarck.rewards.currency import country_currency
from salesarck.rewards.guard import as_uuid, require
from salesarck.rewards.posting import PostingSummary, post_payments

# Payments per posting call. Large on purpose: within one transaction every further call updates
# the same wallet rows again (longer version chains for every later FK check); measured on 150k
# payments, one call took 29 s where three calls of 50k took 78 s.
CHUNK = 250_000


def ingest_file(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID, path: str | os.PathLike[str],
                provider: str) -> PostingSummary:
    """Import a Square or Clover payments file for a tenant, inside the caller's transaction.

    Unreadable files raise ValidationError before anything is written; malformed records are
    skipped and reported; the rest post exactly as the API sync and webhooks would (`arrival=file`).
    """
    tenant_id = as_uuid(tenant_id, "tenant id")
    country = conn.execute(sa.text("select country from tenants where id = :t"), {"t": tenant_id}).scalar()
    if country is None:
        raise NotFound(f"no tenant {tenant_id}")
    require(conn, actor, Permission.SYNC, tenant_id)
    records, skipped = load_payment_file(path, provider, country_currency(country))
    summary = PostingSummary(skipped=list(skipped))
    for i in range(0, len(records), CHUNK):
        summary.merge(post_payments(conn, tenant_id=tenant_id, records=records[i:i + CHUNK], arrival="file"))
    summary.read = len(records) + len(skipped)
    return summary
