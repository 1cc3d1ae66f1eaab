"""What `halguru serve` and `halguru keys` do (the plugin module keeps only the argument parsing)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from halguru import audit
from halguru.errors import HalguruError
from halguru.listen import WILDCARDS, check_listen, url_base
from halguru.printable import printable
from halguru.store import open_store
from halguru_server.keys import create_key, list_keys, parse_duration, revoke_key


def run_server(config: Path | None, **options: Any) -> None:
    import uvicorn

    from halguru_server.agents import load_agents
    from halguru_server.app import SETTINGS_ENV, create_app
    from halguru_server.connections import configure_connections
    from halguru_server.identity.mailer import NO_PUBLIC_URL
    from halguru_server.middleware import configure_logging
    from halguru_server.settings import load_settings

    settings = load_settings(config, **options)
    settings.check()
    settings.agents = folders(settings)  # fail here, with one line, on a bad path
    configure_logging(settings.log_level)
    # A port in use is one line, not a log after the banner; --port 0 becomes the free port the banner names
    # (before the app is made: it names this replica by its port).
    settings.port = check_listen(settings.host, settings.port)
    metrics_dir = operator_metrics_dir()  # before any figure is made, by this process or its workers
    # Every project loads before the banner: a bad one fails here, in one line naming it, not after
    # "serving at". One worker serves this very app; several load their own (this load only checks).
    app = create_app(settings) if settings.workers == 1 else None
    if settings.workers > 1:
        load_agents(settings.agents, settings.web_chat)
    limits = configure_connections(settings)  # each worker of several does the same in app_from_env
    base = url_base(settings.host, settings.port)
    everywhere = f", listening on {settings.host or 'every interface'}" if settings.host in WILDCARDS else ""
    typer.echo(f"halguru serve: {len(settings.agents)} agent project(s)"
               f"{', and the agents published to it' if settings.published_only else ''}{everywhere}\n"
               f"  API      {base}/v1   (docs {base}/swagger, OpenAPI {base}/openapi.json)\n"
               f"  web chat {base}/chat/\n  console  {base}/admin   "
               f"({'open in dev mode' if settings.dev else f'operators and admins: sign in at {base}/auth/login'})\n"
               f"  status   {base}/status   metrics {base}/metrics\n"
               + (f"  worker   in-process, {settings.worker_concurrency} job(s) at a time (jobs, schedules, "
                  "channel replies)" if settings.worker else "  worker   off (--no-worker): run `halguru worker`")
               + ("\n  dev mode: no API keys (loopback only)" if settings.dev else "")
               + (f"\n  warning: {NO_PUBLIC_URL}" if settings.auth.smtp and not settings.auth.public_url else ""),
               err=True)
    # uvicorn's grace period outlasts ours (drain delay + shutdown_timeout, see lifecycle.py), so a cut run
    # still ends its stream with an error event. X-Forwarded-For is read by the app (trusted_proxies) only.
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_config": None,
                              "access_log": False, "proxy_headers": False, **limits,
                              "timeout_graceful_shutdown": settings.shutdown_timeout + 2}
    if settings.workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        with shared_metrics_dir(metrics_dir):
            uvicorn.run("halguru_server.app:app_from_env", factory=True, workers=settings.workers, **common)
    else:
        assert app is not None
        uvicorn.run(app, **common)


def operator_metrics_dir() -> Path | None:
    """The operator's ``PROMETHEUS_MULTIPROC_DIR`` made ready for this run, or None when unset. Set, it puts
    prometheus_client in multiprocess mode with one process or several, so `serve` (any --workers) and
    `halguru worker` call this at start, before any figure is made. It must be a writable folder: one line
    here, rather than prometheus_client's "No such file" at the first figure (or, with --workers, each worker
    dying and restarted for ever). An earlier run's figure files are removed, or their counts would add to
    this run's (a restarted server reported the requests of the one before)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        return None
    folder = Path(given)
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise HalguruError(f"PROMETHEUS_MULTIPROC_DIR={printable(given)} is not a writable folder; create it "
                           "(or unset it: serve --workers makes one of its own)")
    for kind in ("counter", "gauge", "histogram", "summary"):
        for old in folder.glob(f"{kind}_*.db"):
            old.unlink(missing_ok=True)
    return folder


