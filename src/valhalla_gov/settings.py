"""Runtime settings, read from ``VALHALLA_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .database_url import EXAMPLE_URL, database_url

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class Settings(BaseSettings):
    # An empty variable (``VALHALLA_REDIS_URL=`` as compose files write it)
    # means unset, as for every other program reading the environment.
    model_config = SettingsConfigDict(env_prefix="VALHALLA_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the JSON files live, relative to the working directory or "
        "absolute (with a database: where `owner.token` lives); `--data-dir` overrides it.",
    )
    database_url: str | None = Field(
        default=None,
        description="The SQL backend instead of files: `postgresql://user@host/db` (also "
        "written `postgres://` or `postgresql+psycopg://`) or `sqlite:///path/to/file.db`.",
        examples=[EXAMPLE_URL],
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Database connections per process (SQL backend), plus one for the "
        "generation read: workers x replicas x (this + 1) must fit the database's "
        "`max_connections`.",
    )
    canon_file: Path | None = Field(
        default=None,
        description="JSON or YAML file replacing the default engine canon and band matrix.",
        examples=["/etc/valhalla/canon.yaml"],
    )
    playbook_file: Path | None = Field(
        default=None,
        description='JSON or YAML file replacing the default GO playbook (`{"steps": [...]}`).',
        examples=["/etc/valhalla/playbook.yaml"],
    )
    log_level: str = Field(
        default="info",
        description="The least important log lines written: " + ", ".join(LOG_LEVELS) + " "
        "(uvicorn's lines too); `valhalla serve --log-level` overrides it.",
    )
    log_format: Literal["auto", "text", "json"] = Field(
        default="auto",
        description="Log lines as readable `text` or as `json` (one object per line, for a "
        "log collector); `auto`: text when stderr is a terminal, JSON otherwise.",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db: share rate-limit counters between workers and replicas.",
        examples=["redis://127.0.0.1:6379/0"],
    )
    rate_limit_start_session: str = Field(
        default="10/hour",
        description="Limit on POST /core/go/start_session per credential ('N/second', "
        "'N/minute', 'N/hour' or 'N/day').",
    )
    rate_limit_writes: str = Field(
        default="120/minute",
        description="Limit on every other write (and audited cone decision) per credential.",
    )
    rate_limit_dir: Path | None = Field(
        default=None,
        description="Directory for rate-limit counters shared by worker processes on this "
        "host (a SQLite file); `valhalla serve --workers N` sets a fresh one when no Redis "
        "is configured.",
        examples=["/run/valhalla/ratelimit"],
    )
    rate_limit_fail_open: bool = Field(
        default=False,
        description="With VALHALLA_REDIS_URL set and Redis unreachable: allow writes (true) or "
        "refuse them with 503 (false).",
    )
    events_keepalive_seconds: float = Field(
        default=15,
        gt=0,
        le=15,
        description="Seconds between keep-alive comments on a quiet event stream (at most 15).",
    )
    events_max_streams: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Open event streams per credential, per server process (429 past it).",
    )
    events_poll_seconds: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="How often streams look for new audit events (default: 0.2 s on files, "
        "0.5 s on SQLite, 2 s on PostgreSQL where LISTEN/NOTIFY wakes them at once).",
        examples=[0.5],
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call the API from a browser (every "
        "other site's requests get 403).",
        examples=["https://ops.example.com"],
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated Host names served besides localhost, 127.0.0.1, ::1 and the "
            "bound address; any other Host header gets 421 (DNS rebinding)."
        ),
        examples=["valhalla.example.com"],
    )
    bind_host: str | None = Field(
        default=None,
        description="The address `valhalla serve` bound (set by serve itself).",
        examples=["127.0.0.1"],
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated proxy addresses whose X-Forwarded-For/-Proto are believed; "
            "none by default."
        ),
        examples=["127.0.0.1"],
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request body, in bytes (413 past it).",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds allowed to send a whole request body (408 past it).",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds allowed to send a request's headers (the connection is closed "
        "past it).",
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
        description="Seconds for a client to take an answer's pending output before its "
        "connection is closed.",
    )

    # Webhooks (src/valhalla_gov/webhooks, docs/webhooks.md). Times are
    # settings so that tests (and impatient operators) can shrink them.
    webhook_key: SecretStr | None = Field(
        default=None,
        description="Master key the webhook signing secrets are derived from (at least 32 "
        "characters); the same on every replica. Default: a key file made on first use "
        "(see VALHALLA_WEBHOOK_KEY_FILE).",
        examples=["$(openssl rand -hex 32)"],
    )
    webhook_key_file: Path | None = Field(
        default=None,
        description="File holding the webhook master key (default: DATA_DIR/webhook.key).",
        examples=["/etc/valhalla/webhook.key"],
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
    webhook_connect_timeout: float = Field(
        default=3.0, gt=0, le=60, description="Seconds allowed to connect to a receiver."
    )
    webhook_read_timeout: float = Field(
        default=10.0, gt=0, le=120, description="Seconds allowed for a receiver's answer."
    )
    webhook_max_response_bytes: int = Field(
        default=65536,
        ge=0,
        le=1 << 20,
        description="Bytes of a receiver's answer read at most (the rest is not read).",
    )
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
            raise ValueError("must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # The sender renews its lease when half of it is left: one whole send
        # (connect + read) must fit in that half, or two senders could overlap.
        send = self.webhook_connect_timeout + self.webhook_read_timeout
        if send >= self.webhook_lease_seconds / 2:
            raise ValueError(
                f"VALHALLA_WEBHOOK_LEASE_SECONDS ({self.webhook_lease_seconds:g}) must be more "
                "than twice VALHALLA_WEBHOOK_CONNECT_TIMEOUT + VALHALLA_WEBHOOK_READ_TIMEOUT "
                f"({send:g}), for example VALHALLA_WEBHOOK_LEASE_SECONDS={2 * send + 1:g}"
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
        return None if value is None else database_url(value)

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


def _env_value(value: object) -> str:
    """A value as it is written in the environment."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def good_value(name: str) -> str | None:
    """An example of a good value for a setting, as written in the environment."""
    field = Settings.model_fields[name]
    if field.examples:
        return _env_value(field.examples[0])
    default = field.get_default(call_default_factory=True)
    if default is None or default == []:
        return None
    return _env_value(default)


