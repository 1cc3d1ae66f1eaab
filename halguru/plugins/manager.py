"""Loads plugins: the built-in ones, then installed ones from entry points.

Plugins load when the CLI starts (or on first use from Python), never at
import time. ``HALGURU_LOAD_PLUGINS=a,b`` limits which third-party plugins load;
an empty value loads none. Built-in plugins always load: halguru's own modules
and the entry points halguru's own distribution declares (the server plugin).

A plugin fails alone: one that cannot be imported or registered, or whose hook
raises, is skipped with a one-line warning on stderr naming it (the ``llm`` and
``datasette`` behaviour; from then on none of its hooks run), and every other
plugin keeps working. Its registration hooks (tools, models, embedders, channels,
sections) are called once as it loads, so one that raises skips it for every
command alike, whichever hook that command needs. A tool, model provider, embedder or channel name belongs to
the first plugin that registers it, built-in ones first (``registered``); so does a plugin's own name (its entry
point's): a second distribution's entry point of a taken name is skipped with a warning naming it. ``plugin_failures()``
lists what was skipped, for ``halguru plugins``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from halguru.errors import did_you_mean, exception_line
from halguru.plugins import hookspecs
from halguru.plugins.contracts import REGISTRATIONS, RegistrationError

ENTRY_POINT_GROUP = "halguru"
# A third-party plugin taking this long to import and register is said: every command, `--help` included, waits.
SLOW_LOAD_S = 1.0
T = TypeVar("T")

# Built-in plugins use the same hooks as third-party ones.
BUILTIN_PLUGINS = (
    "halguru.models.plugin",
    "halguru.tools.plugin",
    "halguru.rag.plugin",
    "halguru.orchestration.plugin",
    "halguru.channels.plugin",
)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    hooks: tuple[str, ...]
    builtin: bool
    package: str | None = None
    version: str | None = None


# The distribution whose own entry points (``server``) are built-in, whatever HALGURU_LOAD_PLUGINS says.
OWN_DISTRIBUTION = "halguru"

# plugin name -> (distribution, version), for `halguru plugins`
_DISTRIBUTIONS: dict[str, tuple[str, str]] = {}
# entry-point plugins that ship with halguru (filled as they load)
_BUILTIN_ENTRY_POINTS: set[str] = set()
# plugin name -> module, of plugins tests load without installing them (load_test_plugin)
_TEST_PLUGINS: dict[str, ModuleType] = {}
# plugin name -> why it was skipped (failed to load, or a hook of it raised), in the order seen
_FAILURES: dict[str, str] = {}
# (entry point name, distribution, why) of each entry point skipped because its name was taken
_NAME_TAKEN: list[tuple[str, str, str]] = []
# entry point name -> its distribution, of each third-party plugin HALGURU_LOAD_PLUGINS leaves out: `halguru
# plugins` lists it (it vanished from the list, as if uninstalled)
_LEFT_OUT: dict[str, str | None] = {}


def _warn(name: str, reason: str) -> None:
    """Record a failed plugin and say so once, on one line naming it; from then on none of its hooks run."""
    if name in _FAILURES:
        return
    _FAILURES[name] = reason
    print(f"halguru: warning: plugin {name!r} skipped: {reason}", file=sys.stderr)
    pm = _plugin_manager() if _plugin_manager.cache_info().currsize else None  # None: still loading
    if pm is not None and pm.get_plugin(name) is not None:
        pm.unregister(name=name)


_SAID: set[str] = set()


def warn_once(message: str) -> None:
    """A warning about plugins that is not a failure (a name registered twice), said once a process."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"halguru: warning: {message}", file=sys.stderr)


