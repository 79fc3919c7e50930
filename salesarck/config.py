"""Settings from the environment: the only module that reads it.

Every setting the project reads is a field here, and the README's settings table lists the same
names and defaults (a test keeps them in step).
"""

from __future__ import annotations

import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from salesarck.errors import ConfigError

POOLER_PORT = 6543
_ACCEPTED_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}


def default_home() -> Path:
    """Per-user data directory, so the app, CLI and notebooks from any folder share one database."""
    return Path(platformdirs.user_data_dir("salesarck", appauthor=False))


def normalize_database_url(raw: str) -> URL:
    """Accept `postgres://`, `postgresql://` and `postgresql+psycopg://`; return a psycopg 3 URL."""
    text = raw.strip()
    if not text:
        raise ConfigError("database URL is empty")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in _ACCEPTED_SCHEMES:
        raise ConfigError(
            "database URL must start with postgres://, postgresql:// or postgresql+psycopg:// "
            f"(got scheme {scheme or 'none'!r})"
        )
    text = "postgresql+psycopg://" + text.split("://", 1)[1]
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError("database URL is malformed; expected postgresql://user:pass@host:port/db") from exc
    try:
        _ = url.port
    except ValueError as exc:
        raise ConfigError("database URL has a port that is not a number") from exc
    return url


def redact_url(url: URL | str) -> str:
    """The URL with any password masked, for logs and error messages."""
    parsed = url if isinstance(url, URL) else make_url(str(url))
    return parsed.render_as_string(hide_password=True)


class Settings(BaseSettings):
    """Validated settings; build with `Settings()` (reads the environment) or pass values."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # --- database --------------------------------------------------------------------------
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    direct_database_url: SecretStr | None = Field(default=None, validation_alias="DIRECT_DATABASE_URL")
    home: Path = Field(default_factory=default_home, validation_alias="SALESARCK_HOME")
    db_pooler: Literal["auto", "on", "off"] = Field(default="auto", validation_alias="SALESARCK_DB_POOLER")
    runtime_role: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$", validation_alias="SALESARCK_RUNTIME_ROLE"
    )

    # --- identity ---------------------------------------------------------------------------
    local_user: str = Field(default="admin@demo.salesarck.test", validation_alias="SALESARCK_LOCAL_USER")
    log_level: str = Field(default="INFO", validation_alias="SALESARCK_LOG_LEVEL")

    # --- tokens -----------------------------------------------------------------------------
    encryption_keys: SecretStr | None = Field(default=None, validation_alias="SALESARCK_ENCRYPTION_KEYS")

    # --- Square -----------------------------------------------------------------------------
    square_base_url: str = Field(
        default="https://connect.squareup.com", validation_alias="SALESARCK_SQUARE_BASE_URL"
    )
    square_client_id: str | None = Field(default=None, validation_alias="SQUARE_CLIENT_ID")
    square_client_secret: SecretStr | None = Field(default=None, validation_alias="SQUARE_CLIENT_SECRET")
    square_webhook_signature_key: SecretStr | None = Field(
        default=None, validation_alias="SQUARE_WEBHOOK_SIGNATURE_KEY"
    )
    square_webhook_notification_url: str | None = Field(
        default=None, validation_alias="SQUARE_WEBHOOK_NOTIFICATION_URL"
    )

    # --- Clover -----------------------------------------------------------------------------
    clover_base_url: str = Field(default="https://api.clover.com", validation_alias="SALESARCK_CLOVER_BASE_URL")
    clover_client_id: str | None = Field(default=None, validation_alias="CLOVER_CLIENT_ID")
    clover_webhook_auth_code: SecretStr | None = Field(default=None, validation_alias="CLOVER_WEBHOOK_AUTH_CODE")

    # --- sync and worker --------------------------------------------------------------------
    sync_lookback_hours: int = Field(default=72, ge=0, le=24 * 90, validation_alias="SALESARCK_SYNC_LOOKBACK_HOURS")
    sync_initial_days: int = Field(default=30, ge=1, le=3650, validation_alias="SALESARCK_SYNC_INITIAL_DAYS")
    worker_interval_seconds: int = Field(
        default=300, ge=5, le=86400, validation_alias="SALESARCK_WORKER_INTERVAL_SECONDS"
    )

    @field_validator("database_url", "direct_database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("home", mode="before")
    @classmethod
    def _home_default_when_empty(cls, value: object) -> object:
        return default_home() if isinstance(value, str) and not value.strip() else value

    @cached_property
    def runtime_url(self) -> URL | None:
        """Normalised DATABASE_URL, or None for the embedded database."""
        return normalize_database_url(self.database_url.get_secret_value()) if self.database_url else None

    @cached_property
    def migration_url(self) -> URL | None:
        """DIRECT_DATABASE_URL (migrations bypass a transaction pooler), falling back to DATABASE_URL."""
        if self.direct_database_url:
            return normalize_database_url(self.direct_database_url.get_secret_value())
        return self.runtime_url

    def uses_pooler(self, url: URL) -> bool:
        """Transaction poolers cannot keep server-side prepared statements across transactions."""
        if self.db_pooler != "auto":
            return self.db_pooler == "on"
        return url.port == POOLER_PORT


LOCAL_ENV_FILE = "salesarck.env"


def local_env_file(home: Path) -> Path:
    """`$SALESARCK_HOME/salesarck.env`: local settings (the demo writes its fake POS URLs and keys here).

    The environment always wins over this file, so production configuration never depends on it.
    """
    return home / LOCAL_ENV_FILE


_ENV_PREFIXES = ("SALESARCK_", "DATABASE_URL", "DIRECT_DATABASE_URL", "SQUARE_", "CLOVER_")


def current_settings() -> Settings:
    """`load_settings()` memoized on the environment, for a long-lived process (the app) that needs the
    settings on every page run: reading them costs about a millisecond each time, which 20 concurrent
    sessions feel. A change to any setting's variable is seen at once; the local env file is read once
    per distinct environment."""
    env = tuple(sorted((k.upper(), v) for k, v in os.environ.items() if k.upper().startswith(_ENV_PREFIXES)))
    return _settings_for(env)


@lru_cache(maxsize=16)
def _settings_for(env: tuple[tuple[str, str], ...]) -> Settings:
    return load_settings()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (then `$SALESARCK_HOME/salesarck.env`), one clear line on error."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        env_file = local_env_file(settings.home)
        if env_file.is_file():
            settings = Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type, call-arg]
        # validate URLs eagerly so a bad DATABASE_URL fails at start-up, not at first query
        _ = settings.runtime_url, settings.migration_url
        return settings
    except ValidationError as exc:
        first = exc.errors()[0]
        name = first.get("loc", ("?",))[0]
        raise ConfigError(f"setting {name}: {first.get('msg')}") from None
