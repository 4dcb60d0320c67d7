"""``valhalla webhook ...``: signed notifications of audited events.

Thin on purpose: each command is one call through :class:`_Hooks`, which
maps it onto the services (local data dir) or the HTTP API (``--url``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import DataDirOption, JsonOption
from .remote import (
    REFUSED,
    Backend,
    CliError,
    LocalBackend,
    RemoteBackend,
    TokenOption,
    UrlOption,
    open_backend,
    reported,
)
from .render import cell, print_json, short_time, show, table

if TYPE_CHECKING:
    from ..webhooks.models import TestResult, WebhookCreated, WebhookInfo

webhook_app = typer.Typer(
    help="Webhooks: signed POSTs of audited events (session start/end, band moves, health "
    "changes ...) to your chat or tooling, retried until delivered.",
    no_args_is_help=True,
)


class _Hooks:
    """The four webhook operations, locally or over HTTP."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def add(self, body: dict[str, Any]) -> WebhookCreated:
        from ..webhooks.models import WebhookCreate, WebhookCreated

        b = self.backend
        if isinstance(b, RemoteBackend):
            return b._parse(WebhookCreated, b._request("POST", "/core/webhooks", body=body))
        local = _local(b)

        def call() -> WebhookCreated:
            from ..webhooks.keys import load_key
            from ..webhooks.service import add_webhook

            key = load_key(local.ctx.settings, create=True)
            assert key is not None  # create=True makes one
            info, secret = add_webhook(
                store=local.ctx.store,
                key=key,
                spec=WebhookCreate.model_validate(body),
                actor=local.actor,
                clock=local.ctx.clock,
            )
            return WebhookCreated(webhook=info, secret=secret)

        return local._run(call)

    def list(self) -> list[WebhookInfo]:
        from pydantic import TypeAdapter

        from ..webhooks.models import WebhookInfo

        b = self.backend
        if isinstance(b, RemoteBackend):
            raw = b._request("GET", "/core/webhooks")
            try:
                return TypeAdapter(list[WebhookInfo]).validate_python(raw)
            except ValueError:
                raise CliError(f"{b.url} answered with an unexpected webhook list") from None
        from ..webhooks.service import list_webhooks

        local = _local(b)
        return local._run(lambda: list_webhooks(store=local.ctx.store))

    def remove(self, name: str) -> None:
        from urllib.parse import quote

        b = self.backend
        if isinstance(b, RemoteBackend):
            b._request("DELETE", f"/core/webhooks/{quote(name, safe='')}")
            return
        from ..webhooks.service import remove_webhook

        local = _local(b)
        local._run(
            lambda: remove_webhook(
                store=local.ctx.store, name=name, actor=local.actor, clock=local.ctx.clock
            )
        )

    def test(self, name: str) -> TestResult:
        from urllib.parse import quote

        from ..webhooks.models import TestResult

        b = self.backend
        if isinstance(b, RemoteBackend):
            path = f"/core/webhooks/{quote(name, safe='')}/test"
            return b._parse(TestResult, b._request("POST", path))
        local = _local(b)

        def call() -> TestResult:
            import asyncio

            from ..webhooks.keys import load_key
            from ..webhooks.sender import Sender
            from ..webhooks.service import get_webhook, send_test

            settings = local.ctx.settings
            hook = get_webhook(store=local.ctx.store, name=name)
            key = load_key(settings, create=False)

            async def send() -> TestResult:
                sender = Sender(
                    connect=settings.webhook_connect_timeout,
                    read=settings.webhook_read_timeout,
                    max_bytes=settings.webhook_max_response_bytes,
                )
                try:
                    return await send_test(
                        hook=hook, key=key, sender=sender, actor=local.actor, clock=local.ctx.clock
                    )
                finally:
                    await sender.aclose()

            return asyncio.run(send())

        return local._run(call)


def _local(backend: Backend) -> LocalBackend:
    assert isinstance(backend, LocalBackend)
    return backend


def _events(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="The receiver: an http:// or https:// URL.")],
    name: Annotated[
        str | None, typer.Option(help="A name for it (default: from the URL's host).")
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated audit events, or 'all' (default: GO_SESSION_START, "
            "GO_SESSION_END, CONE_SET, HEALTH_CHANGED).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="json (the audit record), or slack (readable text)."),
    ] = "json",
    data_dir: DataDirOption = None,
    url_: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a webhook. Its signing secret is printed once, alone on the last line."""
    if fmt not in ("json", "slack"):
        raise typer.BadParameter(f"{fmt!r}: choose json or slack", param_hint="'--format'")
    body: dict[str, Any] = {"url": url, "name": name, "events": _events(events), "format": fmt}
    with reported(), open_backend(data_dir, url_, token) as backend:
        created = _Hooks(backend).add(body)
    hook = created.webhook
    if as_json:
        print_json(created)
        return
    typer.echo(f"added webhook {hook.name!r} -> {hook.url}")
    typer.echo(f"events: {', '.join(hook.events)}; format: {hook.format}")
    typer.echo(
        "Deliveries carry X-Valhalla-Signature: sha256=HMAC-SHA256(secret, body). "
        "The secret is shown only now:"
    )
    typer.echo(created.secret)


@webhook_app.command("list")
def webhook_list(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Webhooks with their last delivery and failures (never the secrets)."""
    with reported(), open_backend(data_dir, url, token) as backend:
        hooks = _Hooks(backend).list()
    if as_json:
        print_json(hooks)
        return
    if not hooks:
        typer.echo("no webhooks; add one with `valhalla webhook add URL`")
        return
    out = table("name", "url", "events", "format", "created", "last delivery", "failures")
    for hook in hooks:
        d = hook.delivery
        last = "-"
        if d.last_attempt_at_utc:
            result = f"HTTP {d.last_status}" if d.last_status is not None else "no answer"
            last = f"{short_time(d.last_attempt_at_utc)} {result}"
        failures = []
        if d.failing:
            retry = short_time(d.next_attempt_at_utc) if d.next_attempt_at_utc else "-"
            failures.append(f"failing ({d.pending_attempts} tries, next {retry}): {d.last_error}")
        if d.gave_up:
            failures.append(f"{d.gave_up} events given up")
        out.add_row(
            cell(hook.name),
            cell(hook.url),
            cell(", ".join(hook.events)),
            cell(hook.format),
            cell(short_time(hook.created_at_utc)),
            cell(f"{last}; {d.delivered} delivered"),
            cell("; ".join(failures) or "none"),
        )
    show(out)


@webhook_app.command("remove")
def webhook_remove(
    name: Annotated[str, typer.Argument(help="The webhook's name.")],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Remove a webhook; events not yet delivered to it are dropped."""
    with reported(), open_backend(data_dir, url, token) as backend:
        _Hooks(backend).remove(name)
    typer.echo(f"removed webhook {name!r}")


@webhook_app.command("test")
def webhook_test(
    name: Annotated[str, typer.Argument(help="The webhook's name.")],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a signed WEBHOOK_TEST event now and print the receiver's answer."""
    with reported(), open_backend(data_dir, url, token) as backend:
        result = _Hooks(backend).test(name)
    if as_json:
        print_json(result)
    elif result.ok:
        typer.echo(
            f"{result.name}: the receiver answered HTTP {result.status} "
            f"in {result.duration_ms:.0f} ms"
        )
    if not result.ok:
        if not as_json:
            typer.secho(f"{result.name}: not delivered: {result.error}", fg="red", err=True)
        raise typer.Exit(REFUSED)
