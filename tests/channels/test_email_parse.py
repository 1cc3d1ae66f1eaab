"""The email channel's reading rules (threads, loop prevention, text) and its config errors, without servers."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from halguru.channels.email import EmailChannel
from halguru.channels.mailparse import parse_mail, strip_quoted, synthetic_id
from halguru.errors import HalguruError
from tests.channels.mailpeers import mail

OURS = "bot@example.com"


def parsed(msg: EmailMessage | bytes, allow_from: list[str] | None = None):
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    return parse_mail(raw, own_address=OURS, allow_from=allow_from)


def test_thread_is_the_first_reference_else_in_reply_to_else_the_message_itself() -> None:
    first = parsed(mail(message_id="<root@x>"))
    assert (first.thread, first.message_id, first.references) == ("<root@x>", "<root@x>", [])
    answer = parsed(mail(message_id="<a2@x>", headers={"In-Reply-To": "<root@x>"}))
    assert answer.thread == "<root@x>"
    assert answer.references == ["<root@x>"]  # only In-Reply-To: our reply still carries the chain
    deeper = parsed(mail(message_id="<a3@x>", headers={"References": "<root@x> <reply@ours>",
                                                       "In-Reply-To": "<reply@ours>"}))
    assert deeper.thread == "<root@x>"
    assert deeper.references == ["<root@x>", "<reply@ours>"]


def test_a_message_without_message_id_gets_a_stable_one_from_its_bytes() -> None:
    raw = mail(message_id=None).as_bytes()
    one, two = parsed(raw), parsed(raw)
    assert one.message_id == two.message_id == synthetic_id(raw) == one.thread
    assert one.message_id.startswith("<") and one.message_id.endswith("@halguru.invalid>")
    assert parsed(mail(body="another", message_id=None)).message_id != one.message_id


@pytest.mark.parametrize(("headers", "sender", "reason"), [
    ({"Auto-Submitted": "auto-replied"}, None, "auto-submitted"),
    ({"Auto-Submitted": "auto-generated; type=ooo"}, None, "auto-submitted"),
    ({"Precedence": "bulk"}, None, "precedence bulk"),
    ({"Precedence": "junk"}, None, "precedence junk"),
    ({"X-Autoreply": "yes"}, None, "auto-reply"),
    ({"X-Auto-Response-Suppress": "OOF, AutoReply"}, None, "no automatic replies"),
    ({"Return-Path": "<>"}, None, "empty Return-Path"),
    ({"List-Id": "<news.example.org>"}, None, "mailing-list"),
    # each of these was answered: a ticket system's auto_reply, a list post or newsletter without List-Id,
    # mail we sent come back (procmail's X-Loop), a list's owner and request addresses
    ({"Precedence": "auto_reply"}, None, "precedence auto_reply"),
    ({"List-Post": "<mailto:users@lists.example.org>"}, None, "mailing-list"),
    ({"List-Unsubscribe": "<https://news.example.org/u?1>"}, None, "mailing-list"),
    ({"Mailing-List": "contact users-help@example.org; run by ezmlm"}, None, "mailing-list"),
    ({"X-Loop": "Bot@Example.com"}, None, "X-Loop"),
    ({"Return-Path": "< >"}, None, "empty Return-Path"),
    ({}, "MAILER-DAEMON@example.org", "bounce"),
    ({}, "postmaster@example.org", "bounce"),
    ({}, "owner-users@lists.example.org", "bounce or system mail"),
    ({}, "users-request@lists.example.org", "bounce or system mail"),
    ({"Reply-To": "MAILER-DAEMON@example.org"}, None, "replies would go to mailer-daemon@example.org"),
    ({"Reply-To": "users-request@lists.example.org"}, None, "a bounce or list address"),
    ({}, "Our Bot <BOT@example.com>", "our own address"),
    ({}, "Shop <no-reply@shop.example.org>", "a no-reply address"),
    ({}, "noreply+orders@shop.example.org", "a no-reply address"),
    ({}, "DoNotReply@bank.example.org", "a no-reply address"),
    ({"Reply-To": "do_not_reply@shop.example.org"}, None, "replies would go to do_not_reply@shop.example.org"),
])
def test_mail_a_bot_must_not_answer_is_skipped(headers: dict[str, str], sender: str | None, reason: str) -> None:
    msg = mail(headers=headers, **({"sender": sender} if sender else {}))
    result = parsed(msg)
    assert result.skip is not None and reason in result.skip, result.skip
    assert result.text == ""


@pytest.mark.parametrize("sender", ['"unterminated <x@', "x@", "@example.org", "ann smith@example.org"])
def test_a_from_no_reply_can_go_to_is_skipped(sender: str) -> None:
    """``"unterminated <x@`` was answered: a reply to ``To: "unterminated <x@``, ``RCPT TO:<>``, a dead job."""
    raw = (f"From: {sender}\r\nTo: {OURS}\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nhello\r\n")
    result = parsed(raw.encode())
    assert result.skip == "no readable From address", (sender, result.sender)


def test_a_no_reply_sender_whose_reply_to_takes_answers_is_answered() -> None:
    result = parsed(mail(sender="no-reply@shop.example.org", headers={"Reply-To": "help@shop.example.org"}))
    assert result.skip is None and result.reply_to == "help@shop.example.org"
    assert parsed(mail(sender="noreen.replyson@example.org")).skip is None  # a person, not 'no reply'


def test_human_mail_with_harmless_headers_is_answered() -> None:
    result = parsed(mail(headers={"Auto-Submitted": "no", "Return-Path": "<ann@example.org>",
                                  "X-Auto-Response-Suppress": "None", "X-Loop": "notbot@example.com"}))
    assert result.skip is None
    assert result.sender == "ann@example.org"
    assert result.text == "When are you open on Sunday?"


def test_a_delivery_report_is_skipped() -> None:
    report = EmailMessage()
    report["From"] = "mail-system@example.org"
    report["Message-ID"] = "<dsn@example.org>"
    report.set_content("Your message could not be delivered.")
    report.make_mixed()
    report.set_type("multipart/report")
    assert "multipart/report" in (parsed(report).skip or "")


def test_allow_from_takes_addresses_and_domains() -> None:
    assert parsed(mail(sender="ann@example.org"), ["ann@example.org"]).skip is None
    assert parsed(mail(sender="bob@example.org"), ["@example.org"]).skip is None
    assert parsed(mail(sender="bob@example.org"), ["example.org"]).skip is None
    skipped = parsed(mail(sender="eve@evil.test"), ["ann@example.org", "@example.org"]).skip
    assert skipped == "sender eve@evil.test is not in allow_from"


def test_reply_to_is_where_the_answer_goes() -> None:
    result = parsed(mail(headers={"Reply-To": "Support Desk <desk@example.org>"}))
    assert (result.sender, result.reply_to) == ("ann@example.org", "desk@example.org")


def test_allow_from_and_our_own_address_hold_for_reply_to_too() -> None:
    """An allowed From with a Reply-To elsewhere would send the answer to someone allow_from keeps out (From is
    what the receiving server's DMARC check vouches for; Reply-To nobody checks)."""
    allowed = ["@example.org"]
    assert parsed(mail(headers={"Reply-To": "desk@example.org"}), allowed).skip is None
    outside = parsed(mail(headers={"Reply-To": "Eve <eve@evil.test>"}), allowed).skip
    assert outside == "replies would go to eve@evil.test, which is not in allow_from"
    ours = parsed(mail(headers={"Reply-To": f"<{OURS.upper()}>"})).skip
    assert ours == "replies would go to our own address"


def test_a_thread_is_one_conversation_per_correspondent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who quotes another person's Message-ID in References (it is no secret: it travels in every
    reply) starts a conversation of their own: the agent never answers them with another person's thread."""
    monkeypatch.setenv("HG_TEST_IMAP", "pw")
    channel = EmailChannel("helper", config(), Path("."))

    def thread(msg: EmailMessage) -> str:
        return channel.inbound(parsed(msg)).thread

    ann = thread(mail(message_id="<q1@example.org>"))
    ann_again = thread(mail(message_id="<q2@example.org>", headers={"References": "<q1@example.org> <r1@x>",
                                                                    "In-Reply-To": "<r1@x>"}))
    eve = thread(mail(sender="eve@evil.test", message_id="<e1@evil.test>",
                      headers={"References": "<q1@example.org> <r1@x>", "In-Reply-To": "<r1@x>"}))
    eve_as_ann = thread(mail(message_id="<e2@evil.test>", headers={"Reply-To": "eve@evil.test",
                                                                   "References": "<q1@example.org>"}))
    assert ann == ann_again == "ann@example.org|<q1@example.org>"
    assert eve == eve_as_ann == "eve@evil.test|<q1@example.org>"


