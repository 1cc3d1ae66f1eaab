"""Real mail peers on loopback for the email channel's tests: Dovecot (IMAP) and aiosmtpd (SMTP).

Dovecot runs in the foreground from a config written into a fresh temporary folder (no system config is
read or touched), one passwd-file user with a Maildir there. Run as root (as in CI), its login and internal
processes use the Debian package's unprivileged users and the mailbox belongs to ``nobody``, because Dovecot
refuses to serve mail as root; run as another user, everything runs as that user.

Test modules import the fixtures (``dovecot_fixture``...); pytest knows them by their short names.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

USER, PASSWORD = "bot@example.com", "imap-secret"
SMTP_USER, SMTP_PASSWORD = b"relay-user", b"smtp-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited ({proc.returncode}): {log.read_text() if log.exists() else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on {port}: {log.read_text() if log.exists() else ''}")


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies left for init to reap do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name: state, ppid, pgrp
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl's CLI), and its key. A test trusts it
    by pointing SSL_CERT_FILE at it, as an operator would with a private CA."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@dataclass
class Dovecot:
    root: Path
    port: int  # IMAP (STARTTLS offered when ``tls``)
    idle: bool = True
    tls: bool = False
    tls_port: int = 0  # IMAPS (TLS from the first byte) when ``tls``
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "dovecot.log"

    def write_config(self) -> Path:
        if os.geteuid() == 0:
            internal, group, login, mail_uid, mail_gid = "dovecot", "dovecot", "dovenull", 65534, 65534
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            internal, login, mail_uid, mail_gid = me, me, os.getuid(), os.getgid()
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(mail, mail_uid, mail_gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{mail_uid}:{mail_gid}::{mail}/home::\n")
        # a plainer server: without IDLE the channel must poll, without MOVE it copies, deletes and expunges
        capability = "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS NAMESPACE\n"
        ssl = "ssl = no"
        if self.tls:
            cert, key = make_certificate(self.root)
            ssl = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
        conf = self.root / "dovecot.conf"
        conf.write_text(f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = {min(mail_uid, 500)}
mail_location = maildir:{mail}/%u
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port if self.tls else 0}
  }}
}}
service anvil {{
  chroot =
}}
""")
        return conf

    def start(self) -> None:
        conf = self.write_config()
        # its own process group: the imap processes it forks outlive the master, and stop() ends them all
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(self.port, self.proc, self.log)

    def stop(self, graceful: bool = True) -> None:
        """End Dovecot and every process it started (open IMAP sessions drop, as when a server goes down);
        ``graceful``: give the master a second to say BYE to them first."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        group = proc.pid
        # the master first (it says BYE to open sessions), then whatever outlived it: a TERM to the whole
        # group races with the services the master starts while shutting down, and the master itself may
        # take seconds, so after a second the rest is killed (open sessions then just drop)
        if graceful:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        proc.wait(5)
        deadline = time.monotonic() + 5
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.02)

    def client(self) -> Any:
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes | EmailMessage, folder: str = "INBOX", received: datetime | None = None) -> None:
        """Deliver a message the way a mail server's delivery agent would: straight into the mailbox
        (``received``: the delivery date the server keeps, INTERNALDATE; default now)."""
        data = raw if isinstance(raw, bytes) else raw.as_bytes()
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, data, msg_time=received)

    def flags(self, folder: str = "INBOX") -> list[set[str]]:
        """Each message's flags in ``folder``, oldest first."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            found = client.get_flags(client.search(["ALL"]))
            return [{f.decode() if isinstance(f, bytes) else str(f) for f in found[uid]} for uid in sorted(found)]


@pytest.fixture(name="dovecot")
def dovecot_fixture() -> Iterator[Dovecot]:
    """A Dovecot serving one user on a free loopback port (IDLE offered)."""
    yield from _dovecot(idle=True)


@pytest.fixture(name="dovecot_tls")
def dovecot_tls_fixture() -> Iterator[Dovecot]:
    """A Dovecot with a self-signed certificate: STARTTLS on ``port``, TLS on ``tls_port``."""
    yield from _dovecot(idle=True, tls=True)


@pytest.fixture(name="dovecot_no_idle")
def dovecot_no_idle_fixture() -> Iterator[Dovecot]:
    """A Dovecot that advertises neither IDLE nor MOVE, so the channel polls and moves by copying."""
    yield from _dovecot(idle=False)


def _dovecot(idle: bool, tls: bool = False) -> Iterator[Dovecot]:
    if shutil.which("dovecot") is None:
        pytest.fail("dovecot is not installed: apt-get install dovecot-imapd (./scripts/test does, as root)")
    # not pytest's tmp_path: Dovecot's unprivileged processes must traverse the folder, and its sockets
    # need a short path (108 bytes at most)
    root = Path(tempfile.mkdtemp(prefix="hg-dovecot-"))
    root.chmod(0o755)
    server = Dovecot(root, free_port(), idle=idle, tls=tls, tls_port=free_port() if tls else 0)
    try:
        server.start()
        yield server
    finally:
        server.stop(graceful=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class SmtpRecorder:
    """An SMTP server (aiosmtpd on loopback) that keeps every message it receives."""

    port: int
    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    cert: Path | None = None  # the certificate it presents, when it speaks TLS
    logins: list[str] = field(default_factory=list)  # who logged in, when it requires a login
    refuse: set[str] = field(default_factory=set)  # recipients refused with a 550 (no such user)
    quit_reply: str = "221 Bye"  # how it answers QUIT (a server may answer it with an error, the mail taken)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # aiosmtpd's handler hook
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's handler hook
        return self.quit_reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's handler hook
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.received.append(BytesParser(policy=policy.default).parsebytes(envelope.original_content or b""))
        return "250 OK"

    def wait_for(self, count: int, seconds: float = 15.0) -> list[EmailMessage]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[SmtpRecorder]:
    from aiosmtpd.controller import Controller

    recorder = SmtpRecorder(free_port())
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port)
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


@pytest.fixture(name="smtp_tls_server")
def smtp_tls_server_fixture(tmp_path: Path) -> Iterator[SmtpRecorder]:
    """An SMTP server that requires STARTTLS (a self-signed certificate) and a login (user SMTP_USER,
    password SMTP_PASSWORD); its certificate is ``recorder.cert``."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = SmtpRecorder(free_port(), cert=cert)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER, SMTP_PASSWORD)
        if ok:
            recorder.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port, tls_context=context,
                            require_starttls=True, authenticator=authenticate, auth_required=True)
    controller.start()
    try:
        yield recorder
    finally:
        controller.stop()


def mail(subject: str = "Opening hours", body: str = "When are you open on Sunday?", *,
         sender: str = "Ann <ann@example.org>", message_id: str | None = "<m1@example.org>",
         headers: dict[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = USER
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg


def email_config(dovecot: Dovecot, smtp_port: int | None = None, **extra: Any) -> dict[str, Any]:
    """An agent.yaml ``channels: email:`` block for these peers (the password secret named HG_TEST_IMAP)."""
    return {
        "address": USER,
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "password": "HG_TEST_IMAP"},
        "smtp": {"host": "127.0.0.1", "port": smtp_port or free_port(), "security": "none"},
        **extra,
    }
