"""Shared fixtures. Every test gets its own HALGURU_HOME; nothing touches the real home.

The store the tests use: SQLite in that home, or with ``HALGURU_TEST_STORE=postgres`` a PostgreSQL database made
for the test session (``postgres_url``, dropped at its end) and emptied before each test, through
``HALGURU_DATABASE_URL`` (so the servers and workers a test starts use it too). A test that picks its backends
itself (the ``backend`` fixture) runs its PostgreSQL case only then; one marked ``sqlite_only`` (it reads or
writes the SQLite file itself) is skipped then, with the marker's reason.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# A test run started in the background of a non-interactive shell (`./.ci/run &`) inherits SIGINT ignored, and
# so would every `halguru` the tests start and then Ctrl-C. Caught here, it starts as the default in children
# (exec resets a caught signal, not an ignored one), as it does for a user's process in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
TEMPLATES = REPO / "agents-templates"
TEST_STORE = os.environ.get("HALGURU_TEST_STORE", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): the test reads or writes the SQLite file itself "
                                       "(why, in reason=); skipped under HALGURU_TEST_STORE=postgres")
    if TEST_STORE not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"HALGURU_TEST_STORE is {TEST_STORE!r}: use sqlite (the default) or postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under HALGURU_TEST_STORE=postgres: the `backend` tests' SQLite runs are deselected (the switch asks for
    PostgreSQL), and a test marked sqlite_only is skipped with its reason."""
    if TEST_STORE != "postgres":
        return

    def on_sqlite(item: pytest.Item) -> bool:
        return getattr(item, "callspec", None) is not None and item.callspec.params.get("backend") == "sqlite"

    deselected = [item for item in items if on_sqlite(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not on_sqlite(item)]
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"sqlite-only: {marker.kwargs['reason']}"))


def _test_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the test at the store HALGURU_TEST_STORE names (SQLite in HALGURU_HOME unless it says postgres)."""
    if TEST_STORE != "postgres" or "backend" in request.fixturenames:
        return  # SQLite by default; a test with the `backend` fixture sets up each backend itself
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)


@pytest.fixture(autouse=True)
def halguru_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """A fresh HALGURU_HOME per test, with every cache that depends on it cleared, on the test store."""
    from halguru.config import reset_settings
    from halguru.plugins.manager import reset_plugin_manager
    from halguru.store import sqlite as store_module

    home = tmp_path / "halguru-home"
    monkeypatch.setenv("HALGURU_HOME", str(home))
    monkeypatch.delenv("HALGURU_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("HALGURU_DB_PATH", raising=False)
    monkeypatch.delenv("HALGURU_DATABASE_URL", raising=False)  # never the developer's own database
    _test_store(request, monkeypatch)
    monkeypatch.delenv("HALGURU_HTTP_ALLOW_PRIVATE", raising=False)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):  # no spans to a real collector
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    reset_plugin_manager()
    for store in store_module._STORES.values():
        store.close()
    store_module._STORES.clear()
    yield home
    for store in store_module._STORES.values():
        store.close()
    store_module._STORES.clear()
    reset_settings()
    reset_plugin_manager()


@pytest.fixture
def write_agent(tmp_path: Path):
    """Write an agent project (agent.yaml text, optional tools.py text) and return its folder."""

    def write(yaml_text: str, tools_py: str | None = None, name: str = "agent") -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "agent.yaml").write_text(yaml_text, encoding="utf-8")
        if tools_py is not None:
            (folder / "tools.py").write_text(tools_py, encoding="utf-8")
        return folder

    return write


@pytest.fixture
def halguru_cmd() -> list[str]:
    """The CLI as a real subprocess (the console script next to this Python)."""
    script = Path(sys.executable).parent / "halguru"
    return [str(script)] if script.exists() else [sys.executable, "-m", "halguru"]


@pytest.fixture
def subprocess_env(halguru_home: Path) -> dict[str, str]:
    return {**os.environ, "HALGURU_HOME": str(halguru_home), "NO_COLOR": "1", "COLUMNS": "200"}


def _each_ended(kind: type) -> Iterator[Callable[..., Any]]:
    """A fixture's ``start(...)`` making ``kind(...)``; each one's ``end()`` runs when the test ends, failed or not."""
    started: list[Any] = []

    def start(*args: Any, **kwargs: Any) -> Any:
        started.append(kind(*args, **kwargs))
        return started[-1]

    yield start
    for each in started:
        each.end()


@pytest.fixture
def pty_process():
    """``start(args, env)``: a command on a pseudo-terminal (tests/terminal.py), killed when the test ends."""
    from tests.terminal import PtyProcess

    yield from _each_ended(PtyProcess)


@pytest.fixture
def tmux_session():
    """``start(command, env)``: a command in a detached tmux session; the session and what it ran end with the
    test."""
    import shutil

    from tests.terminal import TmuxSession

    assert shutil.which("tmux"), "tmux is required (apt-get install -y tmux; ./scripts/test does, as root)"
    yield from _each_ended(TmuxSession)


@pytest.fixture
def cli():
    """Invoke the CLI in-process with typer's CliRunner; the exit code must be ``code``."""
    from typer.testing import CliRunner

    from halguru.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, code: int = 0):
        result = runner.invoke(app, list(args), input=input, env={"COLUMNS": "250", "NO_COLOR": "1"})
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result

    return invoke


