"""A network path to PostgreSQL that drops packets (a partition, the database host powered off, a failover that
moved its address): each statement waited until the kernel gave up on the connection (~15 minutes), and every
request with it, instead of the store answering "unavailable" (serve's 503) and recovering when the path is back.

The store reaches the database through a TCP relay on a port of its own, and the partition is that port's packets
dropped (iptables: root)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

import halguru.store.postgres_base as base
from halguru.agents.events import RunFinished
from halguru.errors import ConversationBusy, StoreUnavailable
from halguru.models.base import Message
from halguru.store.postgres import PostgresStore


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


class Relay:
    """A TCP relay on a free loopback port (``port``) to ``host:port``. ``cut``: every connection through it reset,
    new ones refused (a restart, a failover), until ``restore``."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop, self.down = threading.Event(), threading.Event()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):
                client, _ = self.listener.accept()
                if self.down.is_set():
                    client.close()
                    continue
                server = socket.create_connection(self.target)
                self.open += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        self.down.set()
        for end in self.open:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.stop.set()
        self.cut()
        self.listener.close()


@contextlib.contextmanager
def relay(url: str) -> Iterator[tuple[Relay, str]]:
    """A relay to the database ``url`` names, and the URL through it."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    port = int(info.get("port") or 5432)
    through = Relay(str(info.get("host") or "127.0.0.1"), port)
    try:
        yield through, url.replace(f":{port}/", f":{through.port}/", 1)
    finally:
        through.close()


def _rules(port: int) -> list[list[str]]:
    return [["INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"],
            ["INPUT", "-p", "tcp", "--sport", str(port), "-j", "DROP"]]


@contextlib.contextmanager
def partition(port: int) -> Iterator[None]:
    """Every packet to or from ``port`` dropped, until the block ends."""
    added: list[list[str]] = []
    try:
        for rule in _rules(port):
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
            added.append(rule)
        yield
    finally:
        for rule in added:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)


def test_every_connection_gives_up_on_a_silent_network(new_postgres_database) -> None:
    """The pooled connections and the job listener's carry the limits (what a silent path may cost them), and a
    URL that sets one keeps its own."""
    url = new_postgres_database()
    store = PostgresStore(url)
    try:
        with store._connection() as raw:
            pooled = raw.info.get_parameters()
        with store.connect() as own:
            listener = own.info.get_parameters()
        for params in (pooled, listener):
            assert params["tcp_user_timeout"] == "10000"
            assert params["keepalives"] == "1"
            assert params["keepalives_idle"] == "10"
    finally:
        store.close()
    store = PostgresStore(f"{url}?tcp_user_timeout=3000&keepalives_idle=30")
    try:
        with store._connection() as raw:
            params = raw.info.get_parameters()
        assert (params["tcp_user_timeout"], params["keepalives_idle"], params["keepalives"]) == ("3000", "30", "1")
    finally:
        store.close()


def test_a_partition_is_an_outage_not_a_hang(new_postgres_database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "NETWORK_TIMEOUT_S", 1, raising=False)
    monkeypatch.setattr(base, "POOL_WAIT_S", 2.0)
    with relay(new_postgres_database()) as (through, url):
        store = PostgresStore(url)
        port = through.port
        try:
            store.create_conversation("conv_p", "echo")
            outcome: list[BaseException | object] = []

            def read() -> None:
                try:
                    outcome.append(store.get_conversation("conv_p"))
                except BaseException as exc:  # what the caller would get
                    outcome.append(exc)

            with partition(port):
                started = time.monotonic()
                reader = threading.Thread(target=read, daemon=True)
                reader.start()
                reader.join(15)
                took = time.monotonic() - started
                assert not reader.is_alive(), "the read still waits on the partitioned connection"
            assert isinstance(outcome[0], StoreUnavailable), outcome
            assert took < 8
            assert store.get_conversation("conv_p") is not None  # the path is back: so is the store
        finally:
            store.close()


def test_a_run_whose_finish_the_outage_lost_frees_its_conversation_when_the_store_is_back(
        new_postgres_database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database went away as a run ended: its finish failed (the request a 503), and its row stayed 'running'
    under a lease the replica still renewed, so the conversation answered 409 conversation_busy for up to a
    lease (30 s) after the database was back, with nothing running. It is stored as interrupted at once."""
    monkeypatch.setattr(base, "POOL_WAIT_S", 1.0)
    direct = new_postgres_database()
    other = PostgresStore(direct)  # another replica, on the database directly
    with relay(direct) as (through, url):
        store = PostgresStore(url, lease=9)
        try:
            store.start_run("run_cut00001", "conv_cut", "echo", "scripted", "hi")
            through.cut()
            done = RunFinished(run_id="run_cut00001", status="ok", output="hello")
            with pytest.raises(StoreUnavailable):
                store.finish_run("run_cut00001", "conv_cut", done.model_dump(), [done],
                                 [Message(role="user", content="hi")])
            through.restore()
            back = time.monotonic()
            while True:
                try:
                    other.start_run("run_next0001", "conv_cut", "echo", "scripted", "again", existing=True)
                    break
                except ConversationBusy:
                    assert time.monotonic() - back < 5, "the conversation is still busy with the lost run"
                    time.sleep(0.2)
            assert other.get_run("run_cut00001")["status"] == "interrupted"
            assert [m.content for m in other.get_messages("conv_cut")] == []  # nothing half-written
        finally:
            store.close()
            other.close()
