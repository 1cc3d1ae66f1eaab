"""A search loads LanceDB without its REST namespace client (a second of a CLI search), which still loads
in full the moment something asks for it; the client's models are built at their first use, and LanceDB's
``@override`` marks its methods as on Python 3.12, without changing pydantic or ``overrides`` for anyone else."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from halguru import rag
rag.create("docs")
rag.ingest("docs", [sys.argv[1]])
hits = rag.search("docs", "how long do refunds take", k=1)
print(hits[0].source)
print("rest api loaded:", "lance_namespace_urllib3_client.api" in sys.modules)
import lance_namespace_urllib3_client as client
print("client:", client.ApiClient.__name__, client.Configuration.__name__)
# The REST models were built lazily, and still validate; nothing else is left deferred or replaced.
from lance_namespace_urllib3_client.models import DescribeTableRequest
print("deferred:", DescribeTableRequest.__pydantic_complete__, DescribeTableRequest(id=["a", "b"]).id)
import pydantic
class Later(pydantic.BaseModel):
    x: int
print("later:", Later.__pydantic_complete__, "defer_build" in pydantic.BaseModel.model_config)
import overrides
print("overrides:", getattr(overrides, "__file__", None) is not None)  # the package itself, not the loan
"""


def test_search_does_not_import_the_rest_client_until_asked(tmp_path, subprocess_env):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "faq.txt").write_text("Refunds take fourteen days.\n")
    (folder / "guide.md").write_text("# Install\n\nRun pipx install halguru.\n")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], env=subprocess_env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["docs/faq.txt", "rest api loaded: False", "client: ApiClient Configuration",
                                       "deferred: False ['a', 'b']", "later: True False", "overrides: True"]


IMPORT_RACE = """
import contextlib, sys, threading, time
from halguru.rag import lean_import

patched = lean_import._models_built_when_first_used

@contextlib.contextmanager
def slow():  # widens the window in which the first import holds the process-wide loans
    with patched():
        time.sleep(0.3)
        yield

lean_import._models_built_when_first_used = slow
start, errors, modules = threading.Barrier(4), [], []

def load():
    start.wait()
    try:
        modules.append(lean_import.lancedb())
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=load) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
import pydantic
print("errors:", errors)
print("modules:", len({id(m) for m in modules}), all(hasattr(m, "connect") for m in modules))
print("defer_build left:", "defer_build" in pydantic.BaseModel.model_config)
overrides = sys.modules.get("overrides")
print("overrides shim left:", overrides is not None and getattr(overrides, "__file__", None) is None)
"""


def test_lancedb_imported_from_several_threads_at_once(subprocess_env):
    """Concurrent first requests to `serve` imported LanceDB from several threads: one saw the other's patched
    pydantic config (TypeError: multiple values for keyword argument 'defer_build', a 500) or left it patched."""
    out = subprocess.run([sys.executable, "-c", IMPORT_RACE], env=subprocess_env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["errors: []", "modules: 1 True", "defer_build left: False",
                                       "overrides shim left: False"]
