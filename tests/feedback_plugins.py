"""Test-only plugins installed the way pip leaves them: a module and a ``*.dist-info`` with its entry point.

``cut``: a model provider whose answers stop at max_tokens (``finish_reason: length``), as a real model's do.
``twin``: one provider of two models (``twin-small``, ``twin-large``) with equal options, each saying its name.
``boom``: models that break the contract: ``boom`` raises mid-answer, ``boom-chunks`` streams a dict,
``boom-create`` cannot be created.
``embed``: embedders ``hashy`` (4 numbers a text), ``baddim`` (says 8, gives 3) and ``badcount`` (one vector
whatever the number of texts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def model_plugin(provider: str, models: list[str], stream: str, create: str = "return PluginModel(entry.name)") -> str:
    """The source of a plugin whose provider ``provider`` offers ``models``; ``stream`` and ``create``: the
    bodies of the model's ``stream(request)`` and of the provider's ``create(entry)``, indented 8 spaces."""
    return f'''
from typing import ClassVar
from halguru.models.base import ModelEntry, TextChunk, UsageChunk
from halguru.plugins import hookimpl


class PluginModel:
    def __init__(self, name):
        self.name = name

    async def stream(self, request):
{stream}


class Provider:
    name: ClassVar[str] = {provider!r}
    description: ClassVar[str] = "a test plugin's models"

    @classmethod
    def default_models(cls):
        return [ModelEntry(name=name, provider=cls.name, source="tests") for name in {models!r}]

    @classmethod
    def from_reference(cls, argument):
        return ModelEntry(name=f"{provider}:{{argument}}", provider=cls.name, source="tests")

    @classmethod
    def create(cls, entry):
        {create}


@hookimpl
def register_models(register):
    register(Provider)
'''


CUT_PLUGIN = model_plugin("cut", ["cut"], '''\
        for word in ["The", " answer", " is", " long", " and"]:
            yield TextChunk(word)
        yield UsageChunk(prompt_tokens=3, completion_tokens=5, finish_reason="length")''')

TWIN_PLUGIN = model_plugin("twin", ["twin-small", "twin-large"], '''\
        yield TextChunk(f"I am {self.name}")
        yield UsageChunk(prompt_tokens=1, completion_tokens=3)''')

BOOM_PLUGIN = model_plugin("boom", ["boom", "boom-chunks", "boom-create"], '''\
        yield TextChunk("partial ")
        if self.name == "boom-chunks":
            yield {"text": "a dict"}
        raise RuntimeError("upstream 502 from provider")''', '''\
if entry.name == "boom-create":
            raise ValueError("cannot create: missing API key")
        return PluginModel(entry.name)''')

EMBED_PLUGIN = '''
import hashlib

from halguru.plugins import hookimpl


class Hashy:
    dimension = 4

    def __init__(self, argument=""):
        self.name = "hashy"

    def embed(self, texts):
        return [[b / 255 for b in hashlib.sha256(t.encode()).digest()[:4]] for t in texts]


class BadDim(Hashy):
    dimension = 8


class BadCount(Hashy):
    def embed(self, texts):
        return super().embed(texts[:1])


@hookimpl
def register_embedders(register):
    register("hashy", Hashy)
    register("baddim", BadDim)
    register("badcount", BadCount)
'''


def install(site: Path, name: str, module: str, source: str) -> Path:
    """What pip leaves behind for a distribution with one module and one ``halguru`` entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source, encoding="utf-8")
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[halguru]\n{name} = {module}\n")
    return site


def load(site: Path, monkeypatch: Any) -> Path:
    """``site``'s plugins loaded in this process (``monkeypatch``: pytest's), as the next halguru start loads them."""
    from halguru.plugins.manager import reset_plugin_manager

    monkeypatch.syspath_prepend(str(site))
    reset_plugin_manager()
    return site


def python_path(site: Path | str) -> str:
    """PYTHONPATH for a halguru subprocess that finds ``site``'s plugins (and halguru where this process does)."""
    return os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])


def install_cut(site: Path) -> Path:
    return install(site, "cut", "halguru_cut_plugin", CUT_PLUGIN)


def on_path(site: Path | str, env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``site`` first on PYTHONPATH, the rest of it kept (a checkout's own halguru, not the one
    installed, when the tests run with PYTHONPATH set to it)."""
    return {**env, "PYTHONPATH": python_path(site)}


def install_twin(site: Path) -> Path:
    return install(site, "twin", "halguru_twin_plugin", TWIN_PLUGIN)


def install_boom(site: Path) -> Path:
    return install(site, "boom", "halguru_boom_plugin", BOOM_PLUGIN)


def install_embed(site: Path) -> Path:
    return install(site, "embed", "halguru_embed_plugin", EMBED_PLUGIN)
