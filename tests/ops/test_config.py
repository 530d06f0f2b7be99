"""Settings: read from ``MEMVAULT_*`` variables with their types; refused when unsafe or invalid."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from memvault.config import PREFIX, Settings, SettingsError, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_no_variables_means_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({})
    assert settings.mongodb_uri is None
    assert settings.embedded
    assert settings.port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.data_dir == Path(".memvault")
    assert settings.purge_interval == 3600
    assert settings.purge_after == 86400
    assert settings.default_page_size == 20
    assert settings.max_page_size == 100


def test_variables_are_read_with_their_types() -> None:
    settings = Settings.from_env(
        {
            "MEMVAULT_MONGODB_URI": "mongodb://db.example:27017/?replicaSet=rs0",
            "MEMVAULT_DATABASE": "memories_2",
            "MEMVAULT_DATA_DIR": "/var/lib/memvault",
            "MEMVAULT_HOST": "0.0.0.0",
            "MEMVAULT_PORT": "9000",
            "MEMVAULT_LOG_LEVEL": "debug",
            "MEMVAULT_ENGINE_START_TIMEOUT": "2.5",
            "MEMVAULT_PURGE_INTERVAL": "0",
            "MEMVAULT_PURGE_AFTER": "60",
            "MEMVAULT_DEFAULT_PAGE_SIZE": "50",
            "MEMVAULT_MAX_PAGE_SIZE": "500",
            "MEMVAULT_GRAPHIQL": "false",
            "UNRELATED": "ignored",
        }
    )
    assert settings.mongodb_uri == "mongodb://db.example:27017/?replicaSet=rs0"
    assert not settings.embedded
    assert settings.database == "memories_2"
    assert settings.data_dir == Path("/var/lib/memvault")
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert isinstance(settings.port, int)
    assert settings.log_level.upper() == "DEBUG"
    assert settings.engine_start_timeout == 2.5
    assert settings.purge_interval == 0
    assert settings.purge_after == 60
    assert settings.default_page_size == 50
    assert settings.max_page_size == 500
    assert settings.graphiql is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("False", False), ("no", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.from_env({"MEMVAULT_GRAPHIQL": raw}).graphiql is expected


def test_empty_variable_means_the_default() -> None:
    assert Settings.from_env({"MEMVAULT_PORT": "", "MEMVAULT_MONGODB_URI": ""}) == Settings()


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"MEMVAULT_PORT": "9000"}, port=9001)
    assert settings.port == 9001


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMVAULT_PURGE_AFTER", "123")
    assert Settings.from_env().purge_after == 123


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("MEMVAULT_PORT", "abc"),
        ("MEMVAULT_PORT", "0"),
        ("MEMVAULT_PORT", "-1"),
        ("MEMVAULT_PORT", "65536"),
        ("MEMVAULT_PORT", "80.5"),
        ("MEMVAULT_PURGE_INTERVAL", "-1"),
        ("MEMVAULT_PURGE_INTERVAL", "hourly"),
        ("MEMVAULT_PURGE_AFTER", "-60"),
        ("MEMVAULT_DEFAULT_PAGE_SIZE", "101"),
        ("MEMVAULT_DEFAULT_PAGE_SIZE", "0"),
        ("MEMVAULT_MAX_PAGE_SIZE", "0"),
        ("MEMVAULT_MAX_PAGE_SIZE", "100000"),
        ("MEMVAULT_DATABASE", "my-db"),
        ("MEMVAULT_DATABASE", "a.b"),
        ("MEMVAULT_DATABASE", "two words"),
        ("MEMVAULT_DATABASE", "1st"),
        ("MEMVAULT_DB_TIMEOUT_MS", "0"),
        ("MEMVAULT_DB_TIMEOUT_MS", "soon"),
        ("MEMVAULT_ENGINE_START_TIMEOUT", "0"),
        ("MEMVAULT_ENGINE_START_TIMEOUT", "-5"),
        ("MEMVAULT_ENGINE_START_TIMEOUT", "nan"),
        ("MEMVAULT_ENGINE_START_TIMEOUT", "later"),
        ("MEMVAULT_LOG_LEVEL", "LOUD"),
        ("MEMVAULT_GRAPHIQL", "maybe"),
        ("MEMVAULT_MAX_ID_LENGTH", "0"),
        ("MEMVAULT_MAX_METADATA_BYTES", "1"),
        ("MEMVAULT_MAX_METADATA_DEPTH", "0"),
        ("MEMVAULT_MAX_METADATA_KEY_LENGTH", "0"),
        ("MEMVAULT_MAX_CONTENT_BYTES", "0"),
        ("MEMVAULT_MAX_MEMORIES_PER_CALL", "0"),
        ("MEMVAULT_AUTH", "sometimes"),
        ("MEMVAULT_AUTH_CACHE_SECONDS", "-1"),
        ("MEMVAULT_MAX_BODY_BYTES", "10"),
        ("MEMVAULT_CORS_ORIGINS", "https://app.example.com/"),
        ("MEMVAULT_CORS_ORIGINS", "app.example.com"),
        ("MEMVAULT_CORS_ORIGINS", "https://app.example.com/path"),
        ("MEMVAULT_CORS_ORIGINS", "*,https://app.example.com"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(variable)):
        Settings.from_env({variable: raw})


def test_any_cors_origin_is_refused_when_keys_are_required() -> None:
    with pytest.raises(SettingsError, match="MEMVAULT_CORS_ORIGINS"):
        Settings.from_env({"MEMVAULT_CORS_ORIGINS": "*", "MEMVAULT_AUTH": "required"})
    assert Settings.from_env({"MEMVAULT_CORS_ORIGINS": "*"}).cors_origin_list == ("*",)
    listed = Settings.from_env({"MEMVAULT_CORS_ORIGINS": " http://localhost:5173 , https://a.b"})
    assert listed.cors_origin_list == ("http://localhost:5173", "https://a.b")


def test_default_page_size_is_checked_against_the_configured_maximum() -> None:
    env = {"MEMVAULT_MAX_PAGE_SIZE": "10", "MEMVAULT_DEFAULT_PAGE_SIZE": "20"}
    with pytest.raises(SettingsError, match="MEMVAULT_DEFAULT_PAGE_SIZE"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "MEMVAULT_DEFAULT_PAGE_SIZE": "10"}).default_page_size == 10


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_settings_table_lists_every_setting() -> None:
    rows = settings_table()
    fields = dataclasses.fields(Settings)
    variables = [variable for variable, _, _ in rows]
    assert variables == [PREFIX + f.name.upper() for f in fields]
    assert len(set(variables)) == len(variables)
    defaults = Settings()
    for (variable, default, meaning), f in zip(rows, fields, strict=True):
        assert variable.startswith("MEMVAULT_")
        assert meaning.strip(), f"{variable} has no description"
        value = getattr(defaults, f.name)
        assert default == ("unset" if value is None else str(value)), variable


def _sample(name: str, default: object) -> tuple[str, object]:
    """A valid, non-default raw value for a setting, and the value it should read as."""
    special: dict[str, tuple[str, object]] = {
        "mongodb_uri": ("mongodb://example.test:27017", "mongodb://example.test:27017"),
        "database": ("other_db", "other_db"),
        "host": ("0.0.0.0", "0.0.0.0"),
        "log_level": ("WARNING", "WARNING"),
        "auth": ("required", "required"),
        "data_dir": ("/srv/memvault", Path("/srv/memvault")),
        "cors_origins": ("https://app.example.com", "https://app.example.com"),
        "log_format": ("json", "json"),
        "metrics_allow": ("10.0.0.0/8", "10.0.0.0/8"),
    }
    if name in special:
        return special[name]
    if isinstance(default, bool):
        return ("false" if default else "true", not default)
    if isinstance(default, int):
        return (str(default + 1), default + 1)
    if isinstance(default, float):
        return (str(default + 1.5), default + 1.5)
    return ("sample", "sample")


def test_every_listed_variable_is_read() -> None:
    for f in dataclasses.fields(Settings):
        variable = PREFIX + f.name.upper()
        raw, expected = _sample(f.name, f.default)
        try:
            settings = Settings.from_env({variable: raw})
        except SettingsError as exc:
            pytest.fail(f"{exc}: give {f.name} a valid sample value in _sample()")
        assert getattr(settings, f.name) == expected, variable


def _readme_spellings(default: str) -> set[str]:
    """Ways the README may write a default: as listed, or in the usual lower-case/short form."""
    spellings = {default.lower()}
    if default in {"True", "False"}:
        spellings.add(default.lower())
    if re.fullmatch(r"\d+\.0", default):
        spellings.add(default[:-2])
    if default == "unset":
        spellings |= {"unset", "none", "not set", "(unset)", "empty"}
    return spellings


def test_readme_documents_every_setting_with_its_default() -> None:
    if not README.exists():
        pytest.skip("README.md does not exist yet")
    lines = README.read_text().splitlines()
    missing = []
    for variable, default, _ in settings_table():
        found = [line for line in lines if re.search(rf"\b{variable}\b", line)]
        if not found:
            missing.append(f"{variable}: not mentioned")
            continue
        spellings = _readme_spellings(default)
        if not any(s in line.lower() for line in found for s in spellings):
            missing.append(f"{variable}: default {default!r} not on a line that names it")
    assert not missing, "README.md configuration is out of step:\n" + "\n".join(missing)
