"""Errors a user can cause. Each carries one clear sentence; tracebacks are for bugs only."""

from __future__ import annotations


class SalesarckError(Exception):
    """Base of every error the package raises on purpose; `str()` is the message for the user."""

    exit_code: int = 2


class ConfigError(SalesarckError):
    """A setting is missing or malformed."""


class DatabaseUnavailable(SalesarckError):
    """The database cannot be reached, or refused our credentials."""


class SchemaError(SalesarckError):
    """The database schema is not one we recognise or can migrate."""


class ValidationError(SalesarckError):
    """Input from a user, a file or a provider failed validation."""


class NotFound(SalesarckError):
    """A named entity does not exist (or is outside the actor's scope)."""


class PermissionDenied(SalesarckError):
    """The acting user may not do this."""


class Conflict(SalesarckError):
    """The action conflicts with the current state (already running, already exists, moved)."""
