"""The one way the CLI, app and notebooks get a ready database: engine, connected, migrated."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from salesarck.config import Settings, load_settings
from salesarck.db import migrate
from salesarck.db.engine import engine_from_settings


def open_engine(settings: Settings | None = None, *, auto_migrate: bool | None = None) -> Engine:
    """Engine for the configured database. The embedded database is migrated automatically;
    an external one only when `auto_migrate=True` (production schema changes are deliberate)."""
    settings = settings or load_settings()
    engine = engine_from_settings(settings)
    if auto_migrate is None:
        auto_migrate = settings.runtime_url is None
    if auto_migrate and migrate.current_revision(engine) != migrate.head_revision():
        # migrate as the owner, not as a least-privilege runtime role
        owner = engine_from_settings(settings, for_migrations=True) if settings.runtime_role else engine
        migrate.upgrade(owner)
    return engine