def test_html_only_mail_becomes_text_without_markup_or_scripts() -> None:
    msg = mail(body="x")
    msg.set_content("<html><head><style>p {color: red}</style><script>alert('pwned')</script></head>"
                    "<body><h1>Order 42</h1><p>Where is my <b>parcel</b>?</p><p>Thanks &amp; bye</p></body></html>",
                    subtype="html")
    text = parsed(msg).text
    assert "Where is my parcel?" in text and "Order 42" in text and "Thanks & bye" in text
    assert "<" not in text and "alert" not in text and "color" not in text


def test_a_long_html_mail_is_read_in_seconds_not_minutes() -> None:
    """A report of 15,000 table rows and paragraphs (under 1 MB) took over a minute, while the inbox waited: each
    line break was inserted into the parsed tree by a search among the element's siblings."""
    import time

    rows = "".join(f"<tr><td>item {i}</td><td>{i}</td></tr>" for i in range(15_000))
    paragraphs = "".join(f"<p>note {i}</p>" for i in range(15_000))
    msg = mail(body="x")
    msg.set_content(f"<html><body>{paragraphs}<table>{rows}</table></body></html>", subtype="html")
    began = time.monotonic()
    text = parsed(msg).text
    assert time.monotonic() - began < 15
    assert text.startswith("note 0\n\nnote 1\n\nnote 2\n\n")
    assert text.endswith("[... message cut here: too long]")  # at 60,000 characters, as any long mail


