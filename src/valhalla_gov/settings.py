"""Runtime settings, read from ``VALHALLA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from limits import parse
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALHALLA_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the JSON files live.")
    database_url: str | None = Field(
        default=None,
        description="postgresql+psycopg://... or sqlite:///path: the SQL backend instead of files.",
    )
    database_pool_size: int = Field(
        default=10, ge=1, le=200, description="Database connections per process (SQL backend)."
    )
    canon_file: Path | None = Field(
        default=None, description="JSON or YAML file replacing the default engine canon."
    )
    playbook_file: Path | None = Field(
        default=None, description="JSON or YAML file replacing the default GO playbook."
    )
    log_level: str = Field(default="info")
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db: share rate-limit counters."
    )
    rate_limit_start_session: str = Field(
        default="10/hour", description="Limit on POST /core/go/start_session per identity."
    )
    rate_limit_writes: str = Field(
        default="120/minute", description="Limit on every other write per identity."
    )
    rate_limit_fail_open: bool = Field(
        default=False, description="Allow writes (true) or refuse them (false) without Redis."
    )
    events_keepalive_seconds: float = Field(
        default=15, gt=0, le=15, description="Keep-alive comment interval on event streams."
    )
    events_max_streams: int = Field(
        default=8, ge=1, le=1000, description="Open event streams per client (token or address)."
    )
    events_poll_seconds: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="How often streams look for new audit events (default: 0.2 s on files, "
        "0.5 s on SQLite, 2 s on PostgreSQL where LISTEN/NOTIFY wakes them at once).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS."
    )

    @field_validator("rate_limit_start_session", "rate_limit_writes")
    @classmethod
    def _limit_notation(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as '10/hour'") from exc
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
