"""Serve mode as a halguru plugin: adds `halguru serve`, `halguru worker`, `halguru keys`, `halguru users` and
`halguru audit`.

Only typer is imported here: the CLI loads plugins on every start (`--help`
too), so FastAPI, uvicorn and prometheus load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from halguru.plugins import hookimpl

keys_app = typer.Typer(help="API keys for `halguru serve` (shown once, stored hashed).", no_args_is_help=True)
users_app = typer.Typer(help="People who sign in to `halguru serve`: roles, disabling, two-factor resets.",
                        no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of privileged actions: list it, verify its hash chain.",
                        no_args_is_help=True)


@hookimpl
def register_commands(cli: Any) -> None:
    if any(c.name == "serve" for c in cli.registered_commands):
        return  # already added (the CLI app is a module global; tests load plugins more than once)
    cli.command(name="serve", short_help="Serve agents: REST API (/swagger), OpenAI-compatible API, web chat "
                "(/chat/), webhooks, a worker.")(serve)
    cli.command(name="worker")(worker)
    cli.add_typer(keys_app, name="keys")
    cli.add_typer(users_app, name="users")
    cli.add_typer(audit_app, name="audit")


def serve(
    paths: list[Path] = typer.Argument(None, help="Agent projects, or folders holding them.", show_default=False),
    host: str = typer.Option(None, help="Address to listen on [default: 127.0.0.1]."),
    port: int = typer.Option(None, help="Port [default: 8000; 0 picks a free one]."),
    workers: int = typer.Option(None, help="Worker processes [default: 1]."),
    dev: bool = typer.Option(False, "--dev", help="No API keys (loopback only)."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Only the API: jobs, schedules and channel "
                                   "replies are left to `halguru worker` processes."),
    config: Path = typer.Option(None, help="YAML file of serve settings (or HALGURU_SERVE_CONFIG)."),
    published_only: bool = typer.Option(False, "--published-only", help="No agent folders: serve only the "
                                        "agents published to this server (`halguru publish`)."),
) -> None:
    """Serve agents: REST API (/v1, docs at /swagger), OpenAI-compatible API, web chat (/chat/), channel
    webhooks (/channels/) and a worker for queued jobs."""
    from halguru_server.cli import run_server

    run_server(config=config, agents=paths or None, host=host, port=port, workers=workers, dev=dev or None,
               worker=False if no_worker else None, published_only=published_only or None)


def worker(
    paths: list[Path] = typer.Argument(None, help="Agent projects, or folders holding them.", show_default=False),
    concurrency: int = typer.Option(None, help="Jobs at once [default: 2]."),
    config: Path = typer.Option(None, help="YAML file of serve settings (or HALGURU_SERVE_CONFIG)."),
    published_only: bool = typer.Option(False, "--published-only", help="No agent folders: only the agents "
                                        "published to the server (`halguru publish`)."),
    metrics_port: int = typer.Option(None, "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics "
                                     "(jobs run, waits, durations, the store's job counts) on this port of the "
                                     "serve setting `host`."),
) -> None:
    """Run queued jobs, schedules and fetched channels (email) for these agents, without the API. Any number
    of workers (and `halguru serve` processes) can share one store."""
    from halguru.agents import telemetry
    from halguru_server.worker import run_worker_process

    try:
        run_worker_process(config, metrics_port, agents=paths or None, worker_concurrency=concurrency,
                           published_only=published_only or None)
    finally:  # a service: its last spans get the exporter's full flush, not a command's capped one at exit
        telemetry.shutdown()


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="Who or what uses the key."),
    agents: str = typer.Option(None, help="Comma-separated agents the key may use [default: all]."),
    expires: str = typer.Option(None, help="Lifetime, e.g. 12h, 30d, 8w [default: never]."),
    admin: bool = typer.Option(False, "--admin", help="With --user: all of the user's permissions; without: "
                               "the admin role (the same as --role admin)."),
    config: Path = typer.Option(None, help="The serve config whose agents --agents is checked against."),
    user: str = typer.Option(None, help="The user (email or id) the key belongs to: it acts as them, with at "
                             "most their permissions (a developer's without --admin)."),
    role: str = typer.Option(None, help="Without --user, the key's own role: user (chat only), developer (also "
                             "jobs, publishing: runs code on the server), operator, admin [default: user]."),
) -> None:
    """Create a key and print it (the only time it is shown)."""
    from halguru_server.cli import create

    create(name, agents, expires, admin, config, user, role)


@keys_app.command("list")
def keys_list(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Keys with their prefix, agents, expiry and state (never the key itself)."""
    from halguru_server.cli import show

    show(json_output)