def test_plain_text_is_preferred_over_html_in_an_alternative() -> None:
    msg = mail(body="the plain version")
    msg.add_alternative("<p>the <i>html</i> version</p>", subtype="html")
    assert parsed(msg).text == "the plain version"


def test_quoted_earlier_mail_at_the_end_is_dropped_inline_answers_are_kept() -> None:
    reply = "Yes, Sunday works.\n\nOn Mon, 1 Dec 2026, Bot wrote:\n> We open at 10.\n> Anything else?\n"
    assert strip_quoted(reply) == "Yes, Sunday works."
    wrapped = "Ten is fine.\n\nOn Mon, 1 Dec 2026 at 10:00, Helpdesk <\nbot@example.com> wrote:\n\n> We open at 10.\n"
    assert strip_quoted(wrapped) == "Ten is fine."
    german = "Gern.\n\nAm 01.12.2026 um 10:00 schrieb Helpdesk <bot@example.com>:\n> Wir öffnen um 10.\n"
    assert strip_quoted(german) == "Gern."
    inline = "> Which day?\nSunday.\n> What time?\nTen."
    assert strip_quoted(inline) == inline
    assert strip_quoted("> only a quote") == "> only a quote"


OUTLOOK_HISTORY = ("From: Helpdesk <bot@example.com>\nSent: Monday, December 7, 2026 9:00 AM\nTo: Ann\n"
                   "Subject: RE: Opening hours\n\nWe open at 10.\n\n" + "Earlier history, not quoted with '>'.\n" * 200)