# Threads that start at once (``run_sync`` from a thread pool) share one load: each loaded every plugin again.
_LOADING = threading.RLock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The loaded plugins, loaded on first use (one load a process, whichever threads ask at once)."""
    with _LOADING:
        return _plugin_manager()


@lru_cache(maxsize=1)
def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("halguru")
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    allowed = _allowed_plugins()
    found: set[str] = set()
    owners = dict.fromkeys(BUILTIN_PLUGINS, OWN_DISTRIBUTION)  # plugin name -> the distribution that has it
    for ep in _entry_points():
        found.add(ep.name)
        builtin = _is_own(ep)
        if not builtin and allowed is not None and ep.name not in allowed:
            _LEFT_OUT.setdefault(ep.name, ep.dist.name if ep.dist is not None else None)
            continue
        dist = OWN_DISTRIBUTION if builtin else ep.dist.name if ep.dist is not None else "an unknown distribution"
        if ep.name in owners:  # a name is its first plugin's, halguru's own first: never a silent stand-in
            if owners[ep.name] != dist:
                taken = "halguru's own plugin" if owners[ep.name] == OWN_DISTRIBUTION else repr(owners[ep.name])
                why = f"{taken} has that name; its entry point needs another"
                warn_once(f"plugin {ep.name!r} of {dist!r} skipped: {why}")
                _NAME_TAKEN.append((ep.name, dist, why))
            continue
        owners[ep.name] = dist
        if ep.dist is not None:  # also for a plugin that fails: `halguru plugins` names its package
            _DISTRIBUTIONS[ep.name] = (ep.dist.name, ep.dist.version)
        _load(pm, ep.name, ep.load, builtin)
    for name, module in _TEST_PLUGINS.items():  # load_test_plugin: as an installed plugin, after halguru's own
        if name in owners:
            warn_once(f"plugin {name!r} (load_test_plugin) skipped: {owners[name]!r} has that name")
            continue
        owners[name] = "tests"
        _load(pm, name, functools.partial(_same, module), builtin=False)
    for name in sorted((allowed or set()) - found):  # a typo in HALGURU_LOAD_PLUGINS is said, not ignored
        _warn(name, f"not installed (named in HALGURU_LOAD_PLUGINS){did_you_mean(name, found)}")
    return pm


def _load(pm: pluggy.PluginManager, name: str, load: Callable[[], object], builtin: bool) -> None:
    """Register the plugin ``load()`` gives, or skip it with a warning naming it (it failed before, it cannot be
    imported, a hook of it is invalid, a registration hook raises or registers something of the wrong kind)."""
    if name in _FAILURES:
        return
    started = time.perf_counter()
    with _prints_to_stderr(not builtin):
        try:
            pm.register(load(), name=name)
        except (Exception, SystemExit) as exc:  # a broken plugin fails alone (ImportError, SyntaxError, a bad
            # hookimpl, sys.exit() at import: an argparse app run on import); Ctrl-C still stops halguru
            _warn(name, f"failed to load ({_why_not_loaded(exc)})")
            return
        if not _hooks_are_plain(pm, name):
            return
        _warn_unknown_hooks(pm, name)
        _guard_hooks(pm, name, builtin)
        if not builtin and not _registers_cleanly(pm, name):
            return  # skipped now, whatever a command asks for first (the tools of a plugin whose models
            # hook raised were listed by `halguru tools`, then missing from the run that needed them)
    if builtin:
        _BUILTIN_ENTRY_POINTS.add(name)
    elif (took := time.perf_counter() - started) >= SLOW_LOAD_S:
        warn_once(f"plugin {name!r} took {took:.1f} s to load, and every halguru command waits for it: import "
                  "heavy libraries inside hooks and commands, not at module level (docs/plugins.md)")


def _why_not_loaded(exc: BaseException) -> str:
    """The exception's line; for a hook pluggy refuses, its whole message on one line, with halguru's signature
    (its first line alone said 'Plugin 'x' for hook 'register_tools'', not what was wrong)."""
    if not isinstance(exc, pluggy.PluginValidationError):
        return exception_line(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    hook = re.search(r"for hook '(\w+)'", lines[0]) if lines else None
    spec = getattr(hookspecs, hook.group(1), None) if hook else None
    expected = (f"; halguru's is {spec.__name__}({', '.join(inspect.signature(spec).parameters)})"
                if spec is not None else "")
    return f"invalid hook: {'; '.join(lines[1:]) or lines[0]}{expected}"


def _hooks_are_plain(pm: pluggy.PluginManager, name: str) -> bool:
    """False (and plugin ``name`` skipped) when a hook of it is ``async def``: halguru calls hooks as plain
    functions, so such a hook's body never ran and it registered nothing, without a word."""
    for hook, impl in _own_hooks(pm, name):
        if inspect.iscoroutinefunction(impl.function) or inspect.isasyncgenfunction(impl.function):
            _warn(name, f"its {hook} hook is async (async def): halguru calls hooks as plain functions")
            pm.unregister(name=name)
            return False
    return True


