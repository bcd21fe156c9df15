"""Deployment settings: options win over STACKPULSE_* variables, which win over defaults."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
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
        host, sep, port = self.http.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError("--http", f"{self.http!r} is not HOST:PORT, e.g. 127.0.0.1:8000")
        return host.strip("[]"), int(port)