@pytest.mark.parametrize("separator", ["-----Original Message-----\n", "________________________________\n", ""])
def test_outlooks_unquoted_copy_of_the_earlier_mail_is_dropped(separator: str) -> None:
    """Outlook copies the mail it answers below a header block, without '>': the agent got the whole history
    (here 8,000 characters for a one-line answer) at every turn of the thread."""
    result = parsed(mail("RE: Opening hours", f"And on Monday?\n\n{separator}{OUTLOOK_HISTORY}"))
    assert result.text == "And on Monday?"
    german = "Danke!\n\nVon: Helpdesk <bot@example.com>\nGesendet: Montag\nAn: Ann\nBetreff: AW: Zeiten\n\nAlt."
    assert parsed(mail("AW: Zeiten", german)).text == "Danke!"


def test_a_forwarded_mails_header_block_and_text_are_kept() -> None:
    forward = f"Can you answer this one?\n\n---------- Forwarded message ---------\n{OUTLOOK_HISTORY[:120]}"
    assert parsed(mail("Fwd: Opening hours", forward)).text == forward.strip()
    # Outlook's forward looks like its reply: the subject says which it is
    outlook_forward = f"See below.\n\n________________________________\n{OUTLOOK_HISTORY[:120]}"
    assert parsed(mail("FW: Opening hours", outlook_forward)).text == outlook_forward.strip()
    assert parsed(mail("Opening hours", OUTLOOK_HISTORY[:120])).text == OUTLOOK_HISTORY[:120].strip()  # nothing above
    # a new mail (no Re:, no In-Reply-To) quoting a mail's header is asking about that mail
    pasted = f"Is this mail really from you?\n\n{OUTLOOK_HISTORY[:120]}"
    assert parsed(mail("Suspicious mail", pasted)).text == pasted.strip()
    answered = parsed(mail("Suspicious mail", pasted, headers={"In-Reply-To": "<a1@example.com>"}))
    assert answered.text == "Is this mail really from you?"  # a reply: the copy of the mail it answers


