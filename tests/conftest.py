"""Shared fixtures. Every test gets its own HALGURU_HOME; nothing touches the real home."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A test run started in the background of a non-interactive shell (`./.ci/run &`) inherits SIGINT ignored, and
# so would every `halguru` the tests start and then Ctrl-C. Caught here, it starts as the default in children
# (exec resets a caught signal, not an ignored one), as it does for a user's process in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
TEMPLATES = REPO / "agents-templates"


@pytest.fixture(autouse=True)
def halguru_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HALGURU_HOME per test, with every cache that depends on it cleared."""
    from halguru.config import reset_settings
    from halguru.plugins.manager import reset_plugin_manager
    from halguru.store import sqlite as store_module

    home = tmp_path / "halguru-home"
    monkeypatch.setenv("HALGURU_HOME", str(home))
    monkeypatch.delenv("HALGURU_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("HALGURU_DB_PATH", raising=False)
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


@pytest.fixture
def store_factory(store_url: str):
    """Open a store on the test's database (``lease=`` passes through); a second one is another process's view
    of the same database. All are closed at the end."""
    from halguru.store.sqlite import SQLiteStore

    opened = []

    def make(**options):
        if store_url.startswith("sqlite:"):
            store = SQLiteStore(Path(store_url.removeprefix("sqlite:")), **options)
        else:
            from halguru.store.postgres import PostgresStore

            store = PostgresStore(store_url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory):
    """A store on each backend (the test runs once per backend)."""
    return store_factory()


@pytest.fixture
def raw_sql(store_url: str):
    """Run SQL (``?`` placeholders) straight on the test's database, as another program or an older version
    would; the rows it returns."""
    import sqlite3
    from contextlib import closing

    def run(sql: str, params=()):
        if store_url.startswith("sqlite:"):
            with closing(sqlite3.connect(store_url.removeprefix("sqlite:"))) as db:
                rows = db.execute(sql, params).fetchall()
                db.commit()
                return rows
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []

    return run


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
