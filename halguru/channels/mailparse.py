"""Read one fetched email for an agent: who wrote it, which thread it belongs to, its text, and whether to answer.

Everything here is a pure function of the raw message bytes (and the channel's own address and sender list), so
the IMAP loop stays small and every rule is testable on its own. The invariants:

- a message that a bot must not answer (auto-replies, bounces, list mail, our own mail, senders not allowed,
  a Reply-To that is ours or not allowed) gets a ``skip`` reason instead of text: answering those is how mail
  loops start (RFC 3834);
- the thread is the thread's first Message-ID, so every reply in a thread is recognised as part of it (the
  channel keeps one conversation per thread and correspondent: ``EmailChannel.inbound``);
- a message always has an id: without a Message-ID header it gets a stable one made from its bytes, so
  a refetch after a crash is recognised as the same message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses
from pathlib import Path
from typing import Any, cast

from halguru.channels.mailcharset import header_text, part_text
from halguru.channels.mailhtml import ReadText, html_text

MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024  # a bigger attachment is listed, not read
MAX_ATTACHMENT_CHARS = 20_000  # per attachment: the agent's context is the limit, not the file
MAX_TEXT_CHARS = 60_000  # the whole message, attachments included
MAX_REFERENCES = 20  # RFC 5322 lets a reply trim References; keep the root and the latest ones
MAX_HEADER_CHARS = 4_000  # a longer header is cut as it is read (``_MailPolicy``)
MAX_PARTS = 1_000  # a mail of more MIME parts is read to there (each costs ~0.7 ms to parse: 20,000 took 15 s)
MAX_ENCLOSED = 50  # mails inside it (forwards as attachments, each nesting the parser a level deeper) read

_ID = re.compile(r"<[^<>\s]+>")  # a msg-id in a header (not HTML: headers are plain text)
_BOUNCE_SENDERS = {"mailer-daemon", "postmaster"}
_NOT_ANSWERED_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}  # auto_reply: responders that skip RFC 3834
# RFC 2369/2919 list fields (and ezmlm's): a list's post, a newsletter's unsubscribe link, not a person writing
_LIST_HEADERS = ("List-Id", "List-Post", "List-Unsubscribe", "Mailing-List")


@dataclass(frozen=True)
class ParsedMail:
    message_id: str  # '<...>' as in the header
    sender: str  # the From address, lower-case ('' when none could be read)
    reply_to: str  # where an answer goes: Reply-To, else From
    subject: str
    thread: str  # the thread's root Message-ID
    references: list[str]  # the References chain of this message (for the reply's References)
    text: str = ""
    skip: str | None = None  # why the message is not answered (it is still marked processed)
    bounce: tuple[str, str] | None = None  # a bounce's (Message-ID it reports failed, why): ``bounce``
    notes: list[str] = field(default_factory=list)  # what was left out (unreadable attachments...)
    length: int = 0  # how long the text was before it was cut at MAX_TEXT_CHARS (0: not cut)


def parse_mail(raw: bytes, *, own_address: str, allow_from: list[str] | None = None,
               truncated: bool = False) -> ParsedMail:
    """Read ``raw`` (RFC 5322 bytes). ``truncated``: only the headers and the body's start were fetched (an
    oversized message): its text is read, its attachments only named."""
    start, many = _first_parts(raw)
    msg = BytesParser(policy=_POLICY).parsebytes(start)
    message_id = _first_id(_header(msg, "Message-ID")) or synthetic_id(raw)
    references = _ids(_header(msg, "References"))
    in_reply_to = _ids(_header(msg, "In-Reply-To"))
    thread = references[0] if references else in_reply_to[0] if in_reply_to else message_id
    if in_reply_to and in_reply_to[-1] not in references:
        references.append(in_reply_to[-1])  # a client that sent only In-Reply-To still threads our answer
    sender = _address(msg, "From")
    reply_to = _address(msg, "Reply-To") or sender
    base = ParsedMail(message_id=message_id, sender=sender, reply_to=reply_to,
                      subject=" ".join(_subject(msg).split()), thread=thread, references=references)
    reason = skip_reason(msg, sender, own_address=own_address, allow_from=allow_from, reply_to=reply_to)
    if reason:
        return replace(base, skip=reason, bounce=bounce(msg))
    notes: list[str] = []
    truncated = truncated or many
    text, length = message_text(msg, notes, truncated=truncated)
    if truncated:
        text = f"{text}\n\n(The message was too large to read whole: its text arrived, its attachments did not.)"
    return replace(base, text=text if text.strip() else "(empty message)", notes=notes,
                   length=length if len(text) < length else 0)


def _first_parts(raw: bytes) -> tuple[bytes, bool]:
    """The mail up to about its ``MAX_PARTS``-th part (or ``MAX_ENCLOSED``-th mail inside it), and whether it went
    on: read whole, a crafted mail of 20,000 tiny parts (2 MB) held the inbox for 15 s, a 25 MB one for minutes,
    and one of mails inside mails 5,000 deep broke the parser (RecursionError: never answered, read again at
    every reconnect). In a multipart mail every part opens with a line starting ``--`` (its boundary), so
    counting those lines bounds the parts (a line of the text starting so counts too: a person's mail has far
    fewer); an enclosed mail (message/rfc822) has no boundary of its own, so its headers are counted. The cut
    mail parses as one that ended early."""
    cut = len(raw)
    if _MULTIPART.search(raw):
        for count, line in enumerate(re.finditer(rb"^--", raw, re.MULTILINE), 1):
            if count > MAX_PARTS:
                cut = line.start()
                break
    for count, enclosed in enumerate(_ENCLOSED.finditer(raw, 0, cut), 1):
        if count > MAX_ENCLOSED:
            cut = enclosed.start()
            break
    return raw[:cut], cut < len(raw)


_MULTIPART = re.compile(rb"^content-type:\s*multipart/", re.IGNORECASE | re.MULTILINE)
_ENCLOSED = re.compile(rb"^content-type:\s*message/", re.IGNORECASE | re.MULTILINE)


_ID_CHAINS = {"references", "in-reply-to", "message-id"}


class _MailPolicy(EmailPolicy):
    """``policy.default``, but a header longer than ``MAX_HEADER_CHARS`` (of any part) is cut as it is read. The
    standard library reads a header in time quadratic in its words, and reads some while it parses (a part's
    Content-Type): a mail with a 3 MB References took 200 s to read, one with a 300 KB Content-Type parameter
    23 s, the inbox waiting, and a 25 MB mail could stall it for hours. No mail a person sends has such a header.
    A chain of Message-IDs keeps its first and latest ids (as a reply's References is trimmed); any other header
    its start."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if len(value) > MAX_HEADER_CHARS:
            if name.lower() in _ID_CHAINS:
                ids = _ids(value[:MAX_HEADER_CHARS]) + _ids(value[-MAX_HEADER_CHARS:])
                value = " ".join(dict.fromkeys([*ids[:1], *ids[-(MAX_REFERENCES - 1):]]))
            else:
                value = value[:MAX_HEADER_CHARS]
        return name, value


_POLICY = cast("EmailPolicy[EmailMessage]", _MailPolicy())  # its messages are EmailMessage, as policy.default's


_ORIGINAL_PARTS = ("text/rfc822-headers", "message/rfc822-headers", "message/rfc822")


def bounce(msg: Message) -> tuple[str, str] | None:
    """(the Message-ID of the mail it reports, why) when ``msg`` is a delivery status notification (RFC 3464)
    saying that mail failed, for its delivery record: a bounce of an answer was skipped as mail not to answer,
    and the answer read 'sent' for ever. None for anything else (a delay, a read report, a DSN without the
    original's headers)."""
    if msg.get_content_type() != "multipart/report" or str(msg.get_param("report-type", "")).lower() != \
            "delivery-status":
        return None
    original, why = None, []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            for fields in part.get_payload():  # the per-message fields, then each recipient's
                if isinstance(fields, Message) and _header(fields, "Action").strip().lower() == "failed":
                    recipient = _header(fields, "Final-Recipient").partition(";")[2].strip()
                    said = " ".join(f"{_header(fields, 'Status')} {_header(fields, 'Diagnostic-Code')}".split())
                    why.append(f"{recipient}: {said}" if recipient else said)
        elif kind in _ORIGINAL_PARTS and original is None:
            original = _first_id(_header(_original_headers(part), "Message-ID"))
    return (original, "; ".join(why)[:500]) if original and why else None


def _original_headers(part: Message) -> Message:
    """The failed mail's headers a DSN carries: the attached mail itself, or its headers as text."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        return inner if isinstance(inner, Message) else Message()
    raw = part.get_payload(decode=True)
    return BytesParser(policy=_POLICY).parsebytes(raw if isinstance(raw, bytes) else b"", headersonly=True)


def synthetic_id(raw: bytes) -> str:
    """A stable Message-ID for a message that has none: the same bytes always give the same id."""
    return f"<{hashlib.sha256(raw).hexdigest()[:32]}@halguru.invalid>"


def skip_reason(msg: Message, sender: str, *, own_address: str, allow_from: list[str] | None,
                reply_to: str | None = None) -> str | None:
    """Why this message must not be answered, or None. Checked before the body is read.

    ``reply_to`` (where the answer would go, when not ``sender``) passes the same address rules as the sender:
    From is what the receiving server's SPF/DKIM/DMARC checks vouch for, Reply-To nobody checks, so an allowed
    From must not carry the answer to someone ``allow_from`` keeps out."""
    # its keyword without RFC 3834's comments: 'no (sent by a person)' is a person's mail
    auto = " ".join(_COMMENT.sub(" ", _header(msg, "Auto-Submitted").split(";")[0]).split()).lower()
    if auto and auto != "no":
        return f"auto-submitted ({auto})"
    if _header(msg, "Precedence").strip().lower() in _NOT_ANSWERED_PRECEDENCE:
        return f"precedence {_header(msg, 'Precedence').strip().lower()}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply"):
        if msg.get(name) is not None:
            return f"auto-reply ({name})"
    suppress = _header(msg, "X-Auto-Response-Suppress").strip().lower()
    if suppress and suppress != "none":
        return f"the sender asks for no automatic replies (X-Auto-Response-Suppress: {suppress})"
    if msg.get("Return-Path") is not None and "".join(_header(msg, "Return-Path").split()) in ("", "<>"):
        return "empty Return-Path (a bounce or notification)"
    if msg.get_content_type() == "multipart/report":
        return "delivery or read report (multipart/report)"
    for name in _LIST_HEADERS:
        if name in msg:  # present at all (not parsed: a malformed value still counts)
            return f"mailing-list mail ({name})"
    if own_address.lower() in _PLAIN_ADDRESS.findall(_header(msg, "X-Loop").lower()):
        return "X-Loop names our own address (mail we sent, come back)"
    if not sender:
        return "no readable From address"
    if _system_address(sender):
        return f"bounce or system mail (from {sender})"
    if sender == own_address.lower():
        return "sent from our own address"
    if allow_from and not sender_allowed(sender, allow_from):
        return f"sender {sender} is not in allow_from"
    if reply_to and reply_to != sender:
        if reply_to == own_address.lower():
            return "replies would go to our own address"
        if _system_address(reply_to):
            return f"replies would go to {reply_to}, a bounce or list address"
        if allow_from and not sender_allowed(reply_to, allow_from):
            return f"replies would go to {reply_to}, which is not in allow_from"
    if _NO_REPLY.match((reply_to or sender).split("@")[0]):  # From: no-reply@ with a Reply-To: support@ is answered
        return f"replies would go to {reply_to or sender}, which takes none (a no-reply address)"
    return None


_COMMENT = re.compile(r"\([^()]*\)")  # a header comment (not nested: enough for a keyword beside it)
_NO_REPLY = re.compile(r"(no|do[-_.]?not)[-_.]?reply([-+_.].*)?$")
"""A local part that says answers are not read (noreply, no-reply, donotreply, noreply+orders): a shop's order
confirmation or a service's notice forwarded to the inbox; an answer there is a paid run for nobody, or a bounce."""


def _system_address(address: str) -> bool:
    """A mail system's or a list's own address (as vacation(1) reads them): MAILER-DAEMON, postmaster, a
    list's owner-NAME and NAME-request; a person never writes from one, and an answer there feeds a loop."""
    local = address.split("@")[0]
    return local in _BOUNCE_SENDERS or local.startswith("owner-") or local.endswith("-request")


def sender_allowed(sender: str, allow_from: list[str]) -> bool:
    """``allow_from`` holds addresses ('ann@example.com') and domains ('@example.com' or 'example.com')."""
    domain = sender.rpartition("@")[2]
    for entry in allow_from:
        entry = entry.strip().lower()
        if entry in (sender, domain, "@" + domain):
            return True
    return False


def message_text(msg: EmailMessage, notes: list[str], *, truncated: bool = False) -> tuple[str, int]:
    """The body as text (plain preferred, HTML converted), then each attachment's text where a loader reads it
    (only its name when ``truncated``: the message's end, and so the attachments, were not fetched); and how long
    that was before it was cut at ``MAX_TEXT_CHARS`` (attachments past the cut not counted: they are not read)."""
    body, read = _body_text(msg)
    text = strip_quoted(read.text, reply=_is_reply(msg)) if body is not None else read.text
    if read.cut:
        notes.append(f"HTML read in part: {read.cut}")
        text += f"\n[... the rest of this HTML mail was not read: {read.cut}]"
    parts = [text.strip()]
    # a mail that is one attachment and nothing else (a scanner's PDF, a file sent as the whole message) has no
    # body and no parts: it is its own attachment, which the agent got as '(empty message)'
    attachments = msg.iter_attachments() if msg.is_multipart() else iter([msg] if body is None else [])
    for part in attachments:
        attached_mail = part.get_content_type() == "message/rfc822"
        if part.is_multipart() and not attached_mail:
            continue  # the parts of a multipart that is no body: nothing a person attached
        if sum(len(p) for p in parts) > MAX_TEXT_CHARS:
            break  # the rest would only be cut away below: none is parsed
        if truncated:
            name = part.get_filename() or "unnamed"
            notes.append(f"{name}: not fetched (the message was too large)")
            parts.append(f"[attachment: {name}, not read: the message was too large]")
            continue
        parts.append(attached_mail_text(part) if attached_mail else attachment_text(part, notes))
    joined = "\n\n".join(p for p in parts if p)
    # with the body's text that was not read, unless what was read was mostly quoted history (so was the rest)
    length = len(joined) + (max(read.length - len(read.text), 0) if len(text) > MAX_TEXT_CHARS else 0)
    if length > MAX_TEXT_CHARS:
        joined = joined[:MAX_TEXT_CHARS] + "\n[... message cut here: too long]"
        notes.append("message cut to its first characters")
    return joined, length


def _body_text(msg: EmailMessage) -> tuple[MIMEPart | None, ReadText]:
    """The part read as the body (None: there is none) and its text: the plain part, else the HTML as text (both
    read only to twice ``MAX_TEXT_CHARS``, room for the quoted history to drop: the rest would be cut away)."""
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return None, ReadText("", 0)
    content = part_text(body)
    if body.get_content_type() == "text/plain" and not content.strip():
        # an alternative whose plain part is empty (some clients and mailing tools send one): the words are in
        # its HTML, and the agent got '(empty message)'
        html = msg.get_body(preferencelist=("html",))
        if html is not None:
            body, content = html, part_text(html)
    if body.get_content_type() == "text/html":
        return body, html_text(content, limit=2 * MAX_TEXT_CHARS)
    # as HTML, only what the agent may get is read further: the quoted-history search over 20 MB took 19 s
    text = content.replace("\r\n", "\n").strip()
    return body, ReadText(text[:2 * MAX_TEXT_CHARS], len(text))


def attached_mail_text(part: MIMEPart) -> str:
    """A mail attached to the mail (Forward as Attachment, a suspect mail reported): who wrote it, its subject and
    its text, which the agent is asked about; its own attachments are not read."""
    name = part.get_filename() or "forwarded mail"
    inner = part.get_payload(0) if part.is_multipart() else None
    if not isinstance(inner, EmailMessage):
        return f"[attachment: {name} (a mail), not read]"
    text = _body_text(inner)[1].text.strip()
    if len(text) > MAX_ATTACHMENT_CHARS:
        text = text[:MAX_ATTACHMENT_CHARS] + "\n[... attachment cut here]"
    fields = (("From", _header(inner, "From")), ("Date", _header(inner, "Date")), ("Subject", _subject(inner)))
    head = "\n".join(f"{field}: {' '.join(value.split())}" for field, value in fields if value.strip())
    return f"[attachment: {name} (a mail)]\n{head}\n\n{text}".rstrip()


def attachment_text(part: MIMEPart, notes: list[str]) -> str:
    """``[attachment: name]`` and the text the knowledge loaders read from it, or a line saying why not."""
    from halguru.rag.loaders import Document, kind_of, load

    name = part.get_filename() or "unnamed"
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    size = f"{len(data) / 1024:.0f} KB"
    path = Path(Path(name).name or "unnamed")  # the sender's name only, never a path it smuggles in
    is_pdf = part.get_content_type() == "application/pdf"
    if kind_of(path) is None and part.get_content_maintype() != "text" and not is_pdf:
        notes.append(f"{name}: not read ({part.get_content_type()})")
        return f"[attachment: {name} ({part.get_content_type()}, {size}), not read]"
    if len(data) > MAX_ATTACHMENT_BYTES:
        notes.append(f"{name}: too large to read")
        return f"[attachment: {name} ({size}), too large to read]"
    html = kind_of(path) is None and part.get_content_type() == "text/html"
    if html or path.suffix.lower() in (".html", ".htm"):
        # read as the body is, only as far as the agent gets it: the loaders read a 5 MB page whole (2 s)
        read = html_text(part_text(part), limit=MAX_ATTACHMENT_CHARS)
        content = read.text + (f"\n[... the rest was not read: {read.cut}]" if read.cut else "")
    else:
        if is_pdf and kind_of(path) != "pdf":
            path = path.with_suffix(".pdf")
        loaded = load(path, data, max_chars=MAX_ATTACHMENT_CHARS)
        if not isinstance(loaded, Document):
            notes.append(f"{name}: {loaded.reason}")
            return f"[attachment: {name}, not read: {loaded.reason}]"
        content = loaded.text.strip()
    if len(content) > MAX_ATTACHMENT_CHARS:
        content = content[:MAX_ATTACHMENT_CHARS] + "\n[... attachment cut here]"
    return f"[attachment: {name}]\n{content}"


def strip_quoted(text: str, *, reply: bool = True) -> str:
    """Drop the quoted earlier message at the end of a reply: the conversation already holds it.

    Two shapes are cut. Outlook's: a '-----Original Message-----' line, or the header block it writes above the
    earlier mail ('From:', then 'Sent:' or 'Date:' and 'Subject:' lines), and everything after it, which is not
    quoted with '>' (only in a ``reply``: a forward's is what the agent is asked about, and a new mail's is a pasted
    mail, as in 'Is this one genuine?'). And a trailing run of '>' lines, with the 'On ... wrote:' line above it,
    so inline answers between quotes are kept.
    """
    lines = text.rstrip().split("\n")
    if reply:
        cut = _outlook_header(lines)
        if cut is not None:
            lines = lines[:cut]
    end = len(lines)
    while end > 0 and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end == len(lines):
        return "\n".join(lines).strip()
    head = lines[end - 1].strip() if end else ""
    if _ATTRIBUTION.match(head) or _ORIGINAL.match(head):
        end -= 1
    elif head.endswith(":") and end > 1 and _ATTRIBUTION.match(f"{lines[end - 2].strip()} {head}"):
        end -= 2  # Gmail wraps a long attribution line: 'On Mon, ... Bot <' / 'bot@example.com> wrote:'
    if end == 0:
        return text.strip()  # nothing but a quote: keep it rather than send the agent an empty message
    return "\n".join(lines[:end]).strip()


# 'On Mon, 1 Dec 2026, Bot <bot@example.com> wrote:' as mail clients write it in a few languages ('Am ... schrieb
# Bot <bot@example.com>:')
_ATTRIBUTION = re.compile(r"^(on|am|le|el|il|op|em|den)\b.*\b(wrote|schrieb|écrit|escribió|scrisse|schreef|escreveu|"
                          r"skrev)\b.*:$", re.IGNORECASE)
_ORIGINAL = re.compile(r"^-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|"
                       r"messaggio originale|oorspronkelijk bericht)\s*-{2,}$", re.IGNORECASE)
_FROM = re.compile(r"^\*?(from|von|de|da|van)\s*:\*?\s", re.IGNORECASE)
_SENT = re.compile(r"^\*?(sent|date|gesendet|datum|envoyé|enviado|fecha|inviato|data|verzonden)\s*:", re.IGNORECASE)
_SUBJECT = re.compile(r"^\*?(subject|betreff|objet|asunto|oggetto|onderwerp)\s*:", re.IGNORECASE)
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|wg|tr|rv|doorst)\s*:", re.IGNORECASE)
_REPLY_SUBJECT = re.compile(r"^\s*(re|aw|sv|vs|antw|odp|ynt)\s*:", re.IGNORECASE)


