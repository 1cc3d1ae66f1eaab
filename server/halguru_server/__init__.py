"""halguru serve: the agents behind a REST API, an OpenAI-compatible endpoint and a web chat.

Importing this package stays cheap (the CLI imports ``halguru_server.plugin`` on
every start); FastAPI and uvicorn load only when ``create_app`` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halguru_server.app import create_app
    from halguru_server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from halguru_server.app import create_app

        return create_app
    if name == "ServerSettings":
        from halguru_server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(name)
