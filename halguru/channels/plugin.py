"""The built-in channels, registered like any plugin's: ``twilio``, ``slack``, ``telegram`` and ``email``."""

from __future__ import annotations

from typing import Any

from halguru.plugins.hookspecs import hookimpl


@hookimpl
def register_channels(register: Any) -> None:
    from halguru.channels.email import EmailChannel
    from halguru.channels.slack import SlackChannel
    from halguru.channels.telegram import TelegramChannel
    from halguru.channels.twilio import TwilioChannel

    register("email", EmailChannel)
    register("twilio", TwilioChannel)
    register("slack", SlackChannel)
    register("telegram", TelegramChannel)
