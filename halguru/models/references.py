"""Model references as an agent.yaml writes them: resolved against the agent's folder, and checked.

A relative path in a reference (``model: model.gguf``, ``llama-cpp:models/x.gguf``, ``scripted:s.yaml``) is
relative to the folder of the agent.yaml that names it, never to the current directory: ``resolve_reference``
makes it absolute. A provider says its argument is a path with ``path_argument = True``; ``check(entry)``, when
a provider has it, is what ``halguru validate`` asks of a model before any run (the file is there and whole).
"""

from __future__ import annotations

from pathlib import Path

from halguru.errors import HalguruError
from halguru.models.base import ModelEntry
from halguru.models.registry import check_entry, find_entry, list_models, providers


def resolve_reference(reference: str, base: Path) -> str:
    """``reference`` with a relative path argument made absolute against ``base`` (other references as given)."""
    if reference in {e.name for e in list_models()}:
        return reference
    known = providers()
    prefix, sep, argument = reference.partition(":")
    if sep and prefix in known:
        if not getattr(known[prefix], "path_argument", False) or not argument:
            return reference
        return f"{prefix}:{_absolute(argument, base)}"
    if reference.endswith(".gguf"):
        return _absolute(reference, base)
    return reference


def _absolute(argument: str, base: Path) -> str:
    path = Path(argument).expanduser()
    return argument if path.is_absolute() else str(base.resolve() / path)


def check_model(reference: str) -> ModelEntry:
    """The model's entry, once its provider's ``check`` passed (a ModelError if not)."""
    entry = find_entry(reference)
    check_entry(entry)
    return entry


def option_reference(reference: str | None) -> str | None:
    """A command line's model reference with a relative path made absolute against the current folder, where
    whoever typed it is: a run stores it, and approving or resuming that run from another folder must still
    find ``scripted:script.yaml`` or ``model.gguf``."""
    return None if reference is None else resolve_reference(reference, Path.cwd())


def check_model_option(reference: str | None, option: str = "--model") -> None:
    """Refuse a command line's model reference up front, as one line naming the option (an interactive
    command, `halguru chat` or `halguru dev`, would otherwise start and fail at every message)."""
    if reference is None:
        return
    try:
        check_model(reference)
    except HalguruError as exc:
        raise HalguruError(f"{option}: {exc}") from None