def _warn_unknown_hooks(pm: pluggy.PluginManager, name: str) -> None:
    """Say each ``@hookimpl`` of plugin ``name`` that no halguru hook has (a typo: ``register_tool``): pluggy
    keeps it and never calls it, so what it registers was missing without a word."""
    known = [hook for hook in dir(hookspecs) if hook.startswith("register_")]
    for hook, impl in _own_hooks(pm, name):
        if not getattr(pm.hook, hook).has_spec() and not impl.optionalhook:
            warn_once(f"plugin {name!r}: its hook {hook!r} is not a halguru hook{did_you_mean(hook, known)}; "
                      "it is never called")


def _same(value: T) -> T:
    return value


def _entry_points() -> list[EntryPoint]:
    """The ``halguru`` entry points, halguru's own first (the server plugin): whichever distribution sorts
    first on the path, one whose entry point is named ``server`` cannot stand in for it."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not _is_own(ep))


def registered(hook: str, what: str, entry: Callable[..., tuple[str, T]],
               owners: dict[str, str] | None = None) -> dict[str, T]:
    """What the plugins' ``hook`` (``register_tools``, ``register_models``, ...) registers, by name.

    Plugins are asked in the order they loaded, built-in ones first (pluggy's own call goes last-registered
    first), and a name stays its first plugin's: a later one of the same name is left out with a warning
    naming both plugins, never a silent stand-in for a built-in. ``entry`` turns what a plugin passes to
    ``register`` into (name, value); ``owners``, when given, gets each name's plugin."""
    found, owner, lost = _collect(hook, entry)
    if owners is not None:
        owners.update(owner)
    for plugin, name in lost:
        warn_once(f"plugin {plugin!r}: its {what} {name!r} is not loaded: plugin {owner[name]!r} "
                  "registered one of that name first")
    return found


def owners(hook: str) -> dict[str, str]:
    """Name -> the plugin whose registration of it counts, for a registration hook (``halguru tools``)."""
    return _collect(hook, REGISTRATIONS[hook][1])[1]


# (plugin manager, its number of plugins, hook) -> what _ask gave: each agent loaded asked every plugin's
# register_tools again (a hook building its tools from a spec made every load_agent, every validate, wait)
_ASKED: dict[tuple[int, int, str], tuple[dict[str, Any], dict[str, str], list[tuple[str, str]]]] = {}


def _collect(hook: str, entry: Callable[..., tuple[str, T]]) -> tuple[dict[str, T], dict[str, str],
                                                                       list[tuple[str, str]]]:
    """(name -> value, name -> its plugin, (plugin, name) of each registration left out for a name taken), the
    plugins asked once per plugin set."""
    pm = get_plugin_manager()
    key = (id(pm), len(pm.get_plugins()), hook)
    if key not in _ASKED:
        _ASKED[key] = _ask(pm, hook, entry)
    found, owner, lost = _ASKED[key]
    return dict(found), dict(owner), list(lost)


def _ask(pm: pluggy.PluginManager, hook: str, entry: Callable[..., tuple[str, T]]) -> tuple[
        dict[str, T], dict[str, str], list[tuple[str, str]]]:
    """Call each loaded plugin's ``hook`` (see ``_collect``)."""
    found: dict[str, T] = {}
    owner: dict[str, str] = {}
    lost: list[tuple[str, str]] = []

    def register_from(plugin: str) -> Callable[..., None]:
        def register(*args: Any, **kwargs: Any) -> None:
            name, value = entry(*args, **kwargs)
            if name not in found:
                found[name], owner[name] = value, plugin
            elif found[name] is not value:
                lost.append((plugin, name))
        return register

    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin = impl.plugin_name
        if impl.hookwrapper or impl.wrapper or pm.get_plugin(plugin) is None:  # a wrapper registers nothing;
            continue  # an unregistered plugin failed meanwhile
        impl.function(**{name: register_from(plugin) for name in impl.argnames})
        if pm.get_plugin(plugin) is None:  # its hook raised half-way (guarded): none of what it gave counts
            for name in [n for n, by in owner.items() if by == plugin]:
                del found[name], owner[name]
            lost = [(p, n) for p, n in lost if p != plugin]
    return found, owner, lost


