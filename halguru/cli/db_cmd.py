"""`halguru db`: the store's database: its migrations (status, migrate) and copying an installation to another
database (SQLite to PostgreSQL when scaling out, or back). The work is in ``halguru.store.admin``."""

from __future__ import annotations

import datetime as dt

import typer

app = typer.Typer(help="The store's database: migration status, migrate, copy to another database (SQLite or "
                  "PostgreSQL).", no_args_is_help=True)

URL_HELP = ("The database: sqlite:PATH or postgresql://USER:PASSWORD@HOST:PORT/DB (default: the configured one, "
            "HALGURU_DATABASE_URL or the SQLite file in HALGURU_HOME).")


def _target(url: str | None) -> str:
    from halguru.store.admin import configured_target

    return url or configured_target()


@app.command()
def status(url: str | None = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """List the database's migrations, applied (with when) and pending. Applies nothing."""
    from halguru.cli.table import print_table
    from halguru.store.admin import migration_status

    states = migration_status(_target(url))
    print_table(["MIGRATION", "APPLIED"],
                [[s.name, dt.datetime.fromtimestamp(s.applied).strftime("%Y-%m-%d %H:%M:%S") if s.applied
                  else "pending"] for s in states])
    pending = sum(s.applied is None for s in states)
    typer.echo(f"{pending} pending: run `halguru db migrate`." if pending else "Up to date.")


@app.command()
def migrate(url: str | None = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Apply the pending migrations (one transaction; replicas starting meanwhile wait for it)."""
    from halguru.store.admin import migrate as apply_migrations

    applied = apply_migrations(_target(url))
    typer.echo(f"Applied {len(applied)}: {', '.join(applied)}." if applied else "Nothing to apply: up to date.")


@app.command()
def copy(
    source: str = typer.Option(..., "--from", help="The database to copy: sqlite:PATH or postgresql://..."),
    target: str = typer.Option(..., "--to", help="The database to fill: postgresql://... or sqlite:PATH."),
    force: bool = typer.Option(False, "--force", help="Empty the target's tables first if it holds rows (in the "
                               "same transaction): it ends as a copy of the source."),
    rate_hits: bool = typer.Option(False, "--rate-hits", help="Copy rate-limit hits too (each gone within an hour: "
                                   "chat messages, sign-ins, account mails)."),
) -> None:
    """Copy every table (conversations, messages, runs and events, checkpoints, approvals, API keys, jobs and
    their effects, channel threads and messages, schedules) in one transaction on the target, and check each
    table's row count. Refuses a target that holds rows, unless --force."""
    from halguru.cli.table import print_table
    from halguru.store.admin import copy_database

    copied = copy_database(source, target, force=force, rate_hits=rate_hits)
    print_table(["TABLE", "ROWS"], [[table, str(rows)] for table, rows in copied.items()])
    typer.echo(f"Copied {sum(copied.values())} rows; every table's count matches the source.")
