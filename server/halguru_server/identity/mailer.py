"""Account mail (address verification, password reset) through ``auth.smtp``, sent by the email channel's SMTP
client (``halguru.channels.email.send_mail``): one SMTP code path, one set of TLS rules.

Links point at ``auth.public_url`` when it is set. Without it they are built from the request's own address,
which is the ``Host`` header a client chose: a stranger asking for a reset of someone else's account could make
its link name their host. So without ``public_url`` a link is built only from a Host that is loopback or the
address `serve` listens on (``--host``, unless a wildcard such as 0.0.0.0); for any other the mail is not sent
(logged), and ``serve`` warns at start when ``auth.smtp`` is set without ``public_url``.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlencode

from fastapi import Request

from halguru_server.identity.settings import AuthSettings, SmtpSettings

log = logging.getLogger("halguru.server.identity")
VERIFY_TTL = 2 * 86400.0  # an address-verification link works for two days
RESET_TTL = 3600.0  # a password-reset link for one hour


WILDCARDS = frozenset({"", "0.0.0.0", "::"})
NO_PUBLIC_URL = ("auth.smtp is set but auth.public_url is not: password-reset and verification mails go out only "
                 "for requests to a loopback address or to --host; set auth.public_url to this server's address "
                 "as browsers see it (e.g. https://halguru.example.com)")


class MailNotConfigured(Exception):
    """``auth.smtp`` is not set: no verification or reset mail can go out."""


def base_url(request: Request, auth: AuthSettings, listen: str) -> str | None:
    """Where browsers reach this server, for a link in a mail: ``auth.public_url``; else the request's scheme
    and host when that host is loopback or ``listen`` (the address `serve` listens on, unless a wildcard);
    else None (logged): a Host header any client chooses must not name the host of someone's reset link."""
    if auth.public_url:
        return auth.public_url.rstrip("/")
    from halguru.channels.email import is_loopback  # (the channel's module is imported only when needed)

    host = (request.url.hostname or "").lower()
    own = listen.strip("[]").lower()
    if is_loopback(host) or (host == own and own not in WILDCARDS):
        return str(request.base_url).rstrip("/")
    log.warning("no mail link built for a request to host %r: auth.public_url is unset and that host is neither "
                "loopback nor --host (%s); set auth.public_url to this server's address as browsers see it",
                host[:100], listen)
    return None


def link(base: str, path: str, token: str) -> str:
    """A mail link: ``base`` (``base_url``) + ``path`` with the token."""
    return f"{base}{path}?{urlencode({'token': token})}"


def compose(smtp: SmtpSettings, to: str, subject: str, text: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = smtp.sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2] or None)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: not to be answered by responders
    mail.set_content(text)
    return mail


def _send_now(smtp: SmtpSettings, mail: EmailMessage) -> None:
    from halguru.channels.email import SmtpConfig, send_mail

    security = "ssl" if smtp.ssl else "starttls" if smtp.starttls else "none"
    config = SmtpConfig(host=smtp.host, port=smtp.port, security=security, username=smtp.username)
    send_mail(config, smtp.username or smtp.sender, smtp.password, mail)


async def send(auth: AuthSettings, to: str, subject: str, text: str) -> None:
    """Send one account mail (off the event loop). MailNotConfigured without ``auth.smtp``; SMTP failures are
    logged and raised as OSError or smtplib's errors for the page to say that the mail could not go out."""
    if auth.smtp is None:
        raise MailNotConfigured("auth.smtp is not set")
    mail = compose(auth.smtp, to, subject, text)
    try:
        await asyncio.to_thread(_send_now, auth.smtp, mail)
    except Exception as exc:
        from halguru.channels.email import smtp_problem

        log.warning("account mail to %s failed: %s", to, smtp_problem(exc))
        raise


def verification_text(url: str) -> str:
    return (f"Confirm your email address for halguru by opening this link:\n\n{url}\n\n"
            f"It works once, for {int(VERIFY_TTL // 3600)} hours. If you did not create an account, ignore "
            "this mail.\n")


def reset_text(url: str) -> str:
    return (f"Someone (hopefully you) asked to set a new halguru password for this address. Open this link to "
            f"choose one:\n\n{url}\n\nIt works once, for {int(RESET_TTL // 60)} minutes. If you did not ask, "
            "ignore this mail: your password stays as it is.\n")


def provider_text(base: str, providers: list[str]) -> str:
    names = ", ".join(providers)
    return (f"Someone (hopefully you) asked to set a new halguru password for this address. This account signs "
            f"in through {names}, not with a password, so none can be set: sign in at {base}/auth/login with "
            f"that button. If you did not ask, ignore this mail.\n")

