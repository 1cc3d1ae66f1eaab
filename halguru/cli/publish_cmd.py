"""`halguru login`, `logout`, `publish` and `deployments`: a `halguru serve` as the place agents are published to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

deployments_app = typer.Typer(help="Published agent versions on a server: list them, roll back, unpublish, delete.",
                              no_args_is_help=True)
PUBLISH_WAIT_S = 3600  # the server indexes the version's knowledge folders before it answers (minutes for MBs)
TO = typer.Option(None, "--to", help="Server URL (default: the last `halguru login`).")


@contextmanager
def _server(url: str | None, answer_s: float = 300) -> Iterator[tuple[str, Any]]:
    """A client for the server (``url`` or the last login) with its token; its refusals as one line.
    ``answer_s``: how long to wait for an answer (a publish indexes the agent's knowledge first)."""
    import httpx

    from halguru.client import Client, ClientError
    from halguru.errors import HalguruError
    from halguru.login import target

    chosen, token = target(url)
    try:
        with Client(chosen, token, max_retries=2,
                    http=httpx.Client(timeout=httpx.Timeout(300, read=answer_s))) as client:
            yield chosen, client
    except httpx.HTTPError as exc:  # first: the client's TimedOut is one too
        raise HalguruError(_unreachable(chosen, exc)) from None
    except ClientError as exc:
        hint = f" (run `halguru login {chosen}`)" if exc.status == 401 else ""
        if exc.status == 404 and exc.message.startswith("no route"):
            hint = " (is that the server's own address? give it as in the browser, without /v1)"
        raise HalguruError(f"{chosen}: {exc.message}{hint}") from None


def _unreachable(url: str, exc: Exception) -> str:
    """The one line for a server that did not answer: why, and what to check."""
    import httpx

    cause = exc.__cause__ if isinstance(exc, httpx.ConnectError) and exc.__cause__ else exc  # the client's Unreachable
    why = "it did not answer in time" if isinstance(exc, httpx.TimeoutException) else str(cause) or type(exc).__name__
    return (f"cannot reach {url}: {why}; check the URL and that its `halguru serve` is up "
            "(--to URL for another server, `halguru login URL` to sign in there)")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _say_published(out: Any, bundle: Any, url: str, to: str | None, replaced: int | None, took: float) -> None:
    """What a publish did: the version (or that it was live already), where it answers, how to undo it."""
    if out.unchanged:
        typer.echo(f"{out.agent} v{out.version} is already live on {url} (the same bundle, "
                   f"sha256 {out.sha256[:12]}); nothing published.")
        return
    typer.echo(f"Published {out.agent} v{out.version} to {url}: {len(bundle.manifest['files'])} files, "
               f"{len(bundle.data):,} bytes, sha256 {out.sha256[:12]}; live in {took:.0f} ms (the server's checks "
               f"and swap: {out.live_ms or 0:.0f} ms).")
    there = f" --to {url}" if to else ""
    typer.echo(f"  chat:      {url}/chat/ (API: {url}/v1/agents/{out.agent}; OpenAI-compatible: model "
               f"{out.agent!r} at {url}/v1/chat/completions)")
    if replaced is None:
        typer.echo(f"  versions:  the first of {out.agent} here; `halguru deployments list{there}`")
    else:
        typer.echo(f"  replaces:  v{replaced}; roll back with `halguru deployments rollback {out.agent} "
                   f"{replaced}{there}`")


def register(app: typer.Typer) -> None:
    @app.command(short_help="Sign in to a halguru server to publish to it (through your browser, or with an "
                 "API key).")
    def login(
        url: str = typer.Argument(..., help="The server, e.g. https://halguru.example.com"),
        api_key: bool = typer.Option(False, "--api-key", help="Paste an API key (`halguru keys create` or the "
                                     "account page) instead of signing in through the browser; read from "
                                     "stdin when it is not a terminal."),
    ) -> None:
        """Sign in to a halguru server to publish to it: through your browser (device flow: approve the code
        shown here while signed in there), or with an API key. The token goes to the keyring."""
        import sys

        from halguru.errors import HalguruError
        from halguru.login import require_keyring, save_login, server_url

        base = server_url(url)
        require_keyring()  # before a key is made for us on the server: nowhere to keep it is known now
        if api_key:
            token = (typer.prompt("API key", hide_input=True) if sys.stdin.isatty()
                     else sys.stdin.readline()).strip()
        else:
            from halguru.login import device_login

            token = device_login(base, typer.echo)
        if not token:
            raise HalguruError("no API key given")
        import os

        os.environ.pop("HALGURU_TOKEN", None)  # the key being checked is this one
        from halguru.client import Client, ClientError

        try:
            with Client(base, token, max_retries=1) as client:
                me = client.me()
        except ClientError as exc:
            if exc.status == 0:  # TimedOut or Unreachable: no answer
                raise HalguruError(_unreachable(base, exc)) from None
            raise HalguruError(f"{base}: {exc.message}") from None
        except Exception as exc:
            raise HalguruError(_unreachable(base, exc)) from None
        user = me.get("user") or {}
        who = user.get("email") or user.get("name") or me.get("via", "key")
        save_login(base, token, str(who))
        typer.echo(f"Signed in to {base} as {who} ({me.get('role')}); the token is in the keyring.")
        if "agents:publish" not in me.get("permissions", []):
            typer.echo(f"Warning: role {me.get('role')} may not publish (developer or admin can)", err=True)

    @app.command()
    def logout(url: str | None = typer.Argument(None, help="The server (default: the last login).")) -> None:
        """Forget a server's token (the key itself stays valid on the server: revoke it there)."""
        from halguru.login import forget

        typer.echo(f"Signed out of {forget(url)}.")

    @app.command(short_help="Upload the agent as a new version, checked by the server, served from the next "
                 "request on.")
    def publish(
        path: Path = typer.Argument(Path("."), help="Agent project folder (or its agent.yaml)."),
        to: str | None = TO,
    ) -> None:
        """Upload the agent as a new version: the folder's files (hashed; secrets and caches left out; see
        .halguruignore), checked by the server like `halguru validate`, served from the next request on."""
        from halguru.deploy.bundle import make_bundle

        started = time.perf_counter()
        with _server(to, answer_s=PUBLISH_WAIT_S) as (url, client):
            bundle = make_bundle(path)
            for name in bundle.left_out:
                typer.echo(f"Left out {name} (a secret: the server reads secrets from its environment or "
                           "keyring)", err=True)
            if said := _uploading(bundle, url):
                typer.echo(said, err=True)
            try:
                with _ticking():
                    out = client.publish(bundle.data)
            except KeyboardInterrupt:
                _interrupted(str(bundle.manifest.get("agent")), url, to)
            replaced = None if out.unchanged else _replaced(client, out)
        _say_published(out, bundle, url, to, replaced, (time.perf_counter() - started) * 1000)

    app.add_typer(deployments_app, name="deployments")


@deployments_app.command("list")
def list_deployments(agent: str | None = typer.Argument(None, help="Only this agent's versions."),
                     to: str | None = TO) -> None:
    """Published versions, newest first; * marks the one served."""
    from halguru.cli.table import print_table

    with _server(to) as (_, client):
        rows = client.deployments(agent)
    if not rows:
        typer.echo("No published versions." if not agent else f"No published versions of {agent}.")
        return
    print_table(["", "AGENT", "VERSION", "SHA256", "FILES", "MODEL", "PUBLISHED", "BY"],
                [["*" if d.active else "", d.agent, f"v{d.version}", d.sha256[:12],
                  str(len(d.manifest.get("files", {}))), str(d.manifest.get("model", "")), _when(d.created),
                  d.publisher or d.published_by or "dev"] for d in rows])


@deployments_app.command()
def rollback(agent: str = typer.Argument(..., help="The agent."),
             version: str = typer.Argument(..., help="The version to serve, e.g. 3 or v3."),
             to: str | None = TO) -> None:
    """Serve an earlier (or later) published version from the next request on; running requests finish on
    the version they started with."""
    with _server(to) as (url, client):
        out = client.rollback(agent, _version(version))
    typer.echo(f"{out.agent} v{out.version} is live on {url} (sha256 {out.sha256[:12]}).")


@deployments_app.command()
def unpublish(agent: str = typer.Argument(..., help="The agent."), to: str | None = TO) -> None:
    """Stop serving an agent (its API, chat, channels and schedules), on every replica; running requests finish.
    Its versions stay stored: `halguru deployments rollback AGENT VERSION` serves one again."""
    with _server(to) as (url, client):
        out = client.unpublish(agent)
    typer.echo(f"{out.agent} is no longer served on {url} (it served v{out.version}); "
               f"`halguru deployments rollback {out.agent} {out.version}` serves it again.")


@deployments_app.command()
def delete(agent: str = typer.Argument(..., help="The agent."),
           version: str = typer.Argument(..., help="The version to delete, e.g. 3 or v3."),
           to: str | None = TO) -> None:
    """Delete a stored version and its bundle (a secret published by mistake); not the one served. The server
    also keeps only the newest `deployments_keep` (20) by itself."""
    with _server(to) as (url, client):
        out = client.delete_version(agent, _version(version))
    typer.echo(f"Deleted {out.agent} v{out.version} (sha256 {out.sha256[:12]}) from {url}.")


def _uploading(bundle: Any, url: str) -> str | None:
    """The line said before an upload that takes a while (a knowledge base to index, a MB or more): what goes,
    and that the server indexes meanwhile; None for a small one (it answers at once)."""
    files = bundle.manifest["files"]
    folders = [k.strip("/") for k in bundle.manifest.get("knowledge") or [] if k.strip("/") not in ("", ".")]
    known = [f for f in files if any(f.startswith(k + "/") for k in folders)]
    line = (f"Uploading {bundle.manifest.get('agent')} ({len(files)} files, {len(bundle.data):,} bytes) to {url}; "
            "the server checks it")
    if known:
        line += (f" and indexes its knowledge ({len(known)} files; only those changed since the version served) "
                 "before it goes live: minutes for MBs")
    elif len(bundle.data) < 1_000_000:
        return None
    return line + "..."


@contextmanager
def _ticking() -> Iterator[None]:
    """On a terminal, the seconds waited so far on stderr, once a second (a knowledge base indexes for minutes:
    a still cursor looks hung)."""
    import sys
    import threading

    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(1):
            sys.stderr.write(f"\r  waiting for the server: {time.monotonic() - started:.0f} s")
            sys.stderr.flush()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        if time.monotonic() - started >= 1:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _interrupted(agent: str, url: str, to: str | None) -> None:
    """Ctrl-C while the server had the bundle: it goes on (checks, knowledge, swap) and may serve it yet."""
    import sys

    there = f" --to {url}" if to else ""
    sys.stderr.write(f"\nInterrupted: if the upload reached {url}, the server goes on checking it (and indexing its "
                     f"knowledge) and may still serve it as {agent}'s next version; `halguru deployments list "
                     f"{agent}{there}` shows it, `halguru deployments rollback {agent} VERSION{there}` undoes it, "
                     "and publishing again waits for it and says whether it is live.\n")
    raise typer.Exit(130)


def _replaced(client: Any, out: Any) -> int | None:
    """The version ``out`` (just published) replaced: the one served last before it (by activation time, so a
    publish from another machine a moment later is not taken for it); None for an agent's first version."""
    from halguru.client import ClientError

    try:
        rows = client.deployments(out.agent)
    except ClientError:
        return None
    mine = next((d for d in rows if d.version == out.version), None)
    before = [d for d in rows if d.version != out.version and d.activated is not None
              and (mine is None or mine.activated is None or d.activated <= mine.activated)]
    return max(before, key=lambda d: d.activated).version if before else None


def _version(text: str) -> int:
    """A version as typed (3 or v3)."""
    from halguru.errors import HalguruError

    number = text.lower().removeprefix("v")
    if not number.isdigit() or int(number) < 1:
        raise HalguruError(f"{text!r} is not a version number (like 3 or v3; `halguru deployments list`)")
    return int(number)