def _is_reply(msg: Message) -> bool:
    """Whether ``msg`` answers an earlier mail (In-Reply-To, References or a 'Re:' subject) and is no forward."""
    subject = _header(msg, "Subject")
    if _FORWARD_SUBJECT.match(subject):
        return False
    return bool(_ids(_header(msg, "In-Reply-To") + _header(msg, "References"))) or bool(_REPLY_SUBJECT.match(subject))


def _outlook_header(lines: list[str]) -> int | None:
    """Where Outlook's copy of the earlier mail starts (its separator or header block), if it follows some text
    of the reply's own; else None. A block after a 'forwarded message' line is a forward's, and kept."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _ORIGINAL.match(stripped):
            start = i
        elif _FROM.match(stripped) and _reply_header(lines[i + 1:i + 7]):
            start = i
            while start > 0 and (not lines[start - 1].strip() or set(lines[start - 1].strip()) <= set("_-")):
                start -= 1  # the blank lines and the rule ('____') Outlook puts above it
            if start > 0 and "forward" in lines[start - 1].lower():
                continue  # '---------- Forwarded message ---------', 'Begin forwarded message:'
        else:
            continue
        return start if any(earlier.strip() for earlier in lines[:start]) else None
    return None


def _reply_header(following: list[str]) -> bool:
    """Whether the lines after a 'From:' line are the rest of a mail's header as a client quotes it."""
    stripped = [line.strip() for line in following]
    return any(_SENT.match(line) for line in stripped) and any(_SUBJECT.match(line) for line in stripped)