def registrations() -> dict[str, dict[str, dict[str, str | None]]]:
    """plugin -> what it registers (``tools``, ``model_providers``...) -> name -> None when it counts, else the
    plugin whose registration of that name was first (for ``halguru plugins``)."""
    found: dict[str, dict[str, dict[str, str | None]]] = {}
    for hook, (kind, entry) in REGISTRATIONS.items():
        _, owner, lost = _collect(hook, entry)
        for name, plugin in owner.items():
            found.setdefault(plugin, {}).setdefault(kind, {})[name] = None
        for plugin, name in lost:
            found.setdefault(plugin, {}).setdefault(kind, {})[name] = owner[name]
    return found


def plugin_hooks(hook: str) -> list[tuple[str, bool, Callable[..., object]]]:
    """(plugin, built in?, its ``hook`` function) of every loaded plugin, built-in ones first: the CLI (commands)
    and serve (routes) call them in that order, one plugin at a time, so that what a built-in plugin gives
    (``serve``) is there before another plugin's of the same name, and what a plugin skipped half-way added is
    taken back (``skipped``)."""
    pm = get_plugin_manager()
    impls = [impl for impl in getattr(pm.hook, hook).get_hookimpls()
             if not (impl.hookwrapper or impl.wrapper) and pm.get_plugin(impl.plugin_name) is not None]
    found = [(impl.plugin_name, impl.plugin_name in BUILTIN_PLUGINS or impl.plugin_name in _BUILTIN_ENTRY_POINTS,
              impl.function) for impl in impls]
    return sorted(found, key=lambda item: not item[1])  # stable: loaded order within each


def skipped(plugin: str) -> bool:
    """Whether ``plugin`` was skipped (it failed to load, or a hook of it raised)."""
    return plugin in _FAILURES


def _registers_cleanly(pm: pluggy.PluginManager, name: str) -> bool:
    """Run plugin ``name``'s registration hooks with a register that checks what it is given (``contracts``)
    and keeps nothing: False (and the plugin skipped, with its warning) when one raises or registers something
    of the wrong kind."""
    for hook, impl in _own_hooks(pm, name):
        if hook in REGISTRATIONS:
            check = REGISTRATIONS[hook][1]
            impl.function(**{arg: check for arg in impl.argnames})  # guarded: a raise skips the plugin
            if name in _FAILURES:
                pm.unregister(name=name)
                return False
    return True


def _prints_to_stderr(third_party: bool) -> contextlib.AbstractContextManager[object]:
    """What a third-party plugin prints as it loads or registers (a banner at import, a debug line in a hook) goes
    to stderr: halguru's stdout is data (`--json`, a pipe, the MCP server's stdio protocol), and such a line broke
    it. Built-in plugins print nothing, and their hooks may run while a thread writes to stdout: left alone."""
    return contextlib.redirect_stdout(sys.stderr) if third_party else contextlib.nullcontext()


def _guard_hooks(pm: pluggy.PluginManager, name: str, builtin: bool) -> None:
    """Wrap each hook of plugin ``name`` so that one that raises is skipped with a warning naming it."""
    for hook, impl in _own_hooks(pm, name):
        # HookImpl.function is typed Final, but pluggy calls whatever it holds: swap in the guard.
        setattr(impl, "function", _guarded(name, hook, impl.function, builtin))  # noqa: B010


def _own_hooks(pm: pluggy.PluginManager, name: str) -> list[tuple[str, Any]]:
    """(hook name, implementation) of each hook plugin ``name`` implements, wrappers left out."""
    return [(caller.name, impl) for caller in pm.get_hookcallers(pm.get_plugin(name)) or []
            for impl in caller.get_hookimpls()
            if impl.plugin_name == name and not (impl.hookwrapper or impl.wrapper)]


def _guarded(name: str, hook: str, function: Callable[..., object], builtin: bool) -> Callable[..., object]:
    @functools.wraps(function)
    def call(*args: object, **kwargs: object) -> object:
        try:
            with _prints_to_stderr(not builtin):
                given = function(*args, **kwargs)
            if given is not None:  # `return [tool]`, `return router`: nothing was registered, and nothing said
                warn_once(f"plugin {name!r}: its {hook} hook returned {_a(type(given).__name__)}, which halguru "
                          f"ignores: {_INSTEAD.get(hook, 'call register(...) for each thing instead')}")
            return None
        except (Exception, SystemExit) as exc:  # sys.exit() in a hook skips the plugin, not halguru; Ctrl-C stops it
            _warn(name, str(exc) if isinstance(exc, RegistrationError)
                  else f"its {hook} hook raised {exception_line(exc)}")
            return None

    return call


