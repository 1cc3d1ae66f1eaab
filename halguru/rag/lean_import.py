"""Import LanceDB without loading its REST namespace client until something asks for it.

``import lancedb`` (0.40) imports ``lance_namespace``, which imports the package of its generated REST client;
that package's ``__init__`` loads every API class (hundreds of pydantic models and endpoints: about a second of
a CLI search's wall time), though a local base never talks REST. Here the client's package is placed in
``sys.modules`` as an empty package over the same folder: its submodules (the request/response models that
``lance_namespace`` names) import as usual, and the first attribute asked of the package itself (a remote
connection's ``ApiClient``) runs its real ``__init__`` then. Invariant: every name the real package has is there
when asked for; only the time at which it loads changes.

On Python 3.11 LanceDB also decorates ~100 methods with the ``overrides`` package's ``@override``, which checks
each against its base class by disassembling the class body's bytecode at import: ~0.3 s of a CLI search here.
On 3.12 and later LanceDB uses ``typing.override`` (it only marks the method) and an empty ``EnforceOverrides``
instead; while LanceDB imports, this module lends it that same pair (``typing_extensions.override``, the
backport), so it imports as it does on 3.12. Only LanceDB's own modules bind them: ``overrides`` is back in
place for anything imported afterwards.

The REST client's request/response models (about 200 pydantic models that ``lance_namespace`` imports) are
created with pydantic's ``defer_build``: each builds its validator at its first use instead of at import (~0.25 s
of a CLI search here; a local base never uses them). Pydantic merges ``BaseModel.model_config`` into every new
model's, so it carries the flag while LanceDB imports and is put back after.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

CLIENT = "lance_namespace_urllib3_client"


# One import at a time: the loans above are process-wide, and a second thread that entered while the first held
# them saved the patched config as the original (pydantic's "multiple values for keyword argument 'defer_build'",
# a 500 to concurrent first requests of `serve`) or put a loan back for good.
_IMPORTING = threading.Lock()
_LOADED: list[Any] = []  # the module once imported: later calls take no lock


def lancedb() -> Any:
    """The ``lancedb`` module, imported with the REST client's package deferred (thread-safe)."""
    if _LOADED:
        return _LOADED[0]
    with _IMPORTING:
        if "lancedb" not in sys.modules:
            if CLIENT not in sys.modules:
                _defer_client()
            with _overrides_as_on_312(), _models_built_when_first_used():
                import lancedb as module
        import lancedb as module

        _LOADED[:] = [module]
    return module


@contextlib.contextmanager
def _models_built_when_first_used() -> Iterator[None]:
    from pydantic import BaseModel, ConfigDict

    saved = BaseModel.model_config
    BaseModel.model_config = ConfigDict(**{**saved, "defer_build": True})
    try:
        yield
    finally:
        BaseModel.model_config = saved


@contextlib.contextmanager
def _overrides_as_on_312() -> Iterator[None]:
    if sys.version_info >= (3, 12):  # LanceDB does not import overrides there
        yield
        return
    from typing_extensions import override

    shim = types.ModuleType("overrides")
    shim.override = override  # type: ignore[attr-defined]
    shim.EnforceOverrides = type("EnforceOverrides", (), {})  # type: ignore[attr-defined]
    saved = sys.modules.get("overrides")
    sys.modules["overrides"] = shim
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("overrides", None)
        else:
            sys.modules["overrides"] = saved


def _defer_client() -> None:
    spec = importlib.util.find_spec(CLIENT)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType(CLIENT)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    loading: list[bool] = []

    def load_rest_client(name: str) -> Any:
        if loading or name.startswith("__"):
            raise AttributeError(name)
        loading.append(True)
        assert spec.loader is not None
        spec.loader.exec_module(package)  # the real __init__, into this same module object
        return package.__dict__[name] if name in package.__dict__ else getattr(package, name)

    package.__getattr__ = load_rest_client  # type: ignore[method-assign]
    sys.modules[CLIENT] = package
