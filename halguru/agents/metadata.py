"""The ``metadata:`` keys of agent.yaml that halguru itself reads, each checked one way, here.

``halguru validate`` (and so ``halguru publish``'s server-side validation) runs ``check_metadata``; ``serve``
reads ``web_chat`` and ``embed_origins`` through the same functions, and the worker ``retention_days``, so a
value validate calls OK is one they take, and one they refuse validate refuses with the same words.
"""

from __future__ import annotations

import re
from typing import Any

from halguru.errors import HalguruError

WEB_CHAT = ("public", "key")
"""Web chat access: anyone, or signed-in people and API keys only (also spelled ``signin``)."""
_ORIGIN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


class MetadataError(HalguruError):
    """A refused ``metadata.<key>`` value; ``key`` lets validate point at its line."""

    def __init__(self, message: str, *, key: str = ""):
        super().__init__(message)
        self.key = key


def web_chat(metadata: dict[str, Any], default: str) -> str:
    """``metadata.web_chat`` (``default``, the server's setting, when absent): ``public`` or ``key``."""
    value = str(metadata.get("web_chat", default))
    value = "key" if value == "signin" else value  # two names, one meaning
    if value not in WEB_CHAT:
        raise MetadataError(f"metadata.web_chat must be 'public' or 'key' (sign-in or an API key; also "
                            f"'signin'), not {value!r}", key="web_chat")
    return value


def embed_origins(metadata: dict[str, Any], web_chat: str | None) -> tuple[str, ...]:
    """``metadata.embed_origins``: exact origins (``https://shop.example``, ``http://127.0.0.1:8080``; no path,
    no wildcard) whose pages may show this agent's chat widget; they become the embed page's
    ``frame-ancestors``. The widget's visitors are anonymous, so the agent's web chat must be public
    (``web_chat`` None: not known here, the server's setting decides; not checked)."""
    value = metadata.get("embed_origins") or []
    if not isinstance(value, list) or not all(isinstance(o, str) and _ORIGIN.fullmatch(o) for o in value):
        raise MetadataError(f"metadata.embed_origins must be a list of origins like "
                            f"'https://shop.example' or 'http://127.0.0.1:8080' (scheme, host, optional port; "
                            f"no path, no '*'), not {value!r}", key="embed_origins")
    if value and web_chat is not None and web_chat != "public":
        raise MetadataError("metadata.embed_origins needs metadata.web_chat: public (the widget's visitors are "
                            "anonymous: no sign-in cookie crosses sites)", key="embed_origins")
    return tuple(dict.fromkeys(o.lower() for o in value))


def retention_days(metadata: dict[str, Any]) -> float | None:
    """``metadata.retention_days``: a positive number of days after which idle conversations are deleted;
    None when absent (kept for ever)."""
    value = metadata.get("retention_days")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise MetadataError(f"metadata.retention_days must be a positive number of days, not {value!r}",
                            key="retention_days")
    return float(value)


def check_metadata(metadata: dict[str, Any]) -> list[str]:
    """Raise on the first metadata value serve or the worker would refuse; the warnings: an
    ``embed_origins`` that leaves ``web_chat`` to the server's setting (refused there unless it is public)."""
    chat = web_chat(metadata, "key") if "web_chat" in metadata else None
    origins = embed_origins(metadata, chat)
    retention_days(metadata)
    if origins and chat is None:
        return ["metadata.embed_origins needs web chat public, and metadata.web_chat is not set: a server whose "
                "web_chat setting is key (the default) refuses this agent; add web_chat: public"]
    return []