def _header(msg: Message, name: str) -> str:
    """A header as text; a malformed one (the parser's defect) as its raw value rather than an exception."""
    try:
        value = msg.get(name)
    except Exception:  # email's header classes raise on some broken headers; the raw value is enough here
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()] if isinstance(msg, EmailMessage) else []
        value = raw[0] if raw else None
    return str(value) if value is not None else ""


def _subject(msg: Message) -> str:
    """The Subject as text. One whose letters did not decode (raw 8-bit bytes of an old mailer, an encoded word
    mislabelled or in a charset read too strictly) read as '\ufffd' or control characters, and the answer's 'Re:'
    carried them back to the person: it is read again as ``header_text`` reads it."""
    subject = _header(msg, "Subject")
    if "\ufffd" not in subject and not _C1.search(subject):
        return subject
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == "subject"), "")
    return header_text(raw) if raw else subject


_C1 = re.compile("[\x80-\x9f]")  # control characters: Windows-1252's letters read as Latin-1


def _ids(value: str) -> list[str]:
    return _ID.findall(value)


def _first_id(value: str) -> str | None:
    found = _ids(value)
    return found[0] if found else None


_PLAIN_ADDRESS = re.compile(r"[^\s@<>\"(),;:\\\[\]]+@[^\s@<>\"(),;:\\\[\]]+")
"""local@domain without spaces, quotes or brackets: what a reply can be sent to (``"unterminated <x@`` was)."""


def _address(msg: Message, name: str) -> str:
    """The first address in header ``name``, lower-case, or '' (then the mail is skipped, not answered)."""
    found = ""
    try:
        header: Any = msg.get(name)
        addresses = getattr(header, "addresses", None)
        if addresses:
            first: Address = addresses[0]
            found = first.addr_spec or ""
    except Exception:  # a malformed address header: fall back to the lenient stdlib parser below
        pass
    if not found:
        pairs = getaddresses([_header(msg, name)])
        found = pairs[0][1] if pairs else ""
    return found.lower() if _PLAIN_ADDRESS.fullmatch(found) else ""


def trimmed_references(references: list[str], message_id: str) -> list[str]:
    """The reply's References: the original's chain plus its id, the root kept when the chain is trimmed."""
    chain = [*references, message_id] if message_id not in references else list(references)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1):]]
    return chain
