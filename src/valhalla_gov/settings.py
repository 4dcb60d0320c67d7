"""Runtime settings, read from ``VALHALLA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# (backend, driver) pairs this package ships the driver for.
SUPPORTED_DATABASES = frozenset([("postgresql", "psycopg"), ("sqlite", "pysqlite")])


class Settings(BaseSettings):
    # An empty variable (``VALHALLA_REDIS_URL=`` as compose files write it)
    # means unset, as for every other program reading the environment.
    model_config = SettingsConfigDict(env_prefix="VALHALLA_", extra="ignore", env_ignore_empty=True)

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
    rate_limit_dir: Path | None = Field(
        default=None,
        description="Directory for rate-limit counters shared by worker processes on this "
        "host (a SQLite file); `valhalla serve --workers N` sets a fresh one when no Redis "
        "is configured.",
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
        le=60,
        description="How often streams look for new audit events (default: 0.2 s on files, "
        "0.5 s on SQLite, 2 s on PostgreSQL where LISTEN/NOTIFY wakes them at once).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated Host names served besides localhost, 127.0.0.1, ::1 and the "
            "bound address; any other Host header gets 421 (DNS rebinding)."
        ),
    )
    bind_host: str | None = Field(
        default=None, description="The address `valhalla serve` bound (set by serve itself)."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated proxy addresses whose X-Forwarded-For/-Proto are believed; "
            "none by default."
        ),
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest request body."
    )
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Time allowed to send a whole request body."
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Time allowed to send a request's headers."
    )
    max_connections: int = Field(
        default=200,
        ge=1,
        le=100_000,
        description="Connections busy with a request, per worker, before 503 (a connection "
        "waiting for its next request's headers does not count).",
    )
    max_connections_per_client: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Requests in progress per client address, per worker (all of loopback is "
        "one client, an IPv6 /64 one, a trusted proxy four); idle connections do not count.",
    )
    max_open_connections: int = Field(
        default=4096,
        ge=16,
        le=1_000_000,
        description="Open connections per worker (fewer if the fd limit is low: it stays 256 "
        "under it); past it the oldest idle or stalled connection is closed.",
    )
    stall_grace_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="How long a connection may send a request, or leave an answer untaken, "
        "before it may be closed to make room for another when the limits are reached.",
    )
    write_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Time for a client to take an answer's pending output before its "
        "connection is closed.",
    )

    # Webhooks (src/valhalla_gov/webhooks, docs/webhooks.md). Times are
    # settings so that tests (and impatient operators) can shrink them.
    webhook_key: SecretStr | None = Field(
        default=None,
        description="Master key the webhook signing secrets are derived from; the same on "
        "every replica. Default: a key file made on first use (see webhook_key_file).",
    )
    webhook_key_file: Path | None = Field(
        default=None,
        description="File holding the webhook master key (default: DATA_DIR/webhook.key).",
    )
    webhook_worker: bool = Field(
        default=True, description="Run the webhook delivery task in this process."
    )
    webhook_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the sender looks for new events."
    )
    webhook_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long one process holds the sender lease (taken only to send, "
        "renewed at half its life while sending).",
    )
    webhook_connect_timeout: float = Field(default=3.0, gt=0, le=60)
    webhook_read_timeout: float = Field(default=10.0, gt=0, le=120)
    webhook_max_response_bytes: int = Field(default=65536, ge=0, le=1 << 20)
    webhook_retry_base_seconds: float = Field(
        default=2.0, gt=0, le=3600, description="The first retry's delay; it doubles each time."
    )
    webhook_retry_max_seconds: float = Field(
        default=300.0, gt=0, le=86400, description="The longest delay between two retries."
    )
    webhook_give_up_seconds: float = Field(
        default=86400.0, gt=0, description="Give up on an event this long after it was written."
    )

    @field_validator("webhook_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("webhook_key must be at least 32 characters (e.g. 64 hex digits)")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # The sender renews its lease when half of it is left: one whole send
        # (connect + read) must fit in that half, or two senders could overlap.
        send = self.webhook_connect_timeout + self.webhook_read_timeout
        if send >= self.webhook_lease_seconds / 2:
            raise ValueError(
                f"webhook_lease_seconds ({self.webhook_lease_seconds:g}) must be more than twice "
                f"the connect + read timeouts ({send:g})"
            )
        return self

    @field_validator("rate_limit_start_session", "rate_limit_writes")
    @classmethod
    def _limit_notation(cls, value: str, info: ValidationInfo) -> str:
        # The defaults are known good (tests/auth/test_rate_limits.py parses them):
        # importing `limits` for them would cost every CLI command ~0.05 s.
        if info.field_name and value == cls.model_fields[info.field_name].default:
            return value
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as '10/hour'") from exc
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # Checked here, so a typo is one line at start-up, not a traceback
        # from the Redis client (nor a 503 on every write).
        if value is None:
            return None
        from redis.connection import parse_url

        try:
            parse_url(value)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ValueError(f"not a Redis URL such as redis://127.0.0.1:6379/0 ({exc})") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        example = "postgresql+psycopg://user@host/db or sqlite:///path/to/file.db"
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL such as {example}") from None
        if (url.get_backend_name(), url.get_driver_name()) not in SUPPORTED_DATABASES:
            raise ValueError(f"{url.drivername!r} is not supported; use {example}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (such as 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("cors_origins", "allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
