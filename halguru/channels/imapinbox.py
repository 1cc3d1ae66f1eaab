"""One IMAP connection to the inbox an email channel answers, through ``imapclient``; blocking, so callers run
each call in a thread (``asyncio.to_thread``) and never on the event loop.

Which mail is still to answer lives on the server, not here: a processed message carries our keyword (and
``\\Seen``), and may then be moved to another folder. The unprocessed set is therefore a search for mail without
the keyword, the same after a restart or on another machine, and marking happens only after the message was
handed on, so a crash between the two refetches it (the sink then recognises its Message-ID).

Every call holds the connection's lock: ``close`` from another thread (a cancelled source) waits for the call in
progress instead of closing the socket under it; ``wait`` returns within a second of ``stop`` being set.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import threading
import time
from dataclasses import dataclass
from imaplib import IMAP4
from typing import Any

from imapclient import IMAPClient

SEEN = b"\\Seen"
MAX_FETCH_BYTES = 25 * 1024 * 1024  # past this only the headers and the body's start are fetched (the agent is told so)
START_BYTES = 1024 * 1024  # the start of a larger message's body: its text, before the attachments that make it large
TIMEOUT = 30.0  # seconds for a connect or a command; IDLE sets its own


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str  # ssl | starttls | none
    username: str
    password: str
    mailbox: str
    keyword: str  # marks a processed message
    move_to: str | None  # where processed mail goes, if anywhere
    max_age_days: int = 0  # mail the server received longer ago is not answered (0: any age)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    truncated: bool  # only the headers and the body's first START_BYTES: the message was larger than MAX_FETCH_BYTES


class Inbox:
    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.client: IMAPClient | None = None
        self.idle = False  # the server offers IDLE (else the caller polls)
        self._can_move = False
        self._keywords = True  # the mailbox stores custom keywords (PERMANENTFLAGS has \*)
        self._lock = threading.Lock()
        self.unreadable: set[int] = set()  # UIDs the parser failed on: skipped on this connection, not marked
        self.mailbox, self.move_to = settings.mailbox, settings.move_to  # as the server spells them (``connect``)

    @property
    def where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port}"

    def connect(self) -> None:
        """Connect, log in, select the mailbox (and create the move_to folder when missing)."""
        s = self.settings
        with self._lock:
            client = open_client(s)
            try:
                capabilities = client.capabilities()
                self.idle = b"IDLE" in capabilities
                self._can_move = b"MOVE" in capabilities
                self.mailbox = server_folder(client, s.mailbox)
                selected = _select(client, self.mailbox, s.mailbox)
                self._keywords = b"\\*" in selected.get(b"PERMANENTFLAGS", (b"\\*",))
                if not self._keywords and not s.move_to:
                    raise ValueError(f"mailbox {s.mailbox} does not store keywords such as {s.keyword}: "
                                     "set processed.move_to so answered mail is moved instead")
                self.move_to = server_folder(client, s.move_to) if s.move_to else None
                if self.move_to and not client.folder_exists(self.move_to):
                    client.create_folder(self.move_to)
            except BaseException:
                _quietly(client.shutdown)
                raise
            self.client = client

    def unprocessed(self) -> list[int]:
        """UIDs of the messages not yet marked processed, oldest first (so a thread is answered in order), of
        those the server received within ``max_age_days``."""
        with self._lock:
            client = self._client()
            _announced_mail(client)  # what the server announced before now is in the view this search sees
            since = self.oldest_day()
            return sorted(int(uid) for uid in client.search(self._unmarked() + (["SINCE", since] if since else [])))

    def too_old(self) -> int:
        """How many unprocessed messages are older than ``max_age_days`` (left as they are, unanswered)."""
        since = self.oldest_day()
        if since is None:
            return 0
        with self._lock:
            return len(self._client().search([*self._unmarked(), "BEFORE", since]))

    def oldest_day(self) -> datetime.date | None:
        """The first day whose mail is answered (IMAP compares the server's delivery dates by day), or None."""
        days = self.settings.max_age_days
        return datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=days) if days else None

    def _unmarked(self) -> list[Any]:
        return ["UNDELETED", "UNKEYWORD", self.settings.keyword] if self._keywords else ["UNDELETED"]

    def fetch(self, uid: int) -> Fetched | None:
        """The message's bytes without setting ``\\Seen`` (PEEK); None when it vanished meanwhile."""
        with self._lock:
            client = self._client()
            size = client.fetch([uid], ["RFC822.SIZE"]).get(uid, {}).get(b"RFC822.SIZE")
            if size is None:
                return None
            if int(size) <= MAX_FETCH_BYTES:
                raw = client.fetch([uid], [b"BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
                return Fetched(uid, bytes(raw), False) if raw is not None else None
            # the text someone wrote comes before the attachments that make a mail this large
            data = client.fetch([uid], [b"BODY.PEEK[HEADER]", b"BODY.PEEK[TEXT]<0.%d>" % START_BYTES]).get(uid, {})
            header, start = data.get(b"BODY[HEADER]"), data.get(b"BODY[TEXT]<0>")
            return Fetched(uid, bytes(header) + bytes(start or b""), True) if header is not None else None

    def mark_processed(self, uid: int) -> None:
        """Flag the message (our keyword and \\Seen), then move it if the channel says so."""
        s = self.settings
        with self._lock:
            client = self._client()
            flags: list[Any] = [SEEN, s.keyword] if self._keywords else [SEEN]
            client.add_flags([uid], flags, silent=True)
            if self.move_to:
                self._move(client, [uid], self.move_to)

    def move_marked(self) -> int:
        """With ``move_to``: move the mail marked processed that is still here (recent, as ``unprocessed`` sees
        it), and how many. An attempt cut between flagging and moving (a worker killed, a connection lost) left
        such mail in the mailbox for good: flagged, it is never looked at again."""
        s = self.settings
        if not s.move_to or not self._keywords:
            return 0  # without keywords a cut attempt's mail is still unprocessed: it is read again, then moved
        with self._lock:
            client = self._client()
            since = self.oldest_day()
            uids = client.search(["UNDELETED", "KEYWORD", s.keyword] + (["SINCE", since] if since else []))
            if uids and self.move_to:
                self._move(client, list(uids), self.move_to)
            return len(uids)

    def _move(self, client: IMAPClient, uids: list[int], folder: str) -> None:
        if self._can_move:
            client.move(uids, folder)
        else:  # no MOVE (RFC 6851): copy, then delete and expunge those messages only (UIDPLUS)
            client.copy(uids, folder)
            client.delete_messages(uids, silent=True)
            if b"UIDPLUS" in client.capabilities():
                client.uid_expunge(uids)
            else:
                client.expunge()

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """IDLE until new mail arrives (True), ``seconds`` pass or ``stop`` is set (False). A connection the
        server closed raises (at once on its BYE, else from ending IDLE), so the caller reconnects."""
        with self._lock:
            client = self._client()
            if _announced_mail(client):
                return True  # it came while the last command ran: the server told us then and will not in IDLE
            client.idle()
            deadline = time.monotonic() + seconds
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                step, began = min(1.0, left), time.monotonic()
                # short checks so that a stopped source lets go of its thread within a second
                responses = client.idle_check(timeout=step)
                for response in responses:
                    if response and response[0] == b"BYE":
                        raise ConnectionError("the server closed the connection: " + _text(response))
                    if len(response) > 1 and response[1] in (b"EXISTS", b"RECENT"):
                        client.idle_done()
                        return True
                if not responses and time.monotonic() - began < step / 2:
                    break  # readable yet nothing to read: end of stream (imapclient hides it); DONE will tell
            client.idle_done()
            return False

    def close(self) -> None:
        """Log out, waiting for a call in progress; errors are ignored (the connection may be gone already)."""
        with self._lock:
            client, self.client = self.client, None
            if client is not None:
                _quietly(client.logout)
                _quietly(client.shutdown)

    def _client(self) -> IMAPClient:
        if self.client is None:
            raise ConnectionError("not connected")
        return self.client


def open_client(s: ImapSettings) -> IMAPClient:
    """A logged-in connection (TLS from the start, upgraded by STARTTLS, or plain on loopback)."""
    context = ssl.create_default_context() if s.security != "none" else None
    client = IMAPClient(s.host, port=s.port, ssl=s.security == "ssl", ssl_context=context, timeout=TIMEOUT)
    try:
        if s.security == "starttls":
            client.starttls(context)
        client.login(s.username, s.password)
    except BaseException:
        _quietly(client.shutdown)
        raise
    return client


def server_folder(client: IMAPClient, name: str) -> str:
    """``name`` as this server spells it: a '/' in it (as Gmail's folders and most guides write a subfolder) is
    the server's hierarchy delimiter, which Dovecot's and Courier's is '.': they refused 'Support/Answered'."""
    if "/" not in name or client.folder_exists(name):
        return name
    listed = client.list_folders("", "")  # LIST "" "": the delimiter alone
    delimiter = listed[0][1] if listed else None
    if isinstance(delimiter, bytes):
        delimiter = delimiter.decode()
    return name.replace("/", delimiter) if delimiter and delimiter != "/" else name


def _select(client: IMAPClient, folder: str, configured: str) -> dict[bytes, Any]:
    """Select ``folder``; one that does not exist is a one-line error naming the folders that do."""
    try:
        return client.select_folder(folder)
    except IMAP4.error:  # imapclient's IMAPClientError
        if client.folder_exists(folder):
            raise
        names = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]
        shown = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
        raise ValueError(f"imap.mailbox {configured} does not exist on the server; its folders: {shown}") from None


def find_message(s: ImapSettings, folder: str, message_id: str) -> bool:
    """Whether ``folder`` holds a message with this Message-ID (a reply the SMTP server filed as sent)."""
    client = open_client(s)
    try:
        folder = server_folder(client, folder)
        if not client.folder_exists(folder):
            return False
        client.select_folder(folder, readonly=True)
        return bool(client.search(["HEADER", "Message-ID", message_id]))
    finally:
        _quietly(client.logout)


def _text(response: tuple[Any, ...]) -> str:
    return " ".join(p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in response)


def _quietly(call: Any) -> None:
    # closing a connection that already failed: nothing is left to do with its error
    with contextlib.suppress(Exception):
        call()


def _announced_mail(client: IMAPClient) -> bool:
    """Whether the server announced new mail (``EXISTS``) in a command's response since the last call.

    A server answers a command (SEARCH too) from the mailbox as the session last saw it and announces mail that
    arrived meanwhile only at the command's end, once; imaplib files such unsolicited responses aside, where
    imapclient leaves them. Without this look a mail that came during the last search would wait in IDLE, which
    reports only later changes, for the next mail or the IDLE timeout."""
    return bool(client._imap.untagged_responses.pop("EXISTS", None))