def test_a_mail_nested_thousands_deep_is_read_to_a_sane_depth() -> None:
    """A mail holding a forwarded mail holding another, 5,000 deep (message/rfc822 has no boundary lines, so the
    parts cap missed it), broke Python's mail parser (RecursionError): the mail was never answered, and read
    and logged again at every reconnect. It is read to a depth a person's mail never reaches, and answered."""
    inner = "Content-Type: text/plain\r\n\r\nthe innermost words\r\n"
    for i in range(5_000):
        inner = f"Content-Type: message/rfc822\r\n\r\nSubject: fwd {i}\r\n{inner}"
    raw = (f"From: eve@example.net\r\nTo: {OURS}\r\nSubject: deep\r\nMessage-ID: <deep@x>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           "Content-Type: text/plain\r\n\r\nPlease read the forwarded chain.\r\n--b\r\n" + inner + "--b--\r\n").encode()
    mail = parsed(raw)
    assert mail.text.startswith("Please read the forwarded chain.") and mail.message_id == "<deep@x>"
    assert "too large to read whole" in mail.text


@pytest.mark.parametrize("html", [
    # Gmail
    '<div dir="ltr">And on Monday?</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, '
    'Dec 7, 2026 at 9:00 AM Helpdesk &lt;bot@example.com&gt; wrote:<br></div><blockquote class="gmail_quote">We '
    'open at 10.<br><br>On Sun, Dec 6, 2026 Ann wrote:<blockquote>When are you open?</blockquote></blockquote></div>',
    # Apple Mail
    '<html><body>And on Monday?<br><div><br><blockquote type="cite"><div>On 7 Dec 2026, at 09:00, Helpdesk '
    '&lt;bot@example.com&gt; wrote:</div><br><div>We open at 10.</div></blockquote></div></body></html>',
    # Outlook on the web
    '<div>And on Monday?</div><hr><div id="divRplyFwdMsg"><b>From:</b> Helpdesk &lt;bot@example.com&gt;<br>'
    '<b>Sent:</b> Monday, December 7, 2026 9:00 AM<br><b>To:</b> Ann<br><b>Subject:</b> RE: Opening hours</div>'
    '<div>We open at 10.</div>',
])
def test_the_quoted_history_of_an_html_only_reply_is_dropped(html: str) -> None:
    msg = mail("Re: Opening hours")
    msg.set_content(html, subtype="html")
    assert parsed(msg).text == "And on Monday?"


def test_html_blockquotes_between_answers_read_as_quotes() -> None:
    msg = mail("Re: Opening hours")
    msg.set_content("<blockquote>Which day?</blockquote><p>Sunday.</p><blockquote>What time?<blockquote>Any?"
                    "</blockquote></blockquote><p>Ten.</p>", subtype="html")
    assert parsed(msg).text == "> Which day?\n\nSunday.\n\n> What time?\n>> Any?\n\nTen."


def test_attachments_text_is_read_by_the_knowledge_loaders(tmp_path: Path) -> None:
    from tests.rag.test_loaders_chunking import write_pdf

    pdf = write_pdf(tmp_path / "invoice.pdf", ["Invoice 7731", "Total due: 99 EUR"]).read_bytes()
    msg = mail(body="See the attached invoice.")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    msg.add_attachment("order: 12 chairs\n", filename="order.txt")
    msg.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(64), maintype="image", subtype="png", filename="photo.png")
    result = parsed(msg)
    assert result.text.startswith("See the attached invoice.")
    assert "[attachment: invoice.pdf]" in result.text and "Invoice 7731" in result.text
    assert "[attachment: order.txt]\norder: 12 chairs" in result.text
    assert "[attachment: photo.png (image/png, 0 KB), not read]" in result.text


def test_once_the_text_is_long_enough_no_further_attachment_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    from halguru.channels import mailparse

    msg = mail(body="Four long notes attached.")
    for i in range(4):
        msg.add_attachment(f"note {i}: " + "word " * 6000, filename=f"note{i}.txt")  # each read cut to 20,000
    read: list[str] = []
    real = mailparse.attachment_text
    monkeypatch.setattr(mailparse, "attachment_text", lambda part, notes: read.append(part.get_filename())
                        or real(part, notes))
    text = parsed(msg).text
    assert read == ["note0.txt", "note1.txt", "note2.txt"]  # 60,000 characters: the fourth would be cut away
    assert text.endswith("[... message cut here: too long]") and "note 2:" in text


def config(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "address": OURS,
        "imap": {"host": "imap.example.com", "password": "HG_TEST_IMAP"},
        "smtp": {"host": "smtp.example.com"},
    }
    return {**base, **changes}


def channel_error(cfg: dict[str, object]) -> str:
    with pytest.raises(HalguruError) as err:
        EmailChannel("helper", cfg, Path("."))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_config_errors_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HG_TEST_IMAP", "pw")
    plain = channel_error(config(imap={"host": "imap.example.com", "password": "HG_TEST_IMAP", "security": "none"}))
    assert plain.startswith("agent helper: channels.email.imap: security: none")
    assert "loopback" in plain
    assert channel_error(config(imap={"host": "h", "password": "P", "pasword": "x"})) == \
        "agent helper: channels.email.imap.pasword: unknown field"
    assert "channels.email.address" in channel_error(config(address="not an address"))
    assert "channels.email.processed.flag" in channel_error(config(processed={"flag": "\\Seen"}))
    assert "channels.email.poll_interval" in channel_error(config(poll_interval=0))
    assert "channels.email.smtp" in channel_error({k: v for k, v in config().items() if k != "smtp"})