@contextlib.contextmanager
def shared_metrics_dir(operator: Path | None) -> Iterator[None]:
    """Workers' metrics in prometheus_client's multiprocess mode, so /metrics sums every worker's whichever
    answers: the operator's folder (``operator_metrics_dir``), else an empty folder of this run's, named to
    the workers, which start after this, and removed when they have stopped."""
    if operator is not None:
        yield
        return
    made = scratch_folder("halguru-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(made, ignore_errors=True)


def scratch_folder(prefix: str) -> str:
    """A new private folder in the temporary folder, else in HALGURU_HOME: a container whose root is read-only
    with no tmpfs at /tmp (Docker's --read-only, Kubernetes' readOnlyRootFilesystem) has no usable one, and
    `serve --workers 2` stopped after its banner with "No usable temporary directory found"."""
    try:
        return tempfile.mkdtemp(prefix=prefix)
    except OSError:
        from halguru.config import home_dir

        home = home_dir()
        home.mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix=f".{prefix}", dir=home)


def folders(settings: Any) -> list[Path]:
    """The agent projects to serve: the given paths (else this folder); none with ``published_only``."""
    from halguru_server.agents import find_projects

    if settings.published_only:
        if settings.agents:
            raise HalguruError("give agent folders or --published-only, not both")
        return []
    return find_projects(settings.agents or [Path.cwd()])


def served_agents(config: Path | None = None) -> tuple[list[str], list[Path]] | None:
    """The names of the agents `halguru serve` would serve from here (its config, HALGURU_SERVE_*, else this
    folder) and the projects that do not load (one broken project must not hide its siblings); None when
    nothing names agent folders and this folder holds no project (there is nothing to check against)."""
    from halguru.agents.loader import load_agent
    from halguru_server.agents import find_projects
    from halguru_server.settings import load_settings

    settings = load_settings(config)
    if settings.agents:
        projects = find_projects(settings.agents)  # named explicitly: a bad path is an error
    else:
        try:
            projects = find_projects([Path.cwd()])
        except HalguruError:
            return None
    names: list[str] = []
    broken: list[Path] = []
    for project in projects:
        try:
            names.append(load_agent(project).name)
        except HalguruError:
            broken.append(project)
    return names, broken


def check_key_agents(names: list[str], config: Path | None = None) -> str | None:
    """Refuse ``--agents`` names that no served agent has; a note (to print) when there is nothing to check
    them against, as beside an `agents-templates/` folder: the key then keeps the names as given."""
    try:
        served = served_agents(config)
    except HalguruError as exc:
        raise HalguruError(f"cannot check --agents: {exc}") from None
    published = _published_agents()
    if served is None and not published:
        return (f"note: --agents kept as given, unchecked (no agent project in {Path.cwd()}; run this where "
                "`halguru serve` runs, or pass --config, to check)")
    known, broken = served or ([], [])
    unknown = [n for n in names if n not in known and n not in published]
    if unknown:
        unloaded = f"; not loaded: {', '.join(map(str, broken))}" if broken else ""
        where = _where_checked(config) + (" or published" if published else "") if served else "among the published"
        raise HalguruError(f"--agents: no agent named {', '.join(map(repr, unknown))} {where}; known: "
                           f"{', '.join(dict.fromkeys([*known, *sorted(published)])) or 'none'}{unloaded}")
    return None


def _published_agents() -> set[str]:
    """The agents published to this server's store (`halguru publish`): a hosting server serves those, whatever
    folder this runs in. None known when the store cannot be read (the folder's agents are checked alone)."""
    from halguru.store import open_store

    try:
        return set(open_store().active_deployments())
    except HalguruError:
        return set()