# What a hook that returned something should have done instead (a registration hook: call register).
_INSTEAD = {"register_commands": "add it to cli instead (@cli.command(), cli.add_typer(...))",
            "register_routes": "add it to app instead (app.include_router(router), @app.get(...))"}


def _a(noun: str) -> str:
    """``a list``, ``an APIRouter``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def plugin_failures() -> dict[str, str]:
    """Plugins skipped because they failed (name -> reason), once plugins have loaded."""
    get_plugin_manager()
    return dict(_FAILURES)


def _is_own(ep: EntryPoint) -> bool:
    """Whether an entry point is declared by halguru's own distribution (and so always loads)."""
    return ep.dist is not None and _normalize(ep.dist.name) == OWN_DISTRIBUTION


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _allowed_plugins() -> set[str] | None:
    # Read straight from the environment: pydantic-settings costs ~80 ms to import and plugins
    # load on every CLI start, `--help` included. The README's Configuration table documents the variable.
    value = os.environ.get("HALGURU_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def reset_plugin_manager() -> None:
    """Forget loaded plugins, and those ``load_test_plugin`` added: the next use loads them again (tests change
    HALGURU_LOAD_PLUGINS and sys.path)."""
    _TEST_PLUGINS.clear()
    _forget_loaded()


def load_test_plugin(module: ModuleType | str, name: str | None = None) -> str:
    """Load ``module`` (or the module of that import name) from the next use on as an installed plugin named
    ``name`` would be (default: the module's last name less ``halguru_``): tests of a plugin that is not
    installed. Returns the name; ``reset_plugin_manager()`` forgets it. The ``halguru_plugin`` pytest fixture
    calls this."""
    if isinstance(module, str):
        module = importlib.import_module(module)
    name = name or module.__name__.rpartition(".")[2].removeprefix("halguru_")
    _TEST_PLUGINS[name] = module
    _forget_loaded()
    return name


# What halguru keeps per process from the plugins (module, attribute): cleared whenever the plugin set changes.
# Read from sys.modules: a module not imported yet has nothing kept (and importing it would cost, `rag`'s most).
_PLUGIN_CACHES = (("halguru.agents.driver", "_sections"), ("halguru.rag.embedders", "get_embedder"),
                  ("halguru.models.registry", "_PROVIDERS"))


def _forget_loaded() -> None:
    with _LOADING:  # never half-way through another thread's load
        _plugin_manager.cache_clear()
        _FAILURES.clear()
        _NAME_TAKEN.clear()
        _LEFT_OUT.clear()
        _SAID.clear()
        _ASKED.clear()
        for module_name, attribute in _PLUGIN_CACHES:
            cache = getattr(sys.modules.get(module_name), attribute, None)
            clear = getattr(cache, "cache_clear", None) or getattr(cache, "clear", None)
            if clear is not None:
                clear()


def list_plugins() -> list[PluginInfo]:
    pm = get_plugin_manager()
    infos = []
    for name, plugin in pm.list_name_plugin():
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        package, version = _DISTRIBUTIONS.get(name, (None, None))
        builtin = name in BUILTIN_PLUGINS or name in _BUILTIN_ENTRY_POINTS
        infos.append(PluginInfo(name, hooks, builtin, package, version))
    return infos


def plugin_report() -> list[dict[str, Any]]:
    """``halguru plugins``: each loaded plugin (``PluginInfo``'s fields, ``registered``: what it registers by
    kind, ``not_loaded``: each name of it another plugin had first), then each entry point skipped (``name``,
    ``package``, ``skipped``: why)."""
    given = registrations()
    report: list[dict[str, Any]] = []
    for info in list_plugins():
        names = given.get(info.name, {})
        report.append({**asdict(info),
                       "registered": {kind: [n for n, by in found.items() if by is None]
                                      for kind, found in names.items() if any(by is None for by in found.values())},
                       "not_loaded": [{"kind": kind, "name": n, "taken_by": by}
                                      for kind, found in names.items() for n, by in found.items() if by is not None]})
    for name, reason in plugin_failures().items():
        report.append({"name": name, "package": _DISTRIBUTIONS.get(name, (None, None))[0], "skipped": reason})
    report += [{"name": name, "package": dist, "skipped": why} for name, dist, why in _NAME_TAKEN]
    report += [{"name": name, "package": dist, "skipped": "not loaded: HALGURU_LOAD_PLUGINS does not name it"}
               for name, dist in _LEFT_OUT.items()]
    return report