@pytest.fixture
def cli_error(halguru_cmd, subprocess_env):
    """Run the real CLI (detached from any terminal), expect exit 1 and return its single stderr line."""
    import subprocess

    def invoke(*args: str, input: str = "", env: dict[str, str] | None = None) -> str:
        proc = subprocess.run([*halguru_cmd, *args], input=input, capture_output=True, text=True,
                              env={**subprocess_env, **(env or {})}, timeout=60, start_new_session=True)
        assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("Error: "), lines[0]
        return lines[0]

    return invoke


# -- store backends: the store and queue suites run on SQLite and on PostgreSQL -----------------------------
STORE_BACKENDS = ["sqlite", "postgres"]
POSTGRES_ADMIN_URL = os.environ.get("HALGURU_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session, dropped at the end. PostgreSQL must be running
    (`.ci/run` starts it): an unreachable server fails the postgres tests, it never skips them."""
    import secrets

    import psycopg

    name = f"halguru_test_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} (start it: pg_ctlcluster "
                    f"--skip-systemctl-redirect 15 main start): {exc}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _empty_postgres(url: str) -> None:
    """Every table of the test database emptied (the schema stays: migrating it again is slower)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                             "AND tablename <> 'migrations'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture(params=STORE_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request) -> str:
    """The test's database: ``sqlite:PATH`` or an emptied PostgreSQL session database."""
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return url


def _open_store_at(url: str, **options):
    """A store on ``url`` (``sqlite:PATH`` or a PostgreSQL URL)."""
    from halguru.store.sqlite import SQLiteStore

    if url.startswith("sqlite:"):
        return SQLiteStore(Path(url.removeprefix("sqlite:")), **options)
    from halguru.store.postgres import PostgresStore

    return PostgresStore(url, **options)


def _run_sql_at(url: str, sql: str, params=()) -> list:
    """Run SQL (``?`` placeholders) straight on ``url``'s database; the rows it returns."""
    import sqlite3
    from contextlib import closing

    if url.startswith("sqlite:"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:"))) as db:
            rows = db.execute(sql, params).fetchall()
            db.commit()
            return rows
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []


def _stores_at(url: str):
    """Yield a maker of stores on ``url`` (``lease=`` passes through), then close all it made."""
    opened = []

    def make(**options):
        store = _open_store_at(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store_factory(store_url: str):
    """Open a store on the test's database (``lease=`` passes through); a second one is another process's view
    of the same database. All are closed at the end."""
    yield from _stores_at(store_url)


@pytest.fixture
def store(store_factory):
    """A store on each backend (the test runs once per backend)."""
    return store_factory()


@pytest.fixture
def raw_sql(store_url: str):
    """Run SQL (``?`` placeholders) straight on the test's database, as another program or an older version
    would; the rows it returns."""
    return lambda sql, params=(): _run_sql_at(store_url, sql, params)


@pytest.fixture
def home_store_url(halguru_home: Path) -> str:
    """The database the configured store uses (``open_store()``'s, on the HALGURU_TEST_STORE backend)."""
    return os.environ.get("HALGURU_DATABASE_URL") or f"sqlite:{halguru_home / 'halguru.db'}"


@pytest.fixture
def home_sql(home_store_url: str):
    """Run SQL (``?`` placeholders) straight on the configured store's database, as another program would."""
    return lambda sql, params=(): _run_sql_at(home_store_url, sql, params)


@pytest.fixture
def other_store(home_store_url: str):
    """Open another store on the configured store's database (another process's view; ``lease=`` passes
    through); closed at the end."""
    yield from _stores_at(home_store_url)


@pytest.fixture
def new_postgres_database():
    """Make fresh, empty PostgreSQL databases (no schema yet) for this test (``locale``: its LC_COLLATE and
    LC_CTYPE, else the server's); dropped at its end."""
    import secrets

    import psycopg

    made: list[str] = []

    def make(locale: str | None = None) -> str:
        name = f"halguru_test_{secrets.token_hex(6)}"
        options = f" TEMPLATE template0 LC_COLLATE '{locale}' LC_CTYPE '{locale}'" if locale else ""
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}{options}")
        made.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield make
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