def _where_checked(config: Path | None) -> str:
    """Where ``--agents`` was checked: `serve AGENT_PATH...` elsewhere serves other agents than this folder's."""
    from halguru_server.settings import load_settings

    if load_settings(config).agents:
        return "among the agents of serve's settings"
    return (f"in {Path.cwd()} (what `halguru serve` serves from here: run this where it runs, or pass --config "
            "naming its agents)")


def _key_scope(admin: bool, user: str | None, role: str | None) -> str:
    """What ``keys create``'s flags ask for: a user's key's scope, or a key's own role."""
    if role is not None and user is not None:
        raise HalguruError("--role is for a key without --user (a user's key has that user's role; --admin gives it "
                           "all of the user's permissions)")
    if admin and role not in (None, "admin"):
        raise HalguruError(f"--admin and --role {role} disagree; give one")
    return "admin" if admin else role or "user"


def create(name: str, agents: str | None, expires: str | None, admin: bool = False,
           config: Path | None = None, user: str | None = None, role: str | None = None) -> None:
    scope = _key_scope(admin, user, role)
    names = [a.strip() for a in agents.split(",") if a.strip()] if agents else []
    lifetime = parse_duration(expires) if expires is not None else None
    note = check_key_agents(names, config) if names else None
    owner = None
    if user is not None:
        from halguru_server.identity.accounts import find_user

        owner = find_user(open_store(), user)
    key, secret = create_key(open_store(), name, names, lifetime, scope=scope, user_id=owner["id"] if owner else None)
    audit.record(open_store(), None, "key.create", key.id, {"name": name, "scope": key.scope, "user_id": key.user_id})
    typer.echo(secret)
    if owner:
        reach = f" for {owner['email'] or owner['id']}, {_user_reach(owner['role'], admin)}"
    else:
        reach = f" with the {scope} role ({ROLE_REACH[scope]})"
    typer.echo(f"key {key.id} ({name}) created{reach}; store it now, it is not shown again", err=True)
    if note:
        typer.echo(note, err=True)


def _user_reach(role: str, admin: bool) -> str:
    """What a user's key may do: it said ``(admin, at most developer)``, and ``(developer, at most developer)``."""
    if admin or role in ("user", "developer"):
        return f"acting as them (role {role})"
    return f"acting as them with at most a developer's permissions (their role: {role}; --admin gives it all of theirs)"


ROLE_REACH = {"user": "chat with the agents; --role developer to publish or queue jobs",
              "developer": "chat, jobs, publishing: runs code on the server", "operator":
              "everyone's conversations, runs, approvals and jobs", "admin": "everything"}


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    try:
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):  # a lifetime stored before they were capped at 100 years
        return "year 9999+"


def show(json_output: bool = False) -> None:
    keys = list_keys(open_store())
    if json_output:  # as stored (a name is anyone's text: JSON escapes its control characters)
        import dataclasses
        import json

        typer.echo(json.dumps([{**dataclasses.asdict(k), "state": k.state} for k in keys], indent=2,
                              ensure_ascii=False))
        return
    if not keys:
        typer.echo("no keys; create one with `halguru keys create NAME`")
        return
    # SCOPE: a user's key's scope (user, admin), or a key's own role (developer, operator: the widest words)
    typer.echo(f"{'ID':<10}{'NAME':<20}{'PREFIX':<14}{'AGENTS':<20}{'SCOPE':<11}{'USER':<22}{'EXPIRES':<18}"
               f"{'LAST USED':<18}STATE")
    for k in keys:
        typer.echo(printable(f"{k.id:<10}{k.name:<20}{k.prefix + '…':<14}{','.join(k.agents) or 'all':<20}"
                             f"{k.scope:<11}{k.user_id or '-':<22}{_when(k.expires):<18}{_when(k.last_used):<18}"
                             f"{k.state}"))  # a name an API client chose: its control characters shown


def revoke(name_or_id: str) -> None:
    key = revoke_key(open_store(), name_or_id)
    audit.record(open_store(), None, "key.revoke", key.id, {"name": key.name, "user_id": key.user_id})
    typer.echo(f"revoked {key.id} ({key.name})")


