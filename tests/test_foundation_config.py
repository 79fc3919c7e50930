"""Settings: URL forms, pooler detection, clear errors, and the README's table kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from salesarck.config import Settings, load_settings, normalize_database_url
from salesarck.errors import ConfigError
from salesarck.timeutil import parse_time

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    "raw",
    ["postgres://u:p@h:5432/d", "postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"],
)
def test_accepted_url_forms_use_psycopg3(raw: str) -> None:
    url = normalize_database_url(raw)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.host, url.port, url.database) == ("u", "h", 5432, "d")


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ("mysql://u@h/d", "must start with"),
        ("not a url", "must start with"),
        ("", "empty"),
        ("postgresql://u@h:notaport/d", "port"),
        ("postgresql+asyncpg://u@h/d", "must start with"),
    ],
)
def test_bad_urls_give_clear_errors(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        normalize_database_url(raw)


def test_error_never_echoes_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2-secret@h:badport/d")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_pooler_detected_from_port_6543_and_overridable() -> None:
    s = Settings(DATABASE_URL="postgresql://u@pooler.example:6543/postgres")
    assert s.runtime_url is not None and s.uses_pooler(s.runtime_url)
    assert not Settings(DATABASE_URL="postgresql://u@h:5432/d").uses_pooler(normalize_database_url("postgresql://h:5432/d"))
    forced = Settings(DATABASE_URL="postgresql://u@h:5432/d", SALESARCK_DB_POOLER="on")
    assert forced.runtime_url is not None and forced.uses_pooler(forced.runtime_url)


def test_direct_url_falls_back_to_database_url() -> None:
    s = Settings(DATABASE_URL="postgres://u@h/d")
    assert s.migration_url == s.runtime_url
    s2 = Settings(DATABASE_URL="postgres://u@pool:6543/d", DIRECT_DATABASE_URL="postgres://u@direct:5432/d")
    assert s2.migration_url is not None and s2.migration_url.host == "direct"


def test_invalid_setting_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESARCK_DB_POOLER", "sometimes")
    with pytest.raises(ConfigError, match="SALESARCK_DB_POOLER"):
        load_settings()


def test_readme_settings_table_lists_every_setting() -> None:
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", README.read_text(), flags=re.M))
    read = {str(f.validation_alias) for f in Settings.model_fields.values()}
    assert read - documented == set(), "settings missing from the README table"
    assert documented - read - {"SALESARCK_TEST_DATABASE_URL", "SALESARCK_BENCH_DATABASE_URL"} == set()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-11-01T09:30:00Z", "2026-11-01 09:30:00"),
        ("2026-11-01T09:30:00+02:00", "2026-11-01 07:30:00"),
        ("2026-11-01", "2026-11-01 00:00:00"),
    ],
)
def test_parse_time(text: str, expected: str) -> None:
    assert str(parse_time(text)) == expected


@pytest.mark.parametrize("text", ["2026-11-01T09:30:00", "yesterday", "2026-13-01", "9" * 200, "'; drop table x"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(Exception, match="offset|not a valid|RFC 3339|too long"):
        parse_time(text)


def test_local_env_file_in_home_is_read_but_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SALESARCK_HOME", str(tmp_path))
    (tmp_path / "salesarck.env").write_text(
        "SALESARCK_SQUARE_BASE_URL=http://127.0.0.1:8701\nSALESARCK_LOCAL_USER=demo@x.test\n"
    )
    monkeypatch.setenv("SALESARCK_LOCAL_USER", "env@x.test")
    s = load_settings()
    assert s.square_base_url == "http://127.0.0.1:8701"
    assert s.local_user == "env@x.test"