SECRETS = frozenset(["webhook_key"])


def explain(exc: ValidationError, *, flags: Mapping[str, str] | None = None) -> str:
    """A refused setting in one line: its name (the environment variable, or
    the flag in ``flags`` that gave it), the value's problem in words and a
    good value, for each problem found ("; " between them)."""
    from .plain_errors import plain_message

    flags = flags or {}
    problems = []
    for error in exc.errors():
        what = plain_message(error)
        if not error["loc"]:  # a check across settings: its message names them
            problems.append(what)
            continue
        name = str(error["loc"][0])
        flag = flags.get(name)
        shown = flag or f"VALHALLA_{name.upper()}"
        if what.startswith(("must ", "is ")) and name not in SECRETS:
            what = f"{_env_value(error['input'])!r} {what}"
        line = f"{shown}: {what}"
        # A check may know a better example than the field's (the SQLite URL
        # of a plain path given as a database URL).
        good = getattr((error.get("ctx") or {}).get("error"), "example", None)
        if good is None and name in Settings.model_fields:
            good = good_value(name)
        if good is not None:
            line += f" (for example {flag} {good})" if flag else f" (for example {shown}={good})"
        problems.append(line)
    return "; ".join(problems)


# docs/configuration.md holds this table between these two lines
# (tests/docs/test_configuration.py keeps it equal to the model).
TABLE_START = "<!-- settings table: generated by `python -m valhalla_gov.settings --write FILE` -->"
TABLE_END = "<!-- end of the settings table -->"


def _default_cell(name: str) -> str:
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if default == []:
        return "none"
    return f"`{_env_value(default)}`"


def settings_table() -> str:
    """Every setting as a Markdown table: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `VALHALLA_{name.upper()}` | {_default_cell(name)} | {meaning} |")
    return "\n".join(rows) + "\n"


def write_table(path: Path) -> None:
    """Replace the table between :data:`TABLE_START` and :data:`TABLE_END` in ``path``."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(TABLE_START + "\n")
    _, _, tail = rest.partition(TABLE_END)
    if not rest or TABLE_END not in rest:
        raise SystemExit(f"{path}: no {TABLE_START!r} ... {TABLE_END!r} block")
    path.write_text(head + TABLE_START + "\n" + settings_table() + TABLE_END + tail, "utf-8")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m valhalla_gov.settings",
        description="Print every setting as a Markdown table, or rewrite it in a file.",
    )
    parser.add_argument("--write", type=Path, metavar="FILE", help="rewrite the table in FILE")
    args = parser.parse_args(argv)
    if args.write is not None:
        write_table(args.write)
    else:
        print(settings_table(), end="")


if __name__ == "__main__":
    main()
