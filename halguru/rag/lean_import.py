"""Import LanceDB without loading its REST namespace client until something asks for it.

``import lancedb`` (0.40) imports ``lance_namespace``, which imports the package of its generated REST client;
that package's ``__init__`` loads every API class (hundreds of pydantic models and endpoints: about a second of
a CLI search's wall time), though a local base never talks REST. Here the client's package is placed in
``sys.modules`` as an empty package over the same folder: its submodules (the request/response models that
``lance_namespace`` names) import as usual, and the first attribute asked of the package itself (a remote
connection's ``ApiClient``) runs its real ``__init__`` then. Invariant: every name the real package has is there
when asked for; only the time at which it loads changes.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

CLIENT = "lance_namespace_urllib3_client"


def lancedb() -> Any:
    """The ``lancedb`` module, imported with the REST client's package deferred."""
    if "lancedb" not in sys.modules and CLIENT not in sys.modules:
        _defer_client()
    import lancedb as module

    return module


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
