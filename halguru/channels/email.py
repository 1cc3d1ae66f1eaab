"""The email channel: an agent answers an IMAP inbox, one conversation per thread, replies over SMTP.

```yaml
channels:
  email:
    address: help@example.com          # ours: replies come from it; mail from it is never answered
    imap: {host: imap.example.com, password: HELP_MAIL_PASSWORD}     # the NAME of a secret
    smtp: {host: smtp.example.com, password: HELP_MAIL_PASSWORD}
```

One conversation per thread (its first Message-ID) and correspondent (the address answers go to), so quoting
another person's Message-ID never joins their conversation.

The invariant: a message is handed to the sink before it is marked processed on the server (our keyword and
``\\Seen``, then a move if configured), and the sink keys it by its Message-ID, so a crash never loses a
message and a restart never answers one twice. A reply goes out through ``SendOnce`` with a Message-ID made
from the job id: a retry after the reply was recorded sends nothing; a retry after a crash mid-send sends the
same mail again (the same id, shown once by mail clients) unless ``sent_folder`` shows that it went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from halguru.channels.base import (
    REPEATS,
    ChannelError,
    Inbound,
    InboundSink,
    Outbound,
    SendOnce,
    SourceStatus,
    answered_enough,
    repeating,
)
from halguru.channels.imapinbox import ImapSettings, Inbox, find_message
from halguru.channels.mailparse import ParsedMail, parse_mail, trimmed_references
from halguru.errors import HalguruError

log = logging.getLogger("halguru.channels.email")

IDLE_SECONDS = 300.0  # re-issue IDLE this often: RFC 2177 allows 29 min, but NAT boxes drop quiet links sooner
BACKOFF_START, BACKOFF_MAX = 1.0, 300.0
SMTP_TIMEOUT = 30.0
_DEFAULT_PORTS = {"imap": {"ssl": 993, "starttls": 143, "none": 143},
                  "smtp": {"ssl": 465, "starttls": 587, "none": 25}}
_KEYWORD = re.compile(r"^\$?[A-Za-z0-9_.-]+$")  # an IMAP flag keyword: an atom, not a system flag


class _Server(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default: by protocol and security
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: str | None = None  # default: the channel's address (SMTP: the IMAP username)
    password: str | None = None  # the NAME of a secret (environment variable or keyring), never the password

    @model_validator(mode="after")
    def _plaintext_only_on_loopback(self) -> _Server:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(f"security: none sends the password in clear text; it is allowed only for a "
                             f"loopback host (localhost, 127.0.0.1), not {self.host}: use ssl or starttls")
        return self


class ImapConfig(_Server):
    mailbox: str = "INBOX"


class SmtpConfig(_Server):
    security: Literal["ssl", "starttls", "none"] = "starttls"


class ProcessedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flag: str = "$HalguruAnswered"  # the keyword that marks a handled message (with \Seen)
    move_to: str | None = None  # a folder to move handled mail to (created when missing)

    @field_validator("flag")
    @classmethod
    def _keyword(cls, value: str) -> str:
        if not _KEYWORD.match(value):
            raise ValueError(f"{value!r} is not an IMAP keyword (letters, digits, _ . -, optionally after $)")
        return value


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str
    imap: ImapConfig
    smtp: SmtpConfig
    processed: ProcessedConfig = ProcessedConfig()
    poll_interval: float = Field(default=60.0, gt=0)  # seconds between checks when the server lacks IDLE
    allow_from: list[str] = []  # addresses or domains ('@example.com'); empty: anyone
    # a robot that answers everything without saying so (no Auto-Submitted...) and our answers would mail each
    # other for ever: past this many mails answered for one correspondent in an hour, theirs are not answered
    max_answers_per_hour: int = Field(default=20, ge=0)  # 0: no limit
    # where the SMTP server files what we send (Gmail and Exchange do): a job retried after a crash mid-send
    # looks there for its reply's Message-ID before sending again
    sent_folder: str | None = None
    # mail the IMAP server received more days ago than this is left as it is, unanswered: an inbox with years of
    # mail at first start, or after a long outage, is not answered months late (0: mail of any age)
    max_age_days: int = Field(default=7, ge=0)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip().lower()
        if value.count("@") != 1 or not all(value.split("@")) or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an email address")
        return value


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EmailChannel:
    """Answers one IMAP inbox for one agent (``channels: {email: ...}`` in agent.yaml)."""

    name: ClassVar[str] = "email"

    def __init__(self, agent: str, config: Mapping[str, Any], folder: Path) -> None:
        self.agent = agent
        try:
            self.config = EmailConfig.model_validate(dict(config))
        except ValidationError as exc:
            raise HalguruError(f"agent {agent}: {_first_problem(exc)}") from None
        imap, smtp = self.config.imap, self.config.smtp
        self.imap_password = self._secret(imap.password, "imap")
        if self.imap_password is None:
            raise HalguruError(f"agent {agent}: channels.email.imap.password: name the secret that holds the "
                               "IMAP password (an environment variable or a keyring entry)")
        self.smtp_password = self._secret(smtp.password, "smtp")
        self.imap_settings = ImapSettings(
            host=imap.host, port=imap.port or _DEFAULT_PORTS["imap"][imap.security], security=imap.security,
            username=imap.username or self.config.address, password=self.imap_password, mailbox=imap.mailbox,
            keyword=self.config.processed.flag, move_to=self.config.processed.move_to,
            max_age_days=self.config.max_age_days,
        )
        self.domain = self.config.address.rpartition("@")[2]
        self.status: SourceStatus | None = None  # None until the first connection attempt ends

    def _secret(self, name: str | None, server: str) -> str | None:
        from halguru.models.secrets import lookup_secret

        if name is None:
            return None
        value = lookup_secret(name)
        if value is None:
            raise HalguruError(f"agent {self.agent}: channels.email.{server}.password: no secret {name}; set the "
                               f"environment variable {name} or run `keyring set halguru {name}`")
        return value

    # -- reading the inbox ---------------------------------------------------------------------------------------

    async def source(self, sink: InboundSink) -> None:
        """Answer the inbox for ever: drain unprocessed mail, then IDLE (or sleep poll_interval), reconnecting
        with backoff after any failure (one log line each, no traceback)."""
        delay = BACKOFF_START
        while True:
            inbox, stop = Inbox(self.imap_settings), threading.Event()
            try:
                await asyncio.to_thread(inbox.connect)
                log.info("email channel of %s: connected to %s (%s)", self.agent, inbox.where,
                         "IDLE" if inbox.idle else f"polling every {self.config.poll_interval:g} s")
                self.status = SourceStatus(True, f"IMAP {inbox.where}: connected")
                if old := await asyncio.to_thread(inbox.too_old):
                    log.info("email channel of %s: %d unanswered message%s in %s arrived before %s: left unanswered "
                             "(max_age_days: %d)", self.agent, old, "" if old == 1 else "s",
                             self.imap_settings.mailbox, inbox.oldest_day(), self.config.max_age_days)
                if moved := await asyncio.to_thread(inbox.move_marked):
                    log.info("email channel of %s: moved %d answered message%s left in %s to %s", self.agent, moved,
                             "" if moved == 1 else "s", self.imap_settings.mailbox, self.imap_settings.move_to)
                while await self._drain(inbox, sink):
                    pass  # mail arrived while we were busy: look again before waiting
                # reset only now: a connection that fails at every first drain (a store that is down) backs off
                delay = BACKOFF_START
                await self._serve(inbox, sink, stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the connection is closed and reopened after a pause
                log.warning("email channel of %s (IMAP %s): %s; retrying in %.3g s", self.agent, inbox.where,
                            _one_line(exc), delay)
                self.status = SourceStatus(False, f"IMAP {inbox.where}: {_one_line(exc)}; retrying")
                log.debug("email channel failure", exc_info=True)
            finally:
                stop.set()
                # closing waits for a call still running in its thread: never on the event loop
                threading.Thread(target=inbox.close, name="halguru-imap-close", daemon=True).start()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _serve(self, inbox: Inbox, sink: InboundSink, stop: threading.Event) -> None:
        """Wait for mail (IDLE, else a poll interval), then answer all of it; for ever."""
        while True:
            if inbox.idle:
                await asyncio.to_thread(inbox.wait, IDLE_SECONDS, stop)
            else:
                await asyncio.sleep(self.config.poll_interval)
            while await self._drain(inbox, sink):
                pass  # mail arrived while we were busy: look again before waiting

    async def _drain(self, inbox: Inbox, sink: InboundSink) -> int:
        """Hand every unprocessed message to the sink, marking each after; how many there were."""
        uids = [uid for uid in await asyncio.to_thread(inbox.unprocessed) if uid not in inbox.unreadable]
        for uid in uids:
            fetched = await asyncio.to_thread(inbox.fetch, uid)
            if fetched is None:
                continue
            try:
                # parsing reads attachments (PDF text): a thread, so the event loop stays free
                mail = await asyncio.to_thread(parse_mail, fetched.raw, own_address=self.config.address,
                                               allow_from=self.config.allow_from, truncated=fetched.truncated)
            except Exception as exc:  # a message we cannot read must not stop the inbox: left there, unmarked
                inbox.unreadable.add(uid)
                log.warning("email channel of %s: cannot read message UID %s (%s); left unanswered in %s",
                            self.agent, uid, _one_line(exc), self.imap_settings.mailbox)
                continue
            if not mail.skip and mail.thread.endswith(f"@{self.domain}>"):
                mail = await asyncio.to_thread(self._rethread, sink, mail)
            too_many = None if mail.skip else await asyncio.to_thread(self._over_limit, sink, mail)
            if mail.bounce is not None and mail.bounce[0].endswith(f"@{self.domain}>"):  # one of our answers
                log.warning("email channel of %s: our mail %s bounced: %s", self.agent, *mail.bounce)
                await asyncio.to_thread(sink.update_status, self.name, mail.bounce[0], "failed", mail.bounce[1])
            if mail.skip:
                log.info("email channel of %s: not answering %s from %s: %s", self.agent, mail.message_id,
                         mail.sender or "?", mail.skip)
            elif too_many:
                log.warning("email channel of %s: not answering %s from %s: %s", self.agent, mail.message_id,
                            mail.sender, too_many)
            else:
                await asyncio.to_thread(sink.accept, self.inbound(mail))  # a store write: off the event loop
            await asyncio.to_thread(inbox.mark_processed, uid)
        return len(uids)

    def _rethread(self, sink: InboundSink, mail: ParsedMail) -> ParsedMail:
        """``mail`` in the thread of the mail our answer answered, when its thread seems to start at that answer:
        a client that sends only In-Reply-To (no References), or a References chain cut short, started a new
        conversation at each reply, the agent forgetting the thread. Only for the correspondent we answered
        (their address is part of the conversation's key). The root also heads the References of our answer."""
        answered = sink.reply_of(self.name, self.agent, mail.thread)
        if not answered or str(answered.get("to", "")) != mail.reply_to:
            return mail
        root = str(([*answered.get("references", [])] or [answered.get("message_id")])[0] or "")
        if not root or root == mail.thread:
            return mail
        references = mail.references if root in mail.references else [root, *mail.references]
        return replace(mail, thread=root, references=references)

    def _over_limit(self, sink: InboundSink, mail: ParsedMail) -> str | None:
        """Why ``mail`` is not answered now, or None: ``max_answers_per_hour`` of its correspondent's mails were
        answered in the last hour, or this long text ``REPEATS`` times (a robot answering each of our answers
        with the same words and no Auto-Submitted: 20 paid runs an hour, for ever)."""
        limit = self.config.max_answers_per_hour
        if answered_enough(sink, self.name, self.agent, mail.reply_to, limit):
            return (f"{limit} of their mails were answered in the last hour (max_answers_per_hour): a mail loop "
                    f"with a robot? Raise the limit if they are a person")
        if repeating(sink, self.name, self.agent, mail.reply_to, mail.text):
            return f"the same mail {REPEATS} times in the last hour, each answered: an auto-responder?"
        return None

    def inbound(self, mail: ParsedMail) -> Inbound:
        return Inbound(
            channel=self.name, agent=self.agent, message_id=mail.message_id, sender=mail.sender,
            # one conversation per thread and per address its answers go to: a thread's Message-IDs are no
            # secret (every reply carries them), so whoever quotes them in References gets a conversation of
            # their own, never the agent's answer from another person's thread
            thread=f"{mail.reply_to}|{mail.thread}", text=mail.text, title=mail.subject or "(no subject)",
            correspondent=mail.reply_to, length=mail.length,
            reply={"to": mail.reply_to, "subject": mail.subject, "message_id": mail.message_id,
                   "references": list(mail.references)},
        )

    # -- replying ------------------------------------------------------------------------------------------------

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        """Reply to the message in ``message.reply`` in one mail, at most once for the job."""
        mail = self.reply_mail(message)
        message_id = str(mail["Message-ID"])

        async def deliver() -> dict[str, Any]:
            await asyncio.to_thread(self._smtp_send, mail)
            return {"message_id": message_id}

        async def find(started: float) -> dict[str, Any] | None:
            # an attempt died while sending: if the server filed the reply, it went out; do not send it twice
            folder = str(self.config.sent_folder)
            found = await asyncio.to_thread(find_message, self.imap_settings, folder, message_id)
            return {"message_id": message_id} if found else None

        result = await once("mail", deliver, find if self.config.sent_folder else None)
        return [str(result.get("message_id", message_id))]

    def reply_mail(self, message: Outbound) -> EmailMessage:
        reply = message.reply
        original = str(reply.get("message_id", ""))
        subject = " ".join(str(reply.get("subject", "")).split())
        mail = EmailMessage()
        mail["From"] = self.config.address
        mail["To"] = str(reply["to"])
        mail["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}".rstrip()
        mail["Date"] = formatdate(localtime=True)
        # the same job always gets the same id: a resend after a crash is recognisably the same reply
        mail["Message-ID"] = f"<{_id_part(message.job_id)}.0@{self.domain}>"
        if original:
            mail["In-Reply-To"] = original
            mail["References"] = " ".join(trimmed_references(list(reply.get("references", [])), original))
        mail["Auto-Submitted"] = "auto-replied"  # RFC 3834: other responders must not answer us
        mail["X-Auto-Response-Suppress"] = "All"  # the same for Exchange's out-of-office replies
        mail.set_content(message.text)
        return mail

    def _smtp_send(self, mail: EmailMessage) -> None:
        smtp = self.config.smtp
        try:
            send_mail(smtp, smtp.username or self.imap_settings.username, self.smtp_password, mail)
        except (smtplib.SMTPException, OSError) as exc:
            hint = _LOGIN_HINT if self.smtp_password is None and _wants_login(exc) else ""
            raise ChannelError(f"email channel of {self.agent}: SMTP {smtp.host}:{smtp_port(smtp)}: "
                               f"{smtp_problem(exc)}{hint}", permanent=refused_for_good(exc)) from None


def smtp_port(smtp: SmtpConfig) -> int:
    return smtp.port or _DEFAULT_PORTS["smtp"][smtp.security]


def send_mail(smtp: SmtpConfig, username: str, password: str | None, mail: EmailMessage) -> None:
    """Send one mail through ``smtp`` (TLS as configured, a login when there is a password): the one SMTP
    client of halguru, shared by the email channel and serve mode's account mails. Raises smtplib's errors
    or OSError."""
    context = ssl.create_default_context()
    port = smtp_port(smtp)
    server = (smtplib.SMTP_SSL(smtp.host, port, timeout=SMTP_TIMEOUT, context=context)
              if smtp.security == "ssl" else smtplib.SMTP(smtp.host, port, timeout=SMTP_TIMEOUT))
    try:
        if smtp.security == "starttls":
            server.starttls(context=context)
        if password is not None:
            server.login(username, password)
        server.send_message(mail)
    finally:
        # once the server took the mail, how it answers QUIT changes nothing: smtplib's ``with`` raised on an
        # answer other than 221, the job failed, and its retry sent the same mail again
        with contextlib.suppress(smtplib.SMTPException, OSError):
            server.quit()
        server.close()


def smtp_problem(exc: BaseException) -> str:
    """An SMTP failure in one line, in the server's words: ``ann@x refused: 550 5.1.1 No such user`` rather
    than smtplib's ``{'ann@x': (550, b'5.1.1 No such user')}``."""
    def reply(code: int, text: bytes | str) -> str:
        words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return " ".join(f"{code} {words}".split())

    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        return "; ".join(f"{to} refused: {reply(code, text)}" for to, (code, text) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender {exc.sender} refused: {reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {reply(exc.smtp_code, exc.smtp_error)}"
    return _one_line(exc)


def refused_for_good(exc: BaseException) -> bool:
    """The server refused this mail with a 5xx (no such recipient, a rejected sender or content): sending it
    again cannot help. A failed login is not, nor a login or TLS the server requires, nor a relay it denies to a
    sender that did not log in: the operator fixes the configuration and the retry goes out (those were dead
    at once, every answer lost until someone noticed)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(code >= 500 and not _operators(code, text)
                                             for code, text in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return exc.smtp_code >= 500 and not _operators(exc.smtp_code, exc.smtp_error)
    return False


def _operators(code: int, text: bytes | str) -> bool:
    """Whether an SMTP refusal is the configuration's to fix: 530 a login or STARTTLS required, 535 a refused
    login, 538 encryption required (RFC 4954), or a relay denied (Postfix's '554 5.7.1 ... Relay access
    denied': a sender that did not log in)."""
    words = (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).lower()
    return code in (530, 535, 538) or "relay" in words


_LOGIN_HINT = "; the server wants a login: set smtp.password (and smtp.username) in the agent's channels.email"


def _wants_login(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(_operators(code, text) for code, text in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and _operators(exc.smtp_code, exc.smtp_error)


def _id_part(job_id: str) -> str:
    """The job id as the left part of a Message-ID (dot-atom characters only)."""
    return re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]", "-", job_id).strip(".") or "job"


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"channels.email{'.' + where if where else ''}: {message}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:
        text = text[2:-1]  # imaplib's errors carry the server's bytes
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
