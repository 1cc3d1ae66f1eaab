"""Every hook a halguru plugin can implement.

Hooks take a ``register`` callback (the ``llm``/``datasette`` pattern), so a
plugin can register any number of things and the order of plugins does not
matter. What a registration hook passes to ``register`` is checked as the plugin
loads (``halguru.plugins.contracts``). docs/plugins.md shows each hook with an
example. A test fails if a hook here has no docstring.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("halguru")
hookimpl = pluggy.HookimplMarker("halguru")


@hookspec
def register_models(register: Any) -> None:
    """Register model providers.

    Call ``register(provider_class)`` for each class implementing ``halguru.models.base.ModelProvider``: class
    attributes ``name`` (the provider's name: ``ModelEntry.provider`` and ``PROVIDER:ARGUMENT`` references use
    it) and ``description`` (one line for people), and class methods ``default_models()`` (the entries it
    offers without configuration), ``from_reference(argument)`` (the entry for ``PROVIDER:ARGUMENT``) and
    ``create(entry)`` (the model: ``stream(request)`` is an async iterator of chunks). Optional ``shared =
    False`` gives a new model on every use instead of one per process. A class lacking ``name`` or one of the
    three methods skips the plugin as it loads.
    """


@hookspec
def register_embedders(register: Any) -> None:
    """Register embedding providers for knowledge bases.

    Call ``register(name, factory)`` (a name without ``:``). A knowledge base's embedder reference is ``NAME``
    or ``NAME:ARGUMENT``: halguru calls ``factory()`` or ``factory(argument)`` (one string), once per process,
    and sets the returned object's ``name`` attribute to the reference (so ``name`` must be writable). The
    object has ``dimension`` (an int), ``embed(texts) -> list[list[float]]`` (one vector of that length per
    text, for passages) and optionally ``embed_query(texts)`` (for questions; ``embed`` otherwise).
    """


@hookspec
def register_tools(register: Any) -> None:
    """Register tools that agents may allow in ``tools:``.

    Call ``register(tool)`` with a ``halguru.tools.Tool`` (what ``@tool`` returns); anything else (a plain
    function) skips the plugin as it loads.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``halguru`` CLI.

    ``cli`` is the root ``typer.Typer`` app: use ``@cli.command()`` or
    ``cli.add_typer(...)``.
    """


@hookspec
def register_channels(register: Any) -> None:
    """Register messaging channels (how messages reach agents and replies go out).

    Call ``register(name, channel_class)``; agents use it with ``channels: {name: {...}}`` in agent.yaml. A name
    is its first plugin's (built-in ones first); a later plugin's channel of that name is left out with a warning.
    The class implements ``halguru.channels.base.Channel``: ``__init__(agent, config, folder)`` checks the
    settings, ``send(message, once)`` delivers a reply, and ``webhook(request, sink)`` (messages pushed to
    ``/channels/NAME/AGENT`` in serve mode) and/or ``source(sink)`` (messages the worker fetches). The
    built-in ``twilio`` and ``email`` channels are registered this way.
    """


@hookspec
def register_routes(app: Any) -> None:
    """Add HTTP routes to the serve-mode application.

    ``app`` is the FastAPI application built by ``halguru_server.create_app``; plugin routes go after
    halguru's own, and one a route already there answers (``GET /v1/agents``) is left out with a warning.
    Routes are public unless guarded: ``dependencies=[Depends(require("chat:use"))]`` (from
    ``halguru_server.identity.guards``) asks for an API key or a session, as halguru's ``/v1`` routes do; a
    plugin route under ``/v1`` or ``/admin`` without a guard is warned about.
    """


@hookspec
def register_sections(register: Any) -> None:
    """Register agent.yaml sections that change how an agent runs (``team:``, ``workflow:``).

    Call ``register(name, loader)``: ``loader(agent)`` gets the loaded agent
    whose agent.yaml has a value under ``name`` and returns its driver (see
    ``halguru.agents.driver.Driver``), which runs the agent instead of the
    plain loop. halguru's orchestration registers its sections this way.
    """