def test_secrets_are_named_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HG_TEST_IMAP", raising=False)
    missing = channel_error(config())
    assert "channels.email.imap.password: no secret HG_TEST_IMAP" in missing
    assert "keyring set halguru HG_TEST_IMAP" in missing
    monkeypatch.setenv("HG_TEST_IMAP", "pw")
    assert "name the secret" in channel_error(config(imap={"host": "imap.example.com"}))
    channel = EmailChannel("helper", config(), Path("."))
    assert channel.imap_settings.password == "pw"
    assert (channel.imap_settings.port, channel.imap_settings.username) == (993, OURS)


def test_plaintext_on_loopback_is_allowed_and_email_is_a_registered_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    from halguru.channels.base import channel_classes, load_channels

    monkeypatch.setenv("HG_TEST_IMAP", "pw")
    assert channel_classes()["email"] is EmailChannel
    cfg = config(imap={"host": "localhost", "security": "none", "password": "HG_TEST_IMAP"},
                 smtp={"host": "127.0.0.1", "security": "none"})
    channel = load_channels("helper", {"email": cfg}, Path("."))["email"]
    assert isinstance(channel, EmailChannel) and channel.imap_settings.port == 143


def test_validate_names_the_file_line_and_field(cli, write_agent, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_agent("name: helpdesk\nmodel: scripted\nchannels:\n  email:\n    address: help@example.com\n"
                         "    imap: {host: imap.example.com, password: HG_TEST_IMAP}\n"
                         "    smtp: {host: smtp.example.com, port: 99999}\n")

    def error() -> str:
        result = cli("validate", str(folder), code=1)
        assert isinstance(result.exception, HalguruError) and "\n" not in str(result.exception)
        return str(result.exception)

    monkeypatch.delenv("HG_TEST_IMAP", raising=False)
    assert re.search(r"agent\.yaml:\d+: agent helpdesk: channels\.email\.smtp\.port: Input should be less than or "
                     r"equal to 65535$", error())
    monkeypatch.setenv("HG_TEST_IMAP", "pw")
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("port: 99999", "port: 587"))
    monkeypatch.delenv("HG_TEST_IMAP")
    assert re.search(r"agent\.yaml:\d+: agent helpdesk: channels\.email\.imap\.password: no secret HG_TEST_IMAP;",
                     error())


GMAIL_BOUNCE = """From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: help@shop.example
Subject: Delivery Status Notification (Failure)
Message-ID: <bounce1@mx.google.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type={kind}; boundary="b"

--b
Content-Type: text/plain

The address was not found.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com

Final-Recipient: rfc822; zed@gone.example
Action: failed
Status: 5.1.1

--b
Content-Type: message/rfc822

From: help@shop.example
To: zed@gone.example
Message-ID: <a1.0@shop.example>

Your refund is on its way.

--b--
"""


def test_a_bounce_names_the_mail_that_failed_and_why_and_nothing_else_does() -> None:
    """Gmail and Exim attach the whole failed mail (message/rfc822), Postfix its headers (the inbox test); a read
    report (disposition-notification) and a report without the failed mail's id are no bounce."""
    parsed = parse_mail(GMAIL_BOUNCE.format(kind="delivery-status").encode(), own_address="help@shop.example")
    assert parsed.skip and parsed.bounce == ("<a1.0@shop.example>", "zed@gone.example: 5.1.1")
    read = GMAIL_BOUNCE.format(kind="disposition-notification").encode()
    assert parse_mail(read, own_address="help@shop.example").bounce is None
    anonymous = GMAIL_BOUNCE.format(kind="delivery-status").replace("Message-ID: <a1.0@shop.example>\n", "")
    assert parse_mail(anonymous.encode(), own_address="help@shop.example").bounce is None


