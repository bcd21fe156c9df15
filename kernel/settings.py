"""Deployment settings: options win over STACKPULSE_* variables, which win over defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from stackpulse.kernel.topics import DEFAULT_ROOT


class SettingsError(ValueError):
    """A setting that cannot work; the message names the option, the variable and why."""

    def __init__(self, option: str | None, problem: str) -> None:
        """`option` None: a setting with no command-line option; `problem` names the variable."""
        if option is None:
            super().__init__(problem)
        else:
            variable = "STACKPULSE_" + option.removeprefix("--").replace("-", "_").upper()
            super().__init__(f"{option} ({variable}): {problem}")
        self.option = option


def default_db_url() -> str:
    """SQLite in the user's data folder: $XDG_DATA_HOME (else ~/.local/share)/stackpulse."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite://{Path(base).resolve() / 'stackpulse' / 'state.db'}"


class Settings(BaseSettings):
    """What every StackPulse process may be told (protocol.md section 6)."""

    model_config = SettingsConfigDict(env_prefix="STACKPULSE_", extra="ignore")

    layout: str = "examples/main/layout.yaml"  # several layouts: comma-separated paths
    broker: str = "mqtt://127.0.0.1:1883"
    store: str = "influxdb://127.0.0.1:8086/stackpulse"
    db: str = Field(default_factory=default_db_url)
    http: str = "127.0.0.1:8000"
    ops: str = ""  # HOST:PORT of /healthz, /readyz, /metrics for a process without the API
    root: str = DEFAULT_ROOT
    clock: str = "system"
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line, for a log shipper
    secret: SecretStr = SecretStr("")  # token signing key; environment only, never an option
    token_minutes: int = 60  # lifetime of a bearer token
    rate_limit: float = 20.0  # API requests per second per client address; 0: no limit
    rate_burst: int = 100

    def layout_paths(self) -> list[str]:
        return [p.strip() for p in self.layout.split(",") if p.strip()]

    def http_bind(self) -> tuple[str, int]:
        return _bind("--http", self.http)

    def ops_bind(self) -> tuple[str, int] | None:
        return _bind("--ops", self.ops) if self.ops else None


def _bind(option: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(option, f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8000")
    return host.strip("[]"), int(port)


# -- one settings class per component --------------------------------------------------


class ComponentSettings(BaseSettings):
    """Base of each component's settings: declared fields, bounds in `Field`, durations as
    `Duration`; read from `STACKPULSE_<COMPONENT>_<FIELD>` by `from_env`.

    Built once, in the composition root, and passed down; a bad value stops the start
    with one line naming the variable (`SettingsError`).
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable of field `name` (its first alias when it has several)."""
        return _variables(cls, name)[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> Self:
        """The settings from `env` (default os.environ), `given` values winning.

        Raises SettingsError naming the variable (or the field, for a `given` value).
        """
        env = os.environ if env is None else env
        unknown = set(given) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        source: dict[str, str] = {}
        for name in cls.model_fields:
            if name in given:
                values[name] = given[name]
                continue
            for var in _variables(cls, name):
                if var in env and env[var].strip():
                    values[name], source[name] = env[var].strip(), var
                    break
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            name = str(first["loc"][0]) if first["loc"] else ""
            msg = str(first["msg"]).removeprefix("Value error, ")
            if not name and msg.split(" ", 1)[0] in cls.model_fields:
                # A check across fields names the field at fault first ("capacity_clear ...").
                name, msg = msg.split(" ", 1)[0], msg.split(" ", 1)[1] if " " in msg else msg
            if name not in cls.model_fields:
                for field_name, info in cls.model_fields.items():
                    if name in _variables(cls, field_name) or name == info.alias:
                        name = field_name
            if name in source:
                shown = values[name] if len(str(values[name])) <= 40 else str(values[name])[:40]
                raise SettingsError(None, f"{source[name]}={shown!r}: {msg}") from None
            raise SettingsError(None, f"{cls.__name__}.{name or '?'}: {msg}") from None

    def described(self) -> list[tuple[str, str, str]]:
        """(variable, value, meaning) for every field, for `config check` and the docs."""
        out = []
        dumped = self.model_dump(mode="json")
        for name, info in type(self).model_fields.items():
            out.append((self.variable(name), str(dumped[name]), info.description or ""))
        return out


def _variables(cls: type[ComponentSettings], name: str) -> list[str]:
    info = cls.model_fields[name]
    alias = info.validation_alias
    prefix = str(cls.model_config.get("env_prefix", "STACKPULSE_"))
    own = (prefix + name).upper()
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [own] + [str(c).upper() for c in alias.choices if isinstance(c, str) and c != own]
    return [own]
