"""A hosted halguru: `halguru login`, `halguru publish`, `halguru deployments` against a real `halguru serve` on
loopback. Publish v1 and chat with it; publish v2 while v1 streams an answer (the stream finishes on v1, the
next chat is v2); roll back to v1; a restarted server and a second replica on the same database serve the
active version. Refused as a user would see it: a missing tool, a secret file, a hand-made bundle that leaves
the folder, links, lies in its manifest, the wrong role, an agent given on the command line. Browser sign-in
(device flow) gives the CLI a key that publishes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import keyring
import pytest
import yaml

from halguru.client import Client
from halguru.deploy.bundle import MANIFEST, make_bundle
from halguru.store import open_store
from tests.channels.mailpeers import dovecot_fixture, smtp_server_fixture
from tests.test_models_cli import MemoryKeyring

__all__ = ["dovecot_fixture", "smtp_server_fixture"]  # pytest finds them here

TOOLS = '''from halguru import tool


@tool
def lookup(order: str) -> str:
    """Look an order up."""
    return f"order {order}: shipped"
'''


@pytest.fixture(autouse=True)
def memory_keyring(monkeypatch: pytest.MonkeyPatch):
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    monkeypatch.setenv("HALGURU_NO_BROWSER", "1")
    monkeypatch.delenv("HALGURU_TOKEN", raising=False)
    yield
    keyring.set_keyring(previous)


def user_key(role: str) -> str:
    """A new user of ``role`` and an API key of theirs."""
    from halguru_server.keys import create_key

    store = open_store()
    user = store.create_user(f"usr_{role}{time.monotonic_ns() % 10**8}", f"{role}@example.com", role, role)
    assert user is not None
    return create_key(store, "laptop", scope="user", user_id=user["id"])[1]


def write_shop(folder: Path, says: str, tools: list[str] | None = None, words: int = 3,
               delay: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({
        "name": "shop", "model": "scripted:answers.yaml", "instructions": "Help with orders.",
        "tools": ["lookup"] if tools is None else tools}))
    (folder / "tools.py").write_text(TOOLS)
    text = " ".join([says] + [f"w{i}" for i in range(words)])
    (folder / "answers.yaml").write_text(yaml.safe_dump([{"text": text, "token_delay": delay}]))
    return folder


def error(result: Any) -> str:
    """The one line `halguru` prints for a refused command run in-process (``main`` prints it as ``Error: ...``)."""
    from halguru.errors import HalguruError

    assert isinstance(result.exception, HalguruError), (result.output, result.exception)
    return str(result.exception)


def answer(url: str, key: str) -> str:
    with Client(url, key) as hg:
        return hg.send(hg.new_conversation("shop").id, "hi").output


def test_publish_chat_stream_rollback_and_restart(cli, serve, tmp_path: Path, halguru_home: Path) -> None:
    server = serve(deployments_poll=0.2)
    key = user_key("developer")
    assert "Signed in to " + server.url in cli("login", server.url, "--api-key", input=key + "\n").output
    shop = write_shop(tmp_path / "shop", "v1-answer", words=40, delay=0.05)
    (shop / ".env").write_text("SHOP_TOKEN=very-secret\n")  # never leaves this machine
    (shop / "__pycache__").mkdir()
    (shop / "__pycache__" / "tools.cpython-311.pyc").write_bytes(b"\x00")

    published = cli("publish", str(shop)).output
    assert "Published shop v1 to " + server.url in published and "Left out .env" in published
    assert answer(server.url, key).startswith("v1-answer")

    # publish v2 while v1 streams an answer: the stream finishes on v1, the next chat is v2
    tokens: list[str] = []
    first = threading.Event()

    def stream() -> None:
        with Client(server.url, key) as hg:
            for event in hg.stream(hg.new_conversation("shop").id, "tell me slowly"):
                if event.type == "token":
                    tokens.append(event.text)
                    first.set()

    streaming = threading.Thread(target=stream)
    streaming.start()
    assert first.wait(10)
    write_shop(shop, "v2-answer")
    started = time.perf_counter()
    assert "Published shop v2" in cli("publish", str(shop)).output
    assert answer(server.url, key).startswith("v2-answer")
    publish_to_live = time.perf_counter() - started
    print(f"publish-to-live (`halguru publish` v2 start to the first chat answered by v2, while v1 streams): "
          f"{publish_to_live * 1000:.0f} ms")
    assert streaming.is_alive()  # still streaming v1
    streaming.join(20)
    streamed = "".join(tokens)
    assert streamed.startswith("v1-answer") and streamed.rstrip().endswith("w39")

    # the same folder again is no new version
    assert "already live" in cli("publish", str(shop)).output
    listed = cli("deployments", "list").output
    rows = [line.split() for line in listed.splitlines()[1:]]
    assert [r[:3] for r in rows] == [["*", "shop", "v2"], ["shop", "v1", rows[1][2]]]
    assert all(r[-1] == "developer@example.com" for r in rows)
    assert all("scripted:answers.yaml" in r for r in rows) and str(halguru_home) not in listed  # no server path
    with Client(server.url, key) as hg:
        assert {d.manifest["model"] for d in hg.deployments("shop")} == {"scripted:answers.yaml"}
    assert "v1 is live" in cli("deployments", "rollback", "shop", "v1").output
    assert answer(server.url, key).startswith("v1-answer")
    with Client(server.url, key) as hg:
        assert {a.name: a.version for a in hg.agents()} == {"echo": None, "private": None, "slow": None, "shop": 1}
    monitoring = httpx.get(server.url + "/admin/monitoring/live", headers={"Authorization": f"Bearer {key}"})
    assert monitoring.status_code == 200 and f"v1 {open_store().list_deployments('shop')[-1]['sha256'][:12]}" in \
        monitoring.text  # the console's Monitoring page names the version served

    stored = open_store().list_deployments("shop")
    assert ".env" not in stored[-1]["manifest"]["files"] and "tools.py" in stored[-1]["manifest"]["files"]
    assert stored[-1]["manifest"]["tools"] == ["lookup"]
    assert stored[-1]["published_by"].startswith("user:usr_developer")
    folder = halguru_home / "deployments" / "shop" / stored[-1]["sha256"]
    assert (folder / "agent.yaml").is_file() and not (folder / ".env").exists()
    assert not (folder / "__pycache__" / "tools.cpython-311.pyc").exists()
    actions = [(e["action"], e["details"].get("version")) for e in open_store().list_audit(action="agent.")]
    assert actions == [("agent.rollback", 1), ("agent.publish", 2), ("agent.publish", 1)]

    # a restarted server (and a replica on the same database) serves the active version, even without the
    # unpacked folder on its disk; a version published on one replica reaches the other within its poll
    import shutil

    shutil.rmtree(halguru_home / "deployments")
    replica = serve(deployments_poll=0.2)
    assert answer(replica.url, key).startswith("v1-answer")
    assert "v2 is live" in cli("deployments", "rollback", "shop", "2", "--to", server.url).output
    deadline = time.monotonic() + 10
    while not answer(replica.url, key).startswith("v2-answer"):
        assert time.monotonic() < deadline, "the replica did not follow the rollback"
        time.sleep(0.1)
    cli("logout")
    assert "no server: run `halguru login URL` first" in error(cli("publish", str(shop), code=1))


def _tar(files: dict[str, bytes], manifest: dict[str, Any] | None = None, extra: Callable[[Any], None] | None = None,
         listed: dict[str, str] | None = None) -> bytes:
    """A hand-made bundle: ``files`` with a manifest listing them (or ``listed``)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        hashes = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
        body = json.dumps(manifest or {"format": 1, "files": listed if listed is not None else hashes}).encode()
        for name, data in [(MANIFEST, body), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return raw.getvalue()


def test_a_publish_says_where_to_chat_and_how_to_roll_back(cli, serve, tmp_path: Path) -> None:
    """A publish said the version and the server but not where the agent answers nor how to undo it: the user
    had to read the README for the chat page and work out from `deployments list` which version it replaced."""
    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    shop = write_shop(tmp_path / "shop", "v1-answer")
    first = cli("publish", str(shop)).output
    assert f"chat:      {server.url}/chat/ (API: {server.url}/v1/agents/shop;" in first
    assert f"model 'shop' at {server.url}/v1/chat/completions" in first
    assert "the first of shop here; `halguru deployments list`" in first and "replaces" not in first

    write_shop(shop, "v2-answer")
    second = cli("publish", str(shop)).output
    assert "Published shop v2" in second
    assert "replaces:  v1; roll back with `halguru deployments rollback shop 1`" in second
    assert "replaces" not in cli("publish", str(shop)).output  # unchanged: nothing replaced

    cli("deployments", "rollback", "shop", "1")  # v1 served again: the next publish replaces v1, not v2
    write_shop(shop, "v3-answer")
    third = cli("publish", str(shop), "--to", server.url).output
    assert f"replaces:  v1; roll back with `halguru deployments rollback shop 1 --to {server.url}`" in third
    assert "v1 is live" in cli("deployments", "rollback", "shop", "1").output  # the command printed works


def test_a_server_that_is_not_there_says_what_to_check(cli_error, serve, tmp_path: Path) -> None:
    """An unreachable server was `cannot reach URL: [Errno 111] Connection refused` and nothing more; the API's
    address (URL/v1, as the docs show it for clients) was `no route POST /v1/v1/deployments; see /swagger`."""
    server = serve()
    shop = write_shop(tmp_path / "shop", "v1")
    token = {"HALGURU_TOKEN": user_key("developer")}
    down = cli_error("publish", str(shop), "--to", "http://127.0.0.1:9", env=token)
    assert down.startswith("Error: cannot reach http://127.0.0.1:9: ") and "Connection refused" in down
    assert down.endswith("check the URL and that its `halguru serve` is up (--to URL for another server, "
                         "`halguru login URL` to sign in there)")
    api = cli_error("publish", str(shop), "--to", server.url + "/v1", env=token)
    assert api.endswith("(is that the server's own address? give it as in the browser, without /v1)"), api
    assert open_store().list_deployments() == []


def test_refusals_are_one_clear_line_and_store_nothing(cli, cli_error, serve, tmp_path: Path) -> None:
    server = serve()
    key = user_key("developer")
    cli("login", server.url, "--api-key", input=key)
    shop = write_shop(tmp_path / "shop", "v1", tools=["lookup", "refund"])
    # the real CLI, as CI would run it: the token from HALGURU_TOKEN
    out = cli_error("publish", str(shop), "--to", server.url, env={"HALGURU_TOKEN": key})
    assert "unknown tool 'refund'" in out and "shop: agent.yaml:" in out, out
    assert str(tmp_path) not in out and "/deployments/" not in out

    write_shop(shop, "v1")
    (shop / "notes.txt").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n")
    out = error(cli("publish", str(shop), code=1))
    assert "notes.txt holds a private key" in out and ".halguruignore" in out
    (shop / ".halguruignore").write_text("# kept on this machine\nnotes.txt\n")
    (shop / "link.yaml").symlink_to(shop / "answers.yaml")
    assert "link.yaml is a symbolic link" in error(cli("publish", str(shop), code=1))
    (shop / "link.yaml").unlink()

    agent = (shop / "agent.yaml").read_bytes()
    good = {"agent.yaml": agent, "tools.py": TOOLS.encode(), "answers.yaml": (shop / "answers.yaml").read_bytes()}

    def link(tar: Any) -> None:
        info = tarfile.TarInfo("evil")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    hostile = {
        "a .env": (_tar({**good, ".env": b"KEY=1"}), "bundle refused: .env is a secret file"),
        "a key inside": (_tar({**good, "deploy.pem": b"x"}), "deploy.pem is a secret file"),
        "a key's text": (_tar({**good, "x.txt": b"-----BEGIN RSA PRIVATE KEY-----"}), "x.txt holds a private key"),
        "a path out": (_tar({**good, "../evil.py": b"x"}), "paths must stay inside the agent folder"),
        "an absolute path": (_tar({**good, "/tmp/evil.py": b"x"}), "paths must stay inside"),
        "a link": (_tar(good, extra=link), "plain files only"),
        "a changed file": (_tar(good, listed={**{n: hashlib.sha256(d).hexdigest() for n, d in good.items()},
                                              "tools.py": "0" * 64}), "tools.py: its SHA-256 is not the manifest's"),
        "an unlisted file": (_tar(good, listed={"agent.yaml": hashlib.sha256(agent).hexdigest()}),
                             "is in the bundle but not in its manifest"),
        "no manifest": (_tar(good, manifest={"files": "nope"}), "manifest"),
        "not a tar.gz": (b"PK\x03\x04 a zip, say", "not a halguru bundle"),
        # these three were `[Errno 17] File exists: 'a'`, `[Errno 36] File name too long` and a bundle stored
        # with another agent's name in its manifest
        "a file and a folder": (_tar({**good, "a": b"x", "a/b": b"y"}),
                                "entry 'a/b' is refused: the bundle also holds a file 'a' where it needs a folder"),
        "a long name": (_tar({**good, "n" * 300: b"x"}), "is 300 bytes long; a file or folder name has at most 255"),
        "another agent's manifest": (
            _tar(good, manifest={"format": 1, "agent": "other",
                                 "files": {n: hashlib.sha256(d).hexdigest() for n, d in good.items()}}),
            "the bundle's manifest names agent 'other' but its agent.yaml names 'shop'"),
    }
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}",
                                                     "Content-Type": "application/gzip"}) as http:
        for case, (data, expected) in hostile.items():
            response = http.post("/v1/deployments", content=data)
            assert response.status_code == 400, (case, response.text)
            assert expected in response.json()["error"]["message"], (case, response.text)
        assert http.post("/v1/deployments", content=b"\x1f" * (21 * 1024 * 1024)).status_code == 413
        assert http.post("/v1/deployments", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert open_store().list_deployments() == []

    assert "'ftp://x' is not a server URL" in cli_error("login", "ftp://x", "--api-key", input="k\n")
    assert "invalid key" in error(cli("login", server.url, "--api-key", input="hg_wrong\n", code=1))
    # this machine has no keyring service: said before anything else happens
    assert "no keyring on this machine" in cli_error("login", server.url, "--api-key", input="k\n")
    with_keyring = {"PYTHON_KEYRING_BACKEND": "tests.file_keyring.FileKeyring",
                    "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    assert "cannot reach http://127.0.0.1:9" in cli_error("login", "http://127.0.0.1:9", "--api-key", input="k\n",
                                                          env=with_keyring)

    echo = tmp_path / "echo"  # a name the server was started with
    echo.mkdir()
    (echo / "agent.yaml").write_text("name: echo\nmodel: scripted\n")
    assert "given to `halguru serve`" in error(cli("publish", str(echo), code=1))

    from halguru.client import AuthError

    for role in ("user", "operator"):
        with Client(server.url, user_key(role)) as hg, pytest.raises(AuthError, match="403"):
            hg.publish(b"x")
    assert httpx.post(server.url + "/v1/deployments", content=b"x").status_code == 401

    assert "Published shop v1" in cli("publish", str(shop)).output
    out = error(cli("deployments", "rollback", "shop", "7", code=1))
    assert "agent 'shop' has no version 7; its versions: 1" in out
    assert "not a version number" in error(cli("deployments", "rollback", "shop", "latest", code=1))


def test_an_agent_name_too_long_for_the_routes_is_refused_in_one_line(cli, serve, tmp_path: Path) -> None:
    """A 300-character agent name was a 500 (its folder name is over the filesystem's 255), and one of 250 was
    published but could not be rolled back or listed (the routes take 200)."""
    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    def named(name: str) -> Path:
        shop = write_shop(tmp_path / name[:8] / str(len(name)), "v1")
        (shop / "agent.yaml").write_text((shop / "agent.yaml").read_text().replace("name: shop", f"name: {name}"))
        return shop

    for length in (101, 250, 300):  # an agent's name has at most 100 characters (agent.yaml is refused)
        shop = named("a" * length)
        out = error(cli("publish", str(shop), code=1))
        assert "name: String should have at most 100 characters" in out and len(out.splitlines()) == 1, out
    assert open_store().list_deployments() == []
    longest = "b" * 100
    assert f"Published {longest} v1" in cli("publish", str(named(longest))).output
    assert "v1 is live" in cli("deployments", "rollback", longest, "1").output


def test_an_upload_cut_off_midway_stores_nothing_and_logs_no_traceback(cli, serve, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A publish whose connection drops mid-upload (a laptop closed, CI cancelled) was logged as an unhandled
    error with two tracebacks and counted as a 500; it is the client's doing, not the server's."""
    import socket

    server = serve()
    key = user_key("developer")
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Type: application/gzip\r\nContent-Length: 5000000\r\n\r\n".encode() + b"\x1f" * 200_000)
    time.sleep(0.5)
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"], caplog.text
    assert open_store().list_deployments() == []
    shop = write_shop(tmp_path / "shop", "v1")
    cli("login", server.url, "--api-key", input=key)
    assert "Published shop v1" in cli("publish", str(shop)).output


def test_what_a_killed_publish_left_unpacked_is_removed(cli, serve, tmp_path: Path, halguru_home: Path) -> None:
    """A server killed while it unpacked a bundle left that folder (up to 100 MB) in deployments/.incoming for
    good; a start or the next publish removes such leftovers, not a folder another process is unpacking now."""
    import os

    incoming = halguru_home / "deployments" / ".incoming"
    stale, fresh = incoming / "0123456789abcdef", incoming / "fedcba9876543210"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "zeros.bin").write_bytes(b"\0" * 1024)
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    server = serve()
    assert not stale.exists() and fresh.exists()
    os.utime(fresh, (hour_ago, hour_ago))
    cli("login", server.url, "--api-key", input=user_key("developer"))
    assert "Published shop v1" in cli("publish", str(write_shop(tmp_path / "shop", "v1"))).output
    assert list(incoming.iterdir()) == []


def write_kb_shop(folder: Path, topics: list[str]) -> tuple[Path, dict[str, Any]]:
    """The shop with a knowledge folder, docs/, of a page per topic (refunds take fourteen days); its spec."""
    shop = write_shop(folder, "v1", tools=[])
    spec = {**yaml.safe_load((shop / "agent.yaml").read_text()), "knowledge": ["docs"],
            "retrieval": {"mode": "auto", "embedder": "fast"}}
    (shop / "agent.yaml").write_text(yaml.safe_dump(spec))
    (shop / "docs").mkdir()
    for topic in topics:
        said = "Refunds take fourteen days." if topic == "refunds" else f"All about {topic}: ask at the desk."
        (shop / "docs" / f"{topic}.md").write_text(f"# {topic.title()}\n\n{said}\n")
    return shop, spec


def test_a_versions_knowledge_is_indexed_before_it_goes_live(cli, serve, tmp_path: Path) -> None:
    """The first chat after a publish indexed the agent's knowledge folder itself: with a 1.4 MB folder (1,515
    chunks, 400 s on a busy 2-core machine) that chat ran past limits.timeout (300 s) and answered nothing. Now
    the publish indexes it, the version it replaces answering meanwhile, and the base is there when it answers."""
    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    shop, _ = write_kb_shop(tmp_path / "shop", ["refunds", "parking"])
    assert "Published shop v1" in cli("publish", str(shop)).output
    listed = [line.split() for line in cli("kb", "list").output.splitlines()]
    assert ["shop-docs", "2"] in [row[:3:2] for row in listed], listed  # indexed before the answer came
    assert answer(server.url, user_key("user")).startswith("v1")


def test_a_publish_says_what_it_uploads_and_that_the_server_indexes_meanwhile(cli, serve, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish printed nothing until the server answered: 69 s of a still cursor for a 2.4 MB knowledge folder
    (300 pages) on a busy 2-core machine, with no word that it was indexing, not hung."""
    import sys

    from halguru.cli.publish_cmd import _ticking

    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    shop, _ = write_kb_shop(tmp_path / "shop", ["refunds", "parking"])
    out = cli("publish", str(shop)).output
    said = out.index("Uploading shop (5 files, ")
    assert out.index("Published shop v1") > said
    assert (f"to {server.url}; the server checks it and indexes its knowledge (2 files; only those changed since "
            "the version served) before it goes live: minutes for MBs...") in out
    plain = write_shop(tmp_path / "plain", "v1")
    (plain / "agent.yaml").write_text((plain / "agent.yaml").read_text().replace("name: shop", "name: plain"))
    assert "Uploading" not in cli("publish", str(plain)).output  # small, no knowledge: it answers at once
    (plain / "manual.pdf").write_bytes(os.urandom(1_100_000))
    assert "Uploading plain (4 files, 1,1" in cli("publish", str(plain)).output

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _ticking():  # on a terminal, the seconds waited, then the line cleared for the result
        time.sleep(2.3)
    shown = terminal.getvalue()
    assert shown.startswith("\r  waiting for the server: 1 s\r  waiting for the server: ") and shown.endswith(
        " s\r\033[K"), shown


def test_a_publish_interrupted_while_the_server_indexes_says_it_may_still_go_live(
        cli, serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the server indexed a knowledge base (60 s for 200 pages) printed nothing and exited 130; a
    minute later that version was live anyway, with no word of it to the user who thought they had stopped it."""
    from halguru.client import Client as RealClient

    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    shop, _ = write_kb_shop(tmp_path / "shop", ["refunds", "parking"])
    real = RealClient.publish
    threads: list[threading.Thread] = []

    def ctrl_c_once_sent(self: RealClient, bundle: bytes) -> Any:
        other = RealClient(self.base_url)
        other.headers = self.headers
        sent = threading.Thread(target=real, args=(other, bundle))
        sent.start()  # the upload reached the server, which goes on; the user presses Ctrl-C meanwhile
        threads.append(sent)
        raise KeyboardInterrupt

    monkeypatch.setattr(RealClient, "publish", ctrl_c_once_sent)
    stopped = cli("publish", str(shop), code=130).output
    assert (f"Interrupted: if the upload reached {server.url}, the server goes on checking it (and indexing its "
            "knowledge) and may still serve it as shop's next version; `halguru deployments list shop` shows it, "
            "`halguru deployments rollback shop VERSION` undoes it") in stopped
    threads[0].join(60)
    monkeypatch.setattr(RealClient, "publish", real)
    assert "shop v1 is already live" in cli("publish", str(shop)).output  # what it said: live, once, as v1
    assert [d["version"] for d in open_store().list_deployments("shop")] == [1]


def test_a_new_version_embeds_only_the_knowledge_files_that_changed(cli, serve, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each version has a folder, and a knowledge base, of its own: v2 embedded every file again, minutes for a
    folder of a few MB, though it changed one line. Its base now starts from v1's: only what differs is embedded,
    a changed file's old text is gone from it, and v1 (rolled back to) still answers from its own."""
    from halguru.rag import indexer

    embedded: list[str] = []
    real = indexer.embed_passages

    def counting(model: Any, texts: list[str]) -> Any:
        embedded.extend(texts)
        return real(model, texts)

    monkeypatch.setattr(indexer, "embed_passages", counting)
    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    shop, spec = write_kb_shop(tmp_path / "shop", ["refunds", "parking", "hours", "returns"])
    docs = shop / "docs"
    assert "Published shop v1" in cli("publish", str(shop)).output
    assert len(embedded) == 4, embedded
    embedded.clear()
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds take three days.\n")
    (shop / "agent.yaml").write_text(yaml.safe_dump({**spec, "instructions": "Help with orders, kindly."}))
    assert "Published shop v2" in cli("publish", str(shop)).output
    assert [text for text in embedded if "three days" in text] and len(embedded) == 1, embedded

    chatter = user_key("user")

    def found() -> str:
        """What the answer was given from the knowledge (the answers file says v1 in both versions)."""
        with Client(server.url, chatter) as hg:
            run = hg.send(hg.new_conversation("shop").id, "how long do refunds take?")
            return json.dumps([e for e in hg.run(run.run_id).events if e.get("type") == "retrieval"])

    v2 = found()
    assert "three days" in v2 and "fourteen" not in v2
    assert "v1 is live" in cli("deployments", "rollback", "shop", "1").output
    v1 = found()
    assert "fourteen days" in v1 and "three days" not in v1
    assert embedded == [t for t in embedded if "three days" in t]  # nothing embedded again for either


def test_another_agent_publishes_while_one_indexes_its_knowledge(cli, serve, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish indexing its knowledge (minutes for a few MB) held the server's one publish lock throughout:
    every other agent's publish and rollback waited for it."""
    from halguru.rag import indexer

    release, embedding = threading.Event(), threading.Event()
    real = indexer.embed_passages

    def slow(model: Any, texts: list[str]) -> Any:
        embedding.set()
        release.wait(60)
        return real(model, texts)

    monkeypatch.setattr(indexer, "embed_passages", slow)
    server = serve()
    key = user_key("developer")
    cli("login", server.url, "--api-key", input=key)
    shop, _ = write_kb_shop(tmp_path / "shop", ["refunds"])
    published: list[str] = []

    def publish_shop() -> None:
        with Client(server.url, key, timeout=120) as hg:
            published.append(f"{hg.publish(make_bundle(shop).data).version}")

    first = threading.Thread(target=publish_shop)
    first.start()
    try:
        assert embedding.wait(60), "the shop's knowledge was not indexed"
        other = write_shop(tmp_path / "other", "other v1")
        (other / "agent.yaml").write_text((other / "agent.yaml").read_text().replace("name: shop", "name: other"))
        started = time.monotonic()
        out = cli("publish", str(other)).output
        took = time.monotonic() - started
    finally:
        release.set()
        first.join(60)
    assert "Published other v1" in out and took < 20, (out, f"{took:.1f} s")
    assert published == ["1"]


def test_metadata_the_worker_refuses_is_refused_at_publish_as_validate_says(cli, serve, tmp_path: Path) -> None:
    """A published version with ``retention_days: -1`` was stored and served, its conversations silently
    kept for ever; publish runs `halguru validate`'s metadata checks, with its words."""
    server = serve()
    cli("login", server.url, "--api-key", input=user_key("developer"))
    shop = write_shop(tmp_path / "shop", "v1")
    spec = yaml.safe_load((shop / "agent.yaml").read_text())
    for metadata, expected in [({"retention_days": -1}, "metadata.retention_days must be a positive number"),
                               ({"web_chat": "publik"}, "metadata.web_chat must be 'public' or 'key'")]:
        (shop / "agent.yaml").write_text(yaml.safe_dump({**spec, "metadata": metadata}))
        out = error(cli("publish", str(shop), code=1))
        assert out.startswith(f"{server.url}: shop: agent.yaml:") and expected in out, out
    assert open_store().list_deployments() == []


def test_an_app_key_chats_but_publishes_only_with_the_developer_role(cli, cli_error, serve, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`halguru keys create NAME` (the README's key for an app) could publish, and so run any code on the server."""
    server = serve()
    app_key = cli("keys", "create", "my-app").stdout.strip()
    assert "with the user role (chat with the agents" in cli("keys", "create", "other").stderr
    ci_key = cli("keys", "create", "ci", "--role", "developer").stdout.strip()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {app_key}"}) as http:
        assert http.post("/v1/conversations", json={"agent": "echo"}).status_code == 201
        refused = http.post("/v1/deployments", content=b"x", headers={"Content-Type": "application/gzip"})
        assert refused.status_code == 403 and "may not do this" in refused.json()["error"]["message"]
        assert http.post("/v1/jobs", json={"agent": "echo", "input": "hi"}).status_code == 403
    shop = write_shop(tmp_path / "shop", "v1")
    assert "your role (user) may not do this" in cli_error("publish", str(shop), "--to", server.url,
                                                         env={"HALGURU_TOKEN": app_key})
    monkeypatch.setenv("HALGURU_TOKEN", ci_key)
    assert "Published shop v1" in cli("publish", str(shop), "--to", server.url).output
    for field, value in (("instructions_file", "/etc/hostname"), ("knowledge", "../../..")):
        spec = yaml.safe_load((shop / "agent.yaml").read_text())
        (shop / "agent.yaml").write_text(yaml.safe_dump({**spec, field: value if field != "knowledge" else [value]}))
        out = cli_error("publish", str(shop), "--to", server.url, env={"HALGURU_TOKEN": ci_key})
        assert f"{field}: {value} is outside the bundle" in out, out
        (shop / "agent.yaml").write_text(yaml.safe_dump(spec))
    assert "invalid key role 'root'" in cli_error("keys", "create", "x", "--role", "root")
    assert "--role is for a key without --user" in cli_error("keys", "create", "x", "--role", "user", "--user", "a@b.c")
    assert "disagree" in cli_error("keys", "create", "x", "--role", "user", "--admin")


def test_keys_made_before_roles_of_their_own_keep_a_developers_reach(tmp_path: Path) -> None:
    """Migration m016: a userless key of scope `user` meant a developer's reach; it is rewritten so it keeps it."""
    import sqlite3

    from halguru.store.migration_runner import apply
    from halguru.store.migrations import MIGRATIONS, m016_key_roles
    from halguru.store.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        apply(conn, MIGRATIONS[:MIGRATIONS.index(m016_key_roles)])
        conn.execute("INSERT INTO api_keys (id, name, prefix, hash, created, scope) VALUES "
                     "('k1', 'old', 'hg_k1', 'h1', 0, 'user'), ('k2', 'root', 'hg_k2', 'h2', 0, 'admin')")
    store = SQLiteStore(path)
    assert {k["name"]: k["scope"] for k in store.list_keys()} == {"old": "developer", "root": "admin"}
    store.close()


def test_keys_made_before_roles_of_their_own_keep_a_developers_reach_on_postgres(new_postgres_database) -> None:
    """pg009, the same as SQLite's m016: an old key's `user` scope becomes `developer`; a user's key keeps it."""
    import psycopg

    from halguru.store.postgres import PostgresStore

    url = new_postgres_database()
    PostgresStore(url).close()  # every migration applied; then the database is put back to before pg009
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM migrations WHERE name = 'pg009_key_roles'")
        conn.execute("INSERT INTO users (id, email, name, role, created) VALUES ('u1', 'a@b.c', 'a', 'developer', 0)")
        conn.execute("INSERT INTO api_keys (id, name, prefix, hash, created, scope, user_id) VALUES "
                     "('k1', 'old', 'hg_k1', 'h1', 0, 'user', NULL), ('k2', 'mine', 'hg_k2', 'h2', 0, 'user', 'u1')")
    store = PostgresStore(url)
    assert {k["name"]: k["scope"] for k in store.list_keys()} == {"old": "developer", "mine": "user"}
    store.close()


def test_login_through_the_browser_device_flow(cli, serve, tmp_path: Path) -> None:
    """`halguru login URL` shows a code; a signed-in developer approves it on /auth/device; the CLI gets a key."""
    from halguru_server.identity import websessions

    server = serve()
    shown: list[str] = []
    result: dict[str, Any] = {}

    def login() -> None:
        from halguru.login import device_login

        try:
            result["token"] = device_login(server.url, shown.append)
        except Exception as exc:
            result["error"] = exc

    waiting = threading.Thread(target=login)
    waiting.start()
    deadline = time.monotonic() + 10
    while not shown:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    page_url = shown[0].split()[1]
    code = shown[0].split("approve the code ")[1].rstrip(".")
    assert page_url == f"{server.url}/auth/device?code={code}"

    store = open_store()
    user = store.create_user("usr_devflow", "dev@example.com", "Dev", "developer")
    assert user is not None
    secret, session = websessions.issue(store, user["id"], server.state.settings.auth)
    with httpx.Client(base_url=server.url, cookies={websessions.COOKIE: secret}) as browser:
        assert "/auth/login" in httpx.get(page_url, follow_redirects=False).headers["location"]  # not signed in
        page = browser.get(page_url)
        assert page.status_code == 200 and code in page.text and "dev@example.com" in page.text
        wrong = browser.post("/auth/device", data={"csrf_token": session["csrf"], "user_code": "BBBB-BBBB"},
                             headers={"Origin": server.url})
        assert wrong.status_code == 400 and "not valid" in wrong.text
        forged = browser.post("/auth/device", data={"csrf_token": "nope", "user_code": code},
                              headers={"Origin": server.url})
        assert forged.status_code == 403
        approved = browser.post("/auth/device", data={"csrf_token": session["csrf"], "user_code": code.lower()},
                                headers={"Origin": server.url})
        assert approved.status_code == 200 and "Program signed in" in approved.text
    waiting.join(10)
    assert "token" in result, result
    with Client(server.url, result["token"]) as hg:
        me = hg.me()
    assert me["user"]["email"] == "dev@example.com" and "agents:publish" in me["permissions"]
    again = httpx.post(server.url + "/auth/device/token", json={"device_code": "x" * 43})
    assert again.status_code == 400 and again.json()["error"]["type"] == "authorization_pending"
    assert [e["details"].get("via") for e in store.list_audit(action="key.create")] == ["device"]


def approving_shop(cli: Callable[..., Any], serve: Callable[..., Any], tmp_path: Path,
                   **settings: Any) -> tuple[Any, str, Path]:
    """A server (``settings``), a developer's key (logged in) and v1 of a shop whose lookup waits for approval,
    published."""
    server = serve(**settings)
    key = user_key("developer")
    cli("login", server.url, "--api-key", input=key)
    shop = write_shop(tmp_path / "shop", "v1")
    spec = yaml.safe_load((shop / "agent.yaml").read_text())
    (shop / "agent.yaml").write_text(yaml.safe_dump({**spec, "approvals": ["lookup"]}))
    (shop / "answers.yaml").write_text(yaml.safe_dump([
        {"tool_calls": [{"name": "lookup", "arguments": {"order": "A1"}}]}, "v1: your order shipped"]))
    cli("publish", str(shop))
    return server, key, shop


def test_jobs_and_paused_runs_of_a_published_agent(cli, serve, tmp_path: Path) -> None:
    """The worker runs queued jobs on the published version; a run paused for approval on v1 is approved after
    v2 is published, and its approved call runs v1's tool: the version it started with."""
    server, key, shop = approving_shop(cli, serve, tmp_path)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        job = http.post("/v1/jobs", json={"agent": "shop", "input": "where is A1?"}).json()
        conv = http.post("/v1/conversations", json={"agent": "shop"}).json()["id"]
        paused = http.post(f"/v1/conversations/{conv}/messages", json={"content": "where is A1?"}).json()
        assert paused["status"] == "paused"

        (shop / "tools.py").write_text(TOOLS.replace("shipped", "shipped (v2)"))
        assert "Published shop v2" in cli("publish", str(shop)).output
        done = http.post(f"/v1/runs/{paused['run_id']}/approve", json={})
        assert done.status_code == 200, done.text
        events = http.get(f"/v1/runs/{done.json()['run_id']}").json()["events"]
        [result] = [e for e in events if e["type"] == "tool_result"]
        assert "order A1: shipped" in str(result) and "(v2)" not in str(result)
        metrics = http.get("/metrics").text  # a published agent's tools are metric labels too
        assert 'halguru_tool_calls_total{agent="shop",tool="lookup"}' in metrics
        assert 'agent="shop"' not in httpx.get(server.url + "/metrics").text  # key-only: no name without a key

        deadline = time.monotonic() + 20
        while (status := http.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("done", "dead"):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status["status"] == "done" and status["result"]["status"] in ("ok", "paused")


def test_a_paused_runs_version_missing_on_this_disk_comes_from_the_store(cli, serve, tmp_path: Path,
                                                                         halguru_home: Path) -> None:
    """A replica that never unpacked the version a run paused on (here: its folder removed after v2 was
    published) still resumes it on that version: the bundle comes from the store."""
    import shutil

    server, key, shop = approving_shop(cli, serve, tmp_path)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        conv = http.post("/v1/conversations", json={"agent": "shop"}).json()["id"]
        paused = http.post(f"/v1/conversations/{conv}/messages", json={"content": "where is A1?"}).json()
        assert paused["status"] == "paused"
        (shop / "tools.py").write_text(TOOLS.replace("shipped", "shipped (v2)"))
        assert "Published shop v2" in cli("publish", str(shop)).output
        [v1] = [d for d in http.get("/v1/deployments").json()["data"] if d["version"] == 1]
        shutil.rmtree(halguru_home / "deployments" / "shop" / v1["sha256"])
        done = http.post(f"/v1/runs/{paused['run_id']}/approve", json={})
        assert done.status_code == 200, done.text
        events = http.get(f"/v1/runs/{done.json()['run_id']}").json()["events"]
        [result] = [e for e in events if e["type"] == "tool_result"]
        assert "order A1: shipped" in str(result) and "(v2)" not in str(result)


def use_store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers this test starts (and its ``open_store``) use ``store_url`` (the ``store_url`` fixture's)."""
    from halguru.config import reset_settings

    if store_url.startswith("sqlite:"):
        monkeypatch.setenv("HALGURU_DB_PATH", store_url.removeprefix("sqlite:"))
    else:
        monkeypatch.setenv("HALGURU_DATABASE_URL", store_url)
    reset_settings()


def test_two_replicas_on_one_database_follow_each_other(store_url: str, serve, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite and on PostgreSQL: a version published on one replica is served by the other within its poll,
    also when that replica's disk never had the unpacked folder (the bundle comes from the database)."""
    import shutil

    from halguru.config import get_settings
    from halguru.deploy.bundle import make_bundle

    use_store(store_url, monkeypatch)
    first, key = serve(deployments_poll=0.2), user_key("developer")
    shop = write_shop(tmp_path / "shop", "v1-answer")
    with Client(first.url, key) as hg:
        assert hg.publish(make_bundle(shop).data).version == 1
    shutil.rmtree(get_settings().home / "deployments")  # the second replica's disk: nothing unpacked
    second = serve(deployments_poll=0.2)
    assert answer(second.url, key).startswith("v1-answer")
    write_shop(shop, "v2-answer")
    with Client(second.url, key) as hg:
        assert hg.publish(make_bundle(shop).data).version == 2
    deadline = time.monotonic() + 10
    while not answer(first.url, key).startswith("v2-answer"):
        assert time.monotonic() < deadline, "the first replica did not follow"
        time.sleep(0.1)
    with Client(first.url, key) as hg:
        assert [(d.version, d.active) for d in hg.deployments("shop")] == [(2, True), (1, False)]


def test_a_hosting_server_serves_only_published_agents(cli_error, halguru_cmd, subprocess_env,
                                                       tmp_path: Path) -> None:
    """`halguru serve --published-only` (a real process) starts with no agent folder, takes a publish and serves
    it; folders and --published-only together are refused in one line."""
    import subprocess

    from halguru.deploy.bundle import make_bundle
    from tests.server.conftest import free_port

    key = user_key("developer")
    port = free_port()
    empty = tmp_path / "empty"
    empty.mkdir()
    server = subprocess.Popen([*halguru_cmd, "serve", "--published-only", "--port", str(port)], cwd=empty,
                              env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
            time.sleep(0.1)
        with Client(url, key) as hg:
            assert hg.agents() == []
            assert hg.publish(make_bundle(write_shop(tmp_path / "shop", "hosted")).data).version == 1
            assert [a.name for a in hg.agents()] == ["shop"]
        assert answer(url, key).startswith("hosted")
    finally:
        server.terminate()
        server.wait(30)
    assert "give agent folders or --published-only, not both" in cli_error("serve", str(empty), "--published-only")


def test_the_console_lists_versions_and_serves_another(serve, tmp_path: Path) -> None:
    """/admin/deployments: every version, the served one marked; "Serve v1" rolls back like the CLI (audited)."""
    from halguru.deploy.bundle import make_bundle

    server, key = serve(), user_key("developer")
    shop = tmp_path / "shop"
    with Client(server.url, key) as hg:
        for says in ("v1-answer", "v2-answer"):
            hg.publish(make_bundle(write_shop(shop, says)).data)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        page = http.get("/admin/deployments")
        assert page.status_code == 200 and 'data-deployment="shop-2"' in page.text
        assert page.text.count(">served<") == 1 and "Serve v1" in page.text and "Serve v2" not in page.text
        done = http.post("/admin/deployments/shop/rollback", data={"version": "1"})
        assert done.status_code == 303 and "shop+v1+is+served" in done.headers["location"]
        missing = http.post("/admin/deployments/shop/rollback", data={"version": "9"})
        assert "no+version+9" in missing.headers["location"]
        assert 'href="/admin/deployments"' in http.get("/admin").text  # in the navigation of a developer
    assert answer(server.url, key).startswith("v1-answer")
    assert [e["action"] for e in open_store().list_audit(action="agent.")] == ["agent.rollback"] + ["agent.publish"] * 2
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {user_key('operator')}"}) as http:
        assert http.get("/admin/deployments").status_code == 403
        assert 'href="/admin/deployments"' not in http.get("/admin").text


def scheduled_shop(folder: Path, cron: str = "0 3 * * *") -> tuple[Path, str]:
    """The shop with a daily schedule, and that schedule's id in the store."""
    from halguru.agents.spec import Schedule
    from halguru.jobs.schedules import schedule_id

    write_shop(folder, "scheduled-answer")
    spec = yaml.safe_load((folder / "agent.yaml").read_text())
    schedule = {"name": "report", "cron": cron, "input": "the daily report"}
    (folder / "agent.yaml").write_text(yaml.safe_dump({**spec, "schedules": [schedule]}))
    return folder, schedule_id("shop", Schedule.model_validate(schedule))


def missed(sid: str, days: int) -> None:
    """The schedule was due ``days`` days ago (its worker was down): the next worker serving it runs it at once."""
    store = open_store()
    store.fire_schedule(sid, store.schedule_next(sid), time.time() - days * 86400, None)


def scheduled_runs(url: str, admin: str) -> list[dict[str, Any]]:
    response = httpx.get(url + "/v1/jobs", params={"agent": "shop"}, headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200, response.text
    return [j for j in response.json()["data"] if j["payload"].get("schedule") == "report"]


def test_a_published_agents_schedules_run_without_a_restart_and_after_one(cli, serve, api_key,
                                                                           tmp_path: Path) -> None:
    """The serve process's worker takes up the schedules of a version published to it (and of the versions a
    restarted server loads before it listens), and a new version's changed schedule at once."""
    server, key, admin = serve(), user_key("developer"), api_key("ops", scope="admin")
    cli("login", server.url, "--api-key", input=key)
    shop, sid = scheduled_shop(tmp_path / "shop")
    missed(sid, days=1)
    assert "Published shop v1" in cli("publish", str(shop)).output
    deadline = time.monotonic() + 10  # not the schedule loop's next turn (30 s): the publish wakes it
    while not [j for j in scheduled_runs(server.url, admin) if j["status"] == "done"]:
        assert time.monotonic() < deadline, "the published agent's missed schedule did not run"
        time.sleep(0.1)
    assert open_store().schedule_next(sid) > time.time()

    server.stop()  # a restarted server: the published version's schedules are its worker's from the start
    missed(sid, days=2)  # another due time: another run (a run's key is its schedule and due time)
    restarted = serve()
    deadline = time.monotonic() + 10
    while len(scheduled_runs(restarted.url, admin)) < 2:
        assert time.monotonic() < deadline, "the restarted server did not run the published agent's schedule"
        time.sleep(0.1)

    cli("login", restarted.url, "--api-key", input=key)
    shop, changed = scheduled_shop(shop, cron="0 4 * * *")  # v2 moves it: a new schedule, counted from now
    assert "Published shop v2" in cli("publish", str(shop)).output
    deadline = time.monotonic() + 10
    while open_store().schedule_next(changed) is None:
        assert time.monotonic() < deadline, "the new version's schedule was not taken up"
        time.sleep(0.1)


def test_a_published_agents_inbox_is_answered_and_follows_its_new_version(
        cli, serve, tmp_path: Path, dovecot: Any, smtp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent with an email channel, published to a running server, answers its inbox without a restart (a
    real Dovecot and SMTP server); v2 with allow_from replaces the fetching at once: v1's no longer answers."""
    from tests.channels.mailpeers import PASSWORD, email_config, mail

    monkeypatch.setenv("HG_TEST_IMAP", PASSWORD)
    server, key = serve(), user_key("developer")
    cli("login", server.url, "--api-key", input=key)
    shop = write_shop(tmp_path / "shop", "mail-answer")
    spec = yaml.safe_load((shop / "agent.yaml").read_text())

    def publish(**email: Any) -> Any:
        (shop / "agent.yaml").write_text(yaml.safe_dump({**spec, "channels": {
            "email": email_config(dovecot, smtp_server.port, **email)}}))
        assert "Published shop" in cli("publish", str(shop)).output
        channel = server.state.channels["shop"]["email"]
        deadline = time.monotonic() + 10  # its inbox is fetched: connected
        while channel.status is None or not channel.status.ok:
            assert time.monotonic() < deadline, "the published agent's inbox was not fetched"
            time.sleep(0.05)

    publish()
    dovecot.append(mail("Opening hours", "When are you open?", message_id="<a1@example.org>"))
    [reply] = smtp_server.wait_for(1)
    assert reply["In-Reply-To"] == "<a1@example.org>" and reply.get_content().startswith("mail-answer")

    publish(allow_from=["@example.net"])  # v2: only example.net is answered
    dovecot.append(mail("Again", "Still there?", message_id="<a2@example.org>"))
    dovecot.append(mail("Hello", "Open today?", sender="Bob <bob@example.net>", message_id="<b1@example.net>"))
    assert [m["In-Reply-To"] for m in smtp_server.wait_for(2)[1:]] == ["<b1@example.net>"]
    time.sleep(1.0)  # time enough for v1's fetching, were it still running, to answer Ann
    assert len(smtp_server.received) == 2


def test_unpublish_stops_an_agent_on_every_replica_and_a_rollback_brings_it_back(
        store_url: str, cli, serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a published agent could only be rolled to another version: there was no taking it down. Unpublished,
    it is 404 on this replica at once and on the other within its poll; its versions stay, and a rollback serves one
    again. On SQLite and PostgreSQL."""
    from halguru.deploy.bundle import make_bundle

    use_store(store_url, monkeypatch)
    first, second, key = serve(deployments_poll=0.2), serve(deployments_poll=0.2), user_key("developer")
    with Client(first.url, key) as hg:
        for says in ("v1-answer", "v2-answer"):
            hg.publish(make_bundle(write_shop(tmp_path / "shop", says)).data)

    def status(url: str) -> int:
        return httpx.post(url + "/v1/conversations", json={"agent": "shop"},
                          headers={"Authorization": f"Bearer {key}"}).status_code

    deadline = time.monotonic() + 10  # the second replica takes up what the first was sent (v1 first, maybe)
    while status(second.url) != 201 or not answer(second.url, key).startswith("v2-answer"):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    cli("login", first.url, "--api-key", input=key)
    said = cli("deployments", "unpublish", "shop").output
    assert f"shop is no longer served on {first.url} (it served v2)" in said
    assert "`halguru deployments rollback shop 2` serves it again" in said
    assert status(first.url) == 404  # at once where it was asked
    with Client(first.url, key) as hg:
        assert "shop" not in [a.name for a in hg.agents()]
        assert [(d.version, d.active) for d in hg.deployments("shop")] == [(2, False), (1, False)]
    deadline = time.monotonic() + 10
    while status(second.url) != 404:  # the other replica within its poll
        assert time.monotonic() < deadline, "the second replica went on serving the unpublished agent"
        time.sleep(0.1)
    assert "agent 'shop' is not served (unpublished)" in error(cli("deployments", "unpublish", "shop", code=1))
    assert "agent 'nobody' was never published" in error(cli("deployments", "unpublish", "nobody", code=1))
    given = error(cli("deployments", "unpublish", "echo", code=1))
    assert "given to `halguru serve`; it was not published: start the server without that folder" in given

    assert "v1 is live" in cli("deployments", "rollback", "shop", "1").output  # serves it again, everywhere
    assert answer(first.url, key).startswith("v1-answer")
    deadline = time.monotonic() + 10
    while status(second.url) != 201:
        assert time.monotonic() < deadline, "the second replica did not serve the agent again"
        time.sleep(0.1)
    actions = [(e["action"], e["details"].get("version")) for e in open_store().list_audit(action="agent.")]
    assert actions[:2] == [("agent.rollback", 1), ("agent.unpublish", 2)]


def test_an_unpublished_agents_schedules_stop_and_the_console_unpublishes(cli, serve, api_key,
                                                                          tmp_path: Path) -> None:
    """The worker stops an unpublished agent's schedules (a missed one does not run), and takes them up again once
    a version is served; the console's Unpublish does what the CLI does."""
    server, key, admin = serve(), user_key("developer"), api_key("ops", scope="admin")
    cli("login", server.url, "--api-key", input=key)
    shop, sid = scheduled_shop(tmp_path / "shop")
    assert "Published shop v1" in cli("publish", str(shop)).output
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        page = http.get("/admin/deployments")
        assert "Unpublish" in page.text and "Serve v1" not in page.text
        done = http.post("/admin/deployments/shop/unpublish", data={"go": "1"})
        assert done.status_code == 303 and "shop+is+no+longer+served" in done.headers["location"]
        page = http.get("/admin/deployments")
        assert ">served<" not in page.text and "Serve v1" in page.text
        again = http.post("/admin/deployments/shop/unpublish", data={"go": "1"})
        assert "is+not+served" in again.headers["location"]
    missed(sid, days=1)
    other = tmp_path / "other"  # a publish wakes the schedule loop: a served shop's missed time would run now
    other.mkdir()
    (other / "agent.yaml").write_text("name: other\nmodel: scripted\ninstructions: Hi.\n")
    assert "Published other v1" in cli("publish", str(other)).output
    time.sleep(3)
    assert scheduled_runs(server.url, admin) == []
    assert "v1 is live" in cli("deployments", "rollback", "shop", "1").output
    deadline = time.monotonic() + 10
    while not scheduled_runs(server.url, admin):  # served again: the missed time runs
        assert time.monotonic() < deadline, "the schedule was not taken up again"
        time.sleep(0.1)
    assert open_store().list_audit(action="agent.unpublish")[0]["details"]["version"] == 1
