"""``valhalla data ...``: move everything between a JSON data dir and a database,
back it up while it serves, prune old records of the logs that may lose them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .client import USAGE, CliError, fail, reported
from .db import UrlOption, database_url
from .helpstyle import App

if TYPE_CHECKING:
    from ..settings import Settings
    from ..storage.protocol import Store
    from ..transfer import TransferReport

# Its help is in cli/__init__.py (GROUPS), shown without importing this module.
data_app = App(rich_markup_mode=None)


def _run(source: Store, target: Store) -> TransferReport:
    from ..errors import ConflictError
    from ..storage.errors import StorageError
    from ..transfer import copy_store

    try:
        report = copy_store(source, target)
    except ConflictError as exc:
        fail(CliError(f"refused: {exc.detail}"))
    except StorageError as exc:
        fail(CliError(f"storage error: {exc}; it is left as it was: repair it or move it aside"))
    except ValueError as exc:
        fail(CliError(f"the copy does not check out: {exc}"))
    typer.echo(f"copied {source.describe()} -> {target.describe()}")
    for log, count in report.records.items():
        typer.echo(f"  {log}: {count} records")
    typer.echo(f"  documents: {', '.join(report.documents) or 'none'}")
    if report.audit is not None:
        typer.echo(
            f"  audit chain: ok={report.audit.ok}, {report.audit.events} chained, "
            f"{report.audit.legacy_events} legacy"
        )
    return report


def _database(url: str | None) -> Store:
    from ..compose import open_sql
    from ..storage.sql_backend import SchemaOutOfDateError

    try:
        return open_sql(database_url(url))
    except SchemaOutOfDateError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None


@data_app.command("import")
def data_import(
    source_dir: Annotated[
        Path, typer.Option("--from", metavar="DIR", help="JSON data dir to read.")
    ],
    url: UrlOption = None,
) -> None:
    """Copy a JSON data dir into the (empty) database, then check counts and the chain."""
    if not source_dir.is_dir():
        typer.secho(f"{source_dir} is not a directory", fg="red", err=True)
        raise typer.Exit(2)
    from ..compose import open_json

    _run(open_json(source_dir, create=False), _database(url))


@data_app.command("export")
def data_export(
    target_dir: Annotated[
        Path, typer.Option("--to", metavar="DIR", help="Empty or new directory to write.")
    ],
    url: UrlOption = None,
) -> None:
    """Copy the database into a JSON data dir, then check counts and the chain."""
    from ..compose import open_json

    _run(_database(url), open_json(target_dir))


SourceDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="JSON data dir (default: $VALHALLA_DATABASE_URL if set, else $VALHALLA_DATA_DIR "
        "or ./data).",
        show_default=False,
    ),
]


def _source(data_dir: Path | None, url: str | None) -> tuple[Store, Settings]:
    """The store a maintenance command works on: --database-url, --data-dir,
    else what the settings say (as `valhalla serve` would open)."""
    from ..compose import open_json
    from ..storage.errors import StorageError
    from .local import check_dir, load_settings

    if data_dir is not None and url is not None:
        fail(CliError("error: pass --data-dir or --database-url, not both", USAGE))
    with reported():
        settings = load_settings(data_dir)
        if url is None and data_dir is None and settings.database_url:
            url = settings.database_url
        if url is not None:
            return _database(url), settings
        check_dir(settings.data_dir, flag=data_dir is not None)
        try:
            return open_json(settings.data_dir, create=False), settings
        except StorageError as exc:
            raise CliError(f"storage error: {exc}") from None


@data_app.command("backup")
def data_backup(
    target_dir: Annotated[
        Path,
        typer.Option(
            "--to", metavar="DIR", help="New or empty directory: the backup, a JSON data dir."
        ),
    ],
    data_dir: SourceDirOption = None,
    url: UrlOption = None,
    allow_broken_chain: Annotated[
        bool,
        typer.Option(
            "--allow-broken-chain",
            help="Copy a source whose audit chain does not verify, as it is (to keep the "
            "evidence); refused by default.",
        ),
    ] = False,
) -> None:
    """Back up the data while the server runs: one consistent snapshot into a private
    JSON data dir, checked (counts, documents, audit chain) before it says done."""
    from ..errors import ConflictError
    from ..storage.errors import StorageError
    from ..storage.json_backend import JsonStore
    from ..transfer import DATA_DIR_SECRETS, BrokenChainError, backup

    source, settings = _source(data_dir, url)
    secrets: dict[str, Path] = {}
    if isinstance(source, JsonStore):
        secrets = {name: source.data_dir / name for name in DATA_DIR_SECRETS}
    if settings.webhook_key_file is not None:
        secrets["webhook.key"] = settings.webhook_key_file
    try:
        report = backup(source, target_dir, secrets=secrets, allow_broken_chain=allow_broken_chain)
    except ConflictError as exc:
        fail(CliError(f"refused: {exc.detail}", USAGE))
    except BrokenChainError as exc:
        fail(
            CliError(
                f"refused: {exc}; nothing was copied. Run `valhalla audit verify` and compare "
                "audit.log with an earlier backup; --allow-broken-chain copies it as it is"
            )
        )
    except StorageError as exc:
        fail(CliError(f"storage error: {exc}; nothing was written to {target_dir}"))
    except OSError as exc:
        fail(CliError(f"cannot write the backup: {exc}; nothing was kept"))
    except ValueError as exc:
        fail(CliError(f"the backup does not check out: {exc}; nothing was kept"))
    typer.echo(f"backed up {source.describe()} -> {target_dir}")
    for log, count in report.records.items():
        typer.echo(f"  {log}: {count} records")
    typer.echo(f"  documents: {', '.join(report.documents) or 'none'}")
    typer.echo(f"  secret files: {', '.join(report.secrets) or 'none'}")
    audit = report.audit
    if audit is not None:
        state = "ok" if audit.ok else f"BROKEN at seq {audit.first_bad_seq}, copied as it is"
        typer.echo(f"  audit chain: {state}, {audit.events} chained, {audit.legacy_events} legacy")
    if not isinstance(source, JsonStore) and settings.webhook_key_file is None:
        typer.echo(
            "  note: the webhook master key is not in the database; keep "
            "VALHALLA_WEBHOOK_KEY with this backup"
        )
    typer.echo(f"done: {target_dir} verified")


@data_app.command("prune")
def data_prune(
    decisions: Annotated[
        str | None,
        typer.Option(
            "--decisions-older-than",
            metavar="AGE",
            help="Drop cone decisions older than AGE (30m, 12h, 90d, 2w).",
            show_default=False,
        ),
    ] = None,
    server_errors: Annotated[
        str | None,
        typer.Option(
            "--server-errors-older-than",
            metavar="AGE",
            help="Drop server error records older than AGE.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    data_dir: SourceDirOption = None,
    url: UrlOption = None,
) -> None:
    """Drop old cone decisions and server errors (never what health reads, never the
    audit log), under the store's lock; audited as DATA_PRUNED."""
    from ..prune import parse_duration, prune
    from ..storage.errors import StorageError
    from ..timeutil import utc_now

    if decisions is None and server_errors is None:
        fail(
            CliError(
                "error: say what to prune: --decisions-older-than AGE and/or "
                "--server-errors-older-than AGE",
                USAGE,
            )
        )
    for given in (decisions, server_errors):
        try:
            if given is not None:
                parse_duration(given)
        except ValueError as exc:
            fail(CliError(f"error: {exc}", USAGE))
    source, _ = _source(data_dir, url)
    try:
        report = prune(
            store=source,
            clock=utc_now,
            actor="local",
            decisions_older_than=decisions,
            server_errors_older_than=server_errors,
            dry_run=dry_run,
        )
    except StorageError as exc:
        fail(CliError(f"storage error: {exc}; nothing was pruned"))
    verb = "would remove" if dry_run else "removed"
    for pruned in report.logs:
        typer.echo(
            f"{pruned.log}: {verb} {pruned.dropped} older than {pruned.older_than} "
            f"(before {pruned.cutoff_utc}), kept {pruned.kept}"
            + (
                f" ({pruned.kept_for_health} older ones health still reads)"
                if pruned.kept_for_health
                else ""
            )
        )
    if report.event is not None:
        typer.echo(f"audited as {report.event.event} (seq {report.event.seq})")
    elif dry_run:
        typer.echo("dry run: nothing changed")