def test_a_mail_of_thousands_of_parts_is_read_in_a_moment_its_text_first() -> None:
    """A crafted mail of 20,000 tiny attachments (2 MB) took 15 s to parse, the inbox waiting for it; now the parts
    past the first thousand are not read, and the agent is told the mail was too large to read whole."""
    import time

    parts = "".join(f"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                    f"filename=n{i}.bin\r\n\r\nn{i}\r\n" for i in range(20_000))
    raw = (f"From: eve@example.net\r\nTo: {OURS}\r\nSubject: parts\r\nMessage-ID: <parts@x>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           "Content-Type: text/plain\r\n\r\nPlease read the attached notes.\r\n" + parts + "--b--\r\n").encode()
    started = time.perf_counter()
    mail = parsed(raw)
    took = time.perf_counter() - started
    assert took < 3, f"parsing took {took:.1f} s"
    assert mail.text.startswith("Please read the attached notes.")
    assert "too large to read whole" in mail.text and mail.message_id == "<parts@x>"
    few = EmailMessage()  # an everyday mail with attachments is read whole, as before
    few["From"], few["To"], few["Subject"] = "ann@example.net", OURS, "notes"
    few.set_content("See attached.")
    few.add_attachment(b"hello notes", maintype="text", subtype="plain", filename="notes.txt")
    assert "hello notes" in parsed(few).text and "too large" not in parsed(few).text


@pytest.mark.parametrize("html", [
    "<html><head><meta charset='utf-8'><title>Order</title><body><p>Where is my parcel?</p></body></html>",
    "<html><head><style>p {color: red}</style><body><p>Where is my parcel?</p>",
    "<html><head><title>Order</title>\nWhere is my parcel?</html>",
])
def test_an_html_mail_whose_head_is_never_closed_reaches_the_agent(html: str) -> None:
    """HTML lets ``</head>`` be left out (an optional end tag, and mail tools do): the whole body was read as part
    of the hidden head, and the agent got '(empty message)'."""
    msg = mail(body="x")
    msg.set_content(html, subtype="html")
    text = parsed(msg).text
    assert text == "Where is my parcel?"


def test_a_20_mb_html_mail_is_read_in_a_moment_to_as_far_as_the_agent_gets_it() -> None:
    """A newsletter-like HTML mail of 20 MB (under the 25 MB fetched whole) took a minute to turn into text while
    the inbox waited, all but its first 60,000 characters then cut away."""
    import time

    para = "<p style='margin:0;font-family:Arial'>Hello there, this is a <b>newsletter</b> line</p>\n"
    msg = mail(body="x")
    msg.set_content("<html><body>" + para * (20_000_000 // len(para)) + "</body></html>", subtype="html")
    raw = msg.as_bytes()
    began = time.monotonic()
    result = parsed(raw)
    assert time.monotonic() - began < 5
    assert result.text.startswith("Hello there, this is a newsletter line\n\nHello there")
    assert result.text.endswith("[... message cut here: too long]")
    assert 8_000_000 < result.length < 10_500_000  # about its whole text's length, for the note at the cut


def test_an_html_mail_of_endless_empty_markup_is_read_to_a_limit_and_says_so() -> None:
    """Millions of empty elements make no text, so no text limit stops reading them: the tags read are capped."""
    import time

    msg = mail(body="x")
    msg.set_content("<html><body><p>Hi, see below</p>" + "<div><span></span></div>" * 600_000
                    + "<p>the end</p></body></html>", subtype="html")
    began = time.monotonic()
    result = parsed(msg)
    assert time.monotonic() - began < 5
    assert result.text.startswith("Hi, see below")
    assert "the rest of this HTML mail was not read" in result.text and "the end" not in result.text
    assert any("HTML" in note for note in result.notes)


_HEAD = b"From: ann@example.org\r\nTo: bot@example.com\r\nMessage-ID: <cs@x>\r\nMIME-Version: 1.0\r\n"


@pytest.mark.parametrize(("subject", "charset", "body", "expected_subject", "expected_text"), [
    # Windows-1252 text labelled UTF-8 (a script's or an old client's mail): each accent was a U+FFFD
    (b"=?utf-8?q?Caf=E9_cr=E8me?=", b"utf-8", b"Un caf\xe9 cr\xe8me, s'il vous pla\xeet \x93vite\x94",
     "Café crème", "Un café crème, s'il vous plaît “vite”"),
    # UTF-8 text with one stray Latin-1 byte keeps its UTF-8 letters
    (b"test", b"utf-8", "Grüße aus Köln, caf".encode() + b"\xe9", "test", "Grüße aus Köln, café"),
    # Latin-1 as mail clients mean it (Windows-1252: curly quotes, the euro sign), not C1 control characters
    (b"=?iso-8859-1?q?=93Hello=94?=", b"iso-8859-1", b"Price: 5 \x80, \x93quoted\x94", "“Hello”",
     "Price: 5 €, “quoted”"),
    # Shift_JIS as Windows writes it (circled digits, ㈱ are CP932's, not in Shift_JIS proper)
    (b"=?shift_jis?b?" + __import__("base64").b64encode("①営業時間".encode("cp932")) + b"?=", b"shift_jis",
     "㈱山田 ①営業時間".encode("cp932"), "①営業時間", "㈱山田 ①営業時間"),
    # GB2312 labelled mail with GBK characters
    (b"test", b"gb2312", "你好，镕".encode("gbk"), "test", "你好，镕"),
])
def test_mislabelled_charsets_are_read_as_the_sender_meant(subject: bytes, charset: bytes, body: bytes,
                                                          expected_subject: str, expected_text: str) -> None:
    raw = (_HEAD + b"Subject: " + subject + b"\r\nContent-Type: text/plain; charset=" + charset
           + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n")
    result = parsed(raw)
    assert (result.subject, result.text) == (expected_subject, expected_text)


@pytest.mark.parametrize("line", ["From: x\n", "> quoted line\n"])
def test_a_20_mb_plain_text_reply_is_read_in_a_moment(line: str) -> None:
    """The quoted-history search ran over every line of a reply: 20 MB of them held the inbox for 19 s, all but
    the first 60,000 characters then cut away."""
    import time

    msg = mail(subject="Re: big", body="x", headers={"In-Reply-To": "<a@example.org>"})
    msg.set_content("My answer is below.\n" + line * (20_000_000 // len(line)), cte="8bit")
    raw = msg.as_bytes()
    began = time.monotonic()
    result = parsed(raw)
    assert time.monotonic() - began < 4
    assert result.text.startswith("My answer is below.")


def test_the_quoted_history_of_a_long_reply_does_not_count_as_its_length() -> None:
    msg = mail(subject="Re: thread", body="x", headers={"In-Reply-To": "<a@example.org>"})
    msg.set_content("Thanks, that works.\n\nOn Mon, 1 Dec 2026, Bot <bot@example.com> wrote:\n"
                    + "> an earlier line of the thread\n" * 10_000)
    result = parsed(msg)
    assert (result.text, result.length) == ("Thanks, that works.", 0)


def test_large_html_attachments_are_read_only_as_far_as_the_agent_gets_them() -> None:
    """Each 5 MB HTML report attached was read whole (2.3 s each) for the 20,000 characters the agent gets."""
    import time

    para = "<p style='margin:0;font-family:Arial'>Hello there, this is a <b>report</b> line</p>\n"
    msg = mail(body="See the attached reports.")
    for n in range(4):
        page = f"<html><head><title>r{n}</title></head><body>" + para * (4_900_000 // len(para)) + "</body></html>"
        msg.add_attachment(page.encode(), maintype="text", subtype="html", filename=f"report{n}.html")
    raw = msg.as_bytes()
    began = time.monotonic()
    result = parsed(raw)
    assert time.monotonic() - began < 5
    assert result.text.startswith("See the attached reports.\n\n[attachment: report0.html]\nHello there, this is a "
                                  "report line\n\nHello there")
    assert "[... attachment cut here]" in result.text
