"""A hook that returns what it should have registered (`return [shout]`, `return router`) is said, naming the
plugin, the hook and what to do: halguru's hooks return nothing, and the plugin silently gave nothing."""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest

from halguru.tools.registry import plugin_tools

RETURNS = '''
from halguru import tool
from halguru.plugins import hookimpl


@tool
def retshout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


@hookimpl
def register_tools(register):
    return [retshout]


@hookimpl
def register_routes(app):
    from fastapi import APIRouter

    return APIRouter(prefix="/acme")
'''


def test_a_hook_returning_what_it_should_register_is_said(
        halguru_plugin: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    module = types.ModuleType("halguru_returns")
    exec(compile(RETURNS, "halguru_returns.py", "exec"), module.__dict__)
    halguru_plugin(module, name="returns")
    assert "retshout" not in plugin_tools()
    from fastapi import FastAPI

    from halguru.plugins.manager import get_plugin_manager

    get_plugin_manager().hook.register_routes(app=FastAPI())
    warnings = [line for line in capsys.readouterr().err.splitlines() if "'returns'" in line]
    assert warnings == [
        "halguru: warning: plugin 'returns': its register_tools hook returned a list, which halguru ignores: "
        "call register(...) for each thing instead",
        "halguru: warning: plugin 'returns': its register_routes hook returned an APIRouter, which halguru "
        "ignores: add it to app instead (app.include_router(router), @app.get(...))"]
