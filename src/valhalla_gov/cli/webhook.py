"""``valhalla webhook ...``: signed notifications of audited events.

Thin on purpose: each command is one call to ``/core/webhooks``, on the data
dir's own app or on a server (``--url``), like every command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .client import (
    REFUSED,
    DataDirOption,
    JsonOption,
    TokenOption,
    UrlOption,
    open_service,
    reported,
)
from .helpstyle import App
from .render import Column, WideOption, cell, print_json, short_time, show, table

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
webhook_app = App(rich_markup_mode=None, no_args_is_help=True)


def _path(name: str) -> str:
    from urllib.parse import quote

    return f"/core/webhooks/{quote(name, safe='')}"


@webhook_app.command("add")
def webhook_add(
    url: Annotated[
        str, typer.Argument(metavar="URL", help="The receiver: an http:// or https:// URL.")
    ],
    name: Annotated[
        str | None, typer.Option(help="A name for it (default: from the URL's host).")
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated audit events in any case, or 'all' (default: "
            "GO_SESSION_START, GO_SESSION_END, CONE_SET, HEALTH_CHANGED).",
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
    # The server strips the names and drops empty ones.
    listed = None if events is None else events.split(",")
    body: dict[str, Any] = {"url": url, "name": name, "events": listed, "format": fmt}
    from ..webhooks.models import WebhookCreated

    with reported(), open_service(data_dir, url_, token) as service:
        created = service.post(WebhookCreated, "/core/webhooks", body)
    hook = created.webhook
    if as_json:
        print_json(created)
        return
    typer.echo(f"added webhook {hook.name!r} -> {hook.url}")
    typer.echo(f"events: {', '.join(hook.events)}; format: {hook.format}")
    typer.echo(
        "Deliveries carry X-Valhalla-Timed-Signature: t=<unix time>,"
        'v1=HMAC-SHA256(secret, "<t>.<body>"); check it as docs/webhooks.md shows. '
        "The secret is shown only now:"
    )
    typer.echo(created.secret)


@webhook_app.command("list")
def webhook_list(
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Webhooks with their last delivery and failures (never the secrets)."""
    from ..webhooks.models import WebhookList

    with reported(), open_service(data_dir, url, token) as service:
        hooks = service.get(WebhookList, "/core/webhooks").root
    if as_json:
        print_json(hooks)
        return
    if not hooks:
        typer.echo("no webhooks; add one with `valhalla webhook add URL`")
        return
    out = table(
        "name",
        "url",
        Column("events", wrap=True, optional=True),
        Column("format", optional=True),
        Column("created (UTC)", optional=True),
        Column("last delivery", wrap=True),
        Column("failures", wrap=True),
    )
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
            cell(short_time(hook.created_at_utc, zone=False)),
            cell(f"{last}; {d.delivered} delivered"),
            cell("; ".join(failures) or "none"),
        )
    show(out, wide=wide)


@webhook_app.command("remove")
def webhook_remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The webhook's name.")],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Remove a webhook; events not yet delivered to it are dropped."""
    from ..webhooks.models import WebhookRemoved

    with reported(), open_service(data_dir, url, token) as service:
        service.call(WebhookRemoved, "DELETE", _path(name))
    typer.echo(f"removed webhook {name!r}")


@webhook_app.command("test")
def webhook_test(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The webhook's name.")],
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a signed WEBHOOK_TEST event now and print the receiver's answer."""
    from ..webhooks.models import TestResult

    with reported(), open_service(data_dir, url, token) as service:
        result = service.call(TestResult, "POST", f"{_path(name)}/test")
    if as_json:
        print_json(result)
    elif result.ok:
        answer = f"HTTP {result.status} in {result.duration_ms:.0f} ms"
        typer.echo(f"{result.name}: the receiver answered {answer}")
    else:
        typer.secho(f"{result.name}: not delivered: {result.error}", fg="red", err=True)
    if not result.ok:
        raise typer.Exit(REFUSED)
