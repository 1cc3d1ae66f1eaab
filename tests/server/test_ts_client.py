"""The TypeScript client in clients/typescript/ is current: regenerating it from the app changes nothing."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
STALE = "stale: run `.venv/bin/python scripts/gen_ts_client.py` (after `npm ci` in clients/typescript) and commit"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_ts_client", ROOT / "scripts" / "gen_ts_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_openapi_document_in_the_repo_is_the_apps() -> None:
    gen = _generator()
    assert (PACKAGE / "openapi.json").read_text(encoding="utf-8") == gen.render(gen.openapi_document()), STALE


def test_typescript_types_are_generated_from_it_and_compile(tmp_path: Path) -> None:
    gen = _generator()
    if not gen.GENERATOR.exists() or shutil.which("node") is None:
        pytest.skip("node and `npm ci` in clients/typescript are needed to regenerate the types")
    out = tmp_path / "schema.d.ts"
    gen.generate_types(PACKAGE / "openapi.json", out)
    assert out.read_text(encoding="utf-8") == (PACKAGE / "src" / "schema.d.ts").read_text(encoding="utf-8"), STALE
    tsc = subprocess.run([str(PACKAGE / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=PACKAGE,
                         capture_output=True, text=True)
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr
