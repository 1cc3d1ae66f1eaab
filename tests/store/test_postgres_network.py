"""A network path to PostgreSQL that drops packets (a partition, the database host powered off, a failover that
moved its address): each statement waited until the kernel gave up on the connection (~15 minutes), and every
request with it, instead of the store answering "unavailable" (serve's 503) and recovering when the path is back.

The store reaches the database through a TCP relay on a port of its own, and the partition is that port's packets
dropped (iptables: root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

import halguru.store.postgres_base as base
from halguru.errors import StoreUnavailable
from halguru.store.postgres import PostgresStore


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def relay(host: str, port: int) -> Iterator[int]:
    """A TCP relay on a free loopback port to ``host:port``; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                client, _ = listener.accept()
                server = socket.create_connection((host, port))
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


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


def _can_drop_packets() -> bool:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    return subprocess.run(["iptables", "-S", "INPUT"], capture_output=True).returncode == 0


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


@pytest.mark.skipif(not _can_drop_packets(), reason="dropping a port's packets needs root and iptables")
def test_a_partition_is_an_outage_not_a_hang(new_postgres_database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "NETWORK_TIMEOUT_S", 1, raising=False)
    monkeypatch.setattr(base, "POOL_WAIT_S", 2.0)
    url = new_postgres_database()
    info = psycopg.conninfo.conninfo_to_dict(url)
    with relay(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)) as port:
        store = PostgresStore(url.replace(f":{info.get('port') or 5432}/", f":{port}/", 1))
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