@keys_app.command("revoke")
def keys_revoke(
    name_or_id: str = typer.Argument(..., help="A key's id, or its name when only one active key has it."),
) -> None:
    """Revoke a key at once."""
    from halguru_server.cli import revoke

    revoke(name_or_id)


USER = typer.Argument(..., help="The user's email or id (usr_...).")


@users_app.command("create")
def users_create(
    email: str = typer.Argument(..., help="Their email (they sign in with it)."),
    role: str = typer.Option("user", help="admin, operator, developer or user."),
    name: str = typer.Option("", help="Their name, as pages show it."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input "
                                        "(one line) instead of asking."),
    no_password: bool = typer.Option(False, "--no-password", help="No local password (they sign in with OIDC)."),
) -> None:
    """Create a user (the first admin of a fresh server: `halguru users create EMAIL --role admin`)."""
    from halguru_server.users_cli import create

    create(email, role, name, password_stdin, no_password)


@users_app.command("invite")
def users_invite(
    email: str = typer.Argument("", help="Their email: only they can use the link (empty: whoever has it)."),
    role: str = typer.Option("user", help="admin, operator, developer or user."),
    days: float = typer.Option(7.0, min=0.01, help="How long the link works."),
    url: str = typer.Option("", help="This server's address as browsers see it (default: auth.public_url of the "
                            "serve config, else http://127.0.0.1:8000)."),
) -> None:
    """Print a single-use registration link (auth.registration: invite) to send to someone."""
    from halguru_server.identity.invites import invite_command

    invite_command(email, role, days, url)


@users_app.command("list")
def users_list(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Users with their role, two-factor state, last sign-in and state (active, locked, disabled)."""
    from halguru_server.users_cli import show

    show(json_output)


@users_app.command("set-role")
def users_set_role(user: str = USER,
                   role: str = typer.Argument(..., help="admin, operator, developer or user.")) -> None:
    """Change a user's role (their browsers are signed out; their keys follow at their next request)."""
    from halguru_server.users_cli import set_role

    set_role(user, role)


@users_app.command("disable")
def users_disable(user: str = USER,
                  enable: bool = typer.Option(False, "--enable", help="Enable the user again instead.")) -> None:
    """Disable a user: signed out everywhere, their keys stop working, sign-in refused."""
    from halguru_server.users_cli import disable

    disable(user, enable)


@users_app.command("unlock")
def users_unlock(user: str = USER) -> None:
    """End a user's lock after too many failed sign-ins (a password reset ends it too)."""
    from halguru_server.users_cli import unlock

    unlock(user)


@users_app.command("reset-2fa")
def users_reset_2fa(user: str = USER) -> None:
    """Remove a user's authenticator and recovery codes (a lost phone)."""
    from halguru_server.users_cli import reset_2fa

    reset_2fa(user)


@audit_app.command("list")
def audit_list(
    action: str = typer.Option(None, help="Only this action (auth.sign_in), or a prefix ending in '.' (auth.)."),
    actor: str = typer.Option(None, help="Only this actor (user:<id>, key:<id>, cli:<user>, dev)."),
    since: str = typer.Option(None, help="Only entries since then: 24h, 7d, or a date (2026-12-01)."),
    until: str = typer.Option(None, help="Only entries before then: 24h, 7d, or a date (through its end)."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many (newest first)."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Audit entries, newest first: who did what to what, from where."""
    from halguru_server.audit_cli import show

    show(action, actor, since, limit, json_output, until)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chain: exit 0 when intact, 1 naming the first broken entry (HALGURU_AUDIT_KEY if set)."""
    from halguru_server.audit_cli import verify

    verify()
