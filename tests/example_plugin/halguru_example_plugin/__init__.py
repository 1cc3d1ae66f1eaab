"""An example halguru plugin: the ``echo-upper`` model provider, the ``shout`` tool, a ``hello`` command and a
``GET /example/shout`` route in serve mode.

Installed by tests/test_plugins.py; the entry point is ``example`` in the group ``halguru``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from halguru.models.base import Chunk, ModelEntry, ModelRequest, TextChunk, UsageChunk
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool


class EchoUpperModel:
    """Streams the user's last message, upper-cased, one word at a time."""

    def __init__(self, name: str):
        self.name = name

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        words = last_user.upper().split(" ")
        for i, word in enumerate(words):
            yield TextChunk(word if i == 0 else " " + word)
        yield UsageChunk(prompt_tokens=sum(len(m.content.split()) for m in request.messages),
                         completion_tokens=len(words))


class EchoUpperProvider:
    name: ClassVar[str] = "echo-upper"
    description: ClassVar[str] = "echoes the user's last message in upper case (example plugin)"

    @classmethod
    def default_models(cls) -> list[ModelEntry]:
        return [ModelEntry(name="echo-upper", provider=cls.name, source="halguru-example-plugin")]

    @classmethod
    def from_reference(cls, argument: str) -> ModelEntry:
        return ModelEntry(name=f"echo-upper:{argument}", provider=cls.name, source="halguru-example-plugin",
                          options={"variant": argument})

    @classmethod
    def create(cls, entry: ModelEntry) -> EchoUpperModel:
        return EchoUpperModel(entry.name)


@tool
def shout(text: str) -> str:
    """Return the text in upper case with an exclamation mark."""
    return text.upper() + "!"


@hookimpl
def register_models(register: Any) -> None:
    register(EchoUpperProvider)


@hookimpl
def register_tools(register: Any) -> None:
    register(shout)


@hookimpl
def register_routes(app: Any) -> None:
    from fastapi import APIRouter

    router = APIRouter(prefix="/example", tags=["example"])

    @router.get("/shout")
    def shout_route(text: str) -> dict[str, str]:
        """The shout tool over HTTP (a plugin's own route, next to halguru's /v1)."""
        return {"text": shout.function(text)}

    app.include_router(router)


@hookimpl
def register_commands(cli: Any) -> None:
    @cli.command()
    def hello() -> None:
        """Say hello (from the example plugin)."""
        print("hello from example")
