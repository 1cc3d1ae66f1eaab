"""Knowledge bases made with a plugin's embedder: refused up front when that plugin is not loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru.errors import HalguruError
from tests.feedback_plugins import install_embed, load, python_path

GONE = "knowledge base 'hkb': embedder 'hashy' is not available: no loaded plugin registers it"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return load(install_embed(tmp_path / "site"), monkeypatch)


@pytest.fixture
def without_plugins(monkeypatch: pytest.MonkeyPatch):
    """What a user has after uninstalling the plugin, or leaving it out of HALGURU_LOAD_PLUGINS."""
    from halguru.plugins.manager import reset_plugin_manager

    def leave_out() -> None:
        monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "")
        reset_plugin_manager()

    return leave_out


@pytest.fixture
def agent(site, write_agent) -> Path:
    from halguru.rag.store import KnowledgeBase

    KnowledgeBase.create("hkb", "hashy")
    return write_agent("name: kb\nmodel: scripted\nknowledge: [hkb]\n", name="kb")


def test_validate_refuses_a_base_whose_plugin_embedder_is_not_loaded(agent, cli_error, site) -> None:
    from halguru.agents.checks import check_project

    check_project(agent)  # with the plugin: fine
    line = cli_error("validate", str(agent), env={"HALGURU_LOAD_PLUGINS": "", "PYTHONPATH": python_path(site)})
    assert line.startswith(f"Error: {agent / 'agent.yaml'}:3: knowledge.0: {GONE}"), line  # was "OK: kb"


def test_serve_refuses_it_at_start_up(agent, without_plugins) -> None:
    from halguru_server.agents import load_agents

    assert "kb" in load_agents([agent], "key")
    without_plugins()
    with pytest.raises(HalguruError) as caught:  # it started, then every request failed
        load_agents([agent], "key")
    assert GONE in str(caught.value)


def test_a_folder_whose_embedder_is_not_loaded_is_refused_too(site, write_agent, without_plugins) -> None:
    from halguru.agents.checks import check_project

    folder = write_agent("name: kf\nmodel: scripted\nknowledge: [docs]\nretrieval: {embedder: hashy}\n", name="kf")
    (folder / "docs").mkdir()
    check_project(folder)
    without_plugins()
    with pytest.raises(HalguruError) as caught:
        check_project(folder)
    assert "agent.yaml:3: knowledge.0: retrieval.embedder: embedder 'hashy' is not available" in str(caught.value)


@pytest.mark.parametrize(("embedder", "said"), [
    ("baddim", "embedder 'baddim' returned 4-dimensional vectors, expected 8 (its dimension)"),
    ("badcount", "embedder 'badcount' returned 1 vector for 2 texts; embed(texts) must return one vector per text"),
])
def test_an_embedder_that_breaks_its_promise_is_one_line_and_writes_nothing(site, tmp_path: Path, embedder: str,
                                                                            said: str) -> None:
    from halguru.rag.errors import KnowledgeError
    from halguru.rag.indexer import ingest
    from halguru.rag.store import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("cats", "dogs"):
        (docs / f"{name}.md").write_text(f"# {name}\n\nA page about {name}, and what they eat.\n")
    kb = KnowledgeBase.create("bad", embedder)
    with pytest.raises(KnowledgeError) as caught:  # was LanceDB's cast error, or zip()'s
        ingest(kb, [docs])
    assert str(caught.value) == said
    assert kb.info().chunks == 0


class _NoDevice:
    dimension = 4

    def __init__(self, argument: str = "") -> None:
        raise RuntimeError("no gpu here")


class _ReadOnlyName:
    dimension = 4

    @property
    def name(self) -> str:
        return "ro"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0, 0.0, 0.0] for _ in texts]


class _TextDimension(_ReadOnlyName):
    dimension = "384"  # type: ignore[assignment]
    name = "text"


class _ZeroDimension(_ReadOnlyName):
    dimension = 0
    name = "zero"


class _NoDimension:
    def __init__(self, argument: str = "") -> None:
        self.name = "nodim"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] for _ in texts]


class _NoEmbed:
    dimension = 4

    def __init__(self, argument: str = "") -> None:
        self.name = "noembed"


@pytest.mark.parametrize(("embedder", "said"), [
    ("nodevice", "embedder 'nodevice' (plugin 'brokenemb') failed to start: RuntimeError: no gpu here"),
    ("nodevice:big", "embedder 'nodevice:big' (plugin 'brokenemb') failed to start: RuntimeError: no gpu here"),
    ("readonly", "embedder 'readonly' (plugin 'brokenemb') failed to start: AttributeError: property 'name' of "
                 "'_ReadOnlyName' object has no setter"),
    ("textdim", "embedder 'textdim' (plugin 'brokenemb') has dimension '384' (a str): it must be a whole number "
                "above 0"),
    ("zerodim", "embedder 'zerodim' (plugin 'brokenemb') has dimension 0 (an int): it must be a whole number "
                "above 0"),
    ("nodim", "embedder 'nodim' (plugin 'brokenemb') has no dimension: it must be a whole number above 0"),
    ("noembed", "embedder 'noembed' (plugin 'brokenemb') has no embed(texts) method"),
])
def test_a_plugin_embedder_that_cannot_start_is_one_line_naming_it_and_its_plugin(halguru_plugin, embedder: str,
                                                                                   said: str) -> None:
    """A plugin's factory that raised (or an embedder whose name is a read-only property, whose dimension is not
    a number, or that cannot embed) came out of `halguru kb create --embedder ...` as a traceback (pyarrow's
    'TypeError: an integer is required' for a dimension of '384', after it had made the base's folder)."""
    import types

    from halguru import rag
    from halguru.plugins import hookimpl
    from halguru.rag.errors import KnowledgeError

    @hookimpl
    def register_embedders(register):
        register("nodevice", _NoDevice)
        register("readonly", _ReadOnlyName)
        register("textdim", _TextDimension)
        register("zerodim", _ZeroDimension)
        register("nodim", _NoDimension)
        register("noembed", _NoEmbed)

    plugin = types.ModuleType("halguru_brokenemb")
    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    halguru_plugin(plugin)
    with pytest.raises(KnowledgeError) as refused:
        rag.create("kb", embedder=embedder)
    assert str(refused.value) == said
    with pytest.raises(KnowledgeError):  # nothing was made
        rag.open_base("kb")


class _ServiceDown:
    dimension = 4

    def __init__(self, argument: str = "") -> None:
        self.name = "down"

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding service down")


def test_a_plugin_embedder_failing_to_embed_is_one_line_naming_it_and_writes_nothing(halguru_plugin,
                                                                                    tmp_path: Path) -> None:
    """`halguru kb ingest` into a base whose plugin embedder raised printed the plugin's traceback (and a
    ConnectionError came out as 'Error: <message>' naming no embedder)."""
    import types

    from halguru import rag
    from halguru.plugins import hookimpl
    from halguru.rag.errors import KnowledgeError

    @hookimpl
    def register_embedders(register):
        register("down", _ServiceDown)

    plugin = types.ModuleType("halguru_down")
    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    halguru_plugin(plugin)
    (tmp_path / "cats.md").write_text("# Cats\n\nCats sleep most of the day.\n", encoding="utf-8")
    rag.create("kb", embedder="down")
    with pytest.raises(KnowledgeError) as refused:
        rag.ingest("kb", [tmp_path / "cats.md"])
    assert str(refused.value) == "embedder 'down' failed: RuntimeError: embedding service down"
    assert rag.open_base("kb").info().chunks == 0


def test_a_folder_base_of_an_embedder_no_longer_named_is_made_again_not_refused(site, write_agent,
                                                                                without_plugins) -> None:
    """A folder's base holds only what the folder gives again: made with a plugin's embedder, then agent.yaml
    names none and the plugin is gone, the next run rebuilds it with the default embedder, so validate and serve
    do not refuse it (they did, as for a named base, whose chunks cannot be made again)."""
    from halguru import rag
    from halguru.agents.checks import check_project
    from halguru.agents.loader import load_agent
    from halguru.rag import agent as rag_agent

    folder = write_agent("name: kf\nmodel: scripted\nknowledge: [docs]\nretrieval: {embedder: hashy}\n", name="kf")
    (folder / "docs").mkdir()
    (folder / "docs" / "cat.md").write_text("# Cat\n\nThe office cat is called Pixel.\n", encoding="utf-8")
    load_agent(folder).knowledge.retrieve("office cat")
    assert rag.open_base("kf-docs").info().embedder == "hashy"
    (folder / "agent.yaml").write_text("name: kf\nmodel: scripted\nknowledge: [docs]\n")
    without_plugins()
    rag_agent.forget_synced()  # a new process
    check_project(folder)
    hits = [h.text for r in load_agent(folder).knowledge.retrieve("office cat") for h in r.hits]
    assert any("Pixel" in text for text in hits)
    assert rag.open_base("kf-docs").info().embedder in ("minilm", "wordllama")


def test_a_plugin_embedder_is_built_once_per_process(site) -> None:
    """docs/plugins.md: halguru builds it once per process (a model loaded for every search otherwise)."""
    from halguru.rag.embedders import get_embedder

    assert get_embedder("hashy") is get_embedder("hashy")


class _Fast(_NoEmbed):
    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0, 0.0, 0.0] for _ in texts]


def test_a_plugin_embedder_named_like_a_profile_is_said_and_not_loaded(halguru_plugin, capsys) -> None:
    """A plugin's embedder 'fast' was never used (`--embedder fast` is halguru's profile, wordllama), without a
    word, and `halguru plugins` listed it."""
    import types

    from halguru.plugins import hookimpl
    from halguru.rag.embedders import embedder_factories, get_embedder

    @hookimpl
    def register_embedders(register):
        register("fast", _Fast)
        register("quick", _Fast)

    plugin = types.ModuleType("halguru_speedy")
    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    halguru_plugin(plugin)
    assert "fast" not in embedder_factories() and get_embedder("quick").dimension == 4
    assert "halguru: warning: plugin 'speedy': its embedder 'fast' is not loaded: fast is halguru's profile for " \
           "wordllama; the plugin must name its embedder otherwise" in capsys.readouterr().err.splitlines()
