"""The TypeScript client in clients/typescript/ is current: regenerating it from the app changes nothing."""

from __future__ import annotations

import importlib.util
import json
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


def test_typescript_client_streams_an_answer_from_a_real_server(tmp_path: Path, serve, api_key) -> None:
    """examples/stream.ts, compiled and run with node: the tokens as they come, then run_finished's status.
    A streamed answer threw a JSON SyntaxError in openapi-fetch, and the client had no way to read its events."""
    if not (PACKAGE / "node_modules" / ".bin" / "tsc").exists() or shutil.which("node") is None:
        pytest.skip("node and `npm ci` in clients/typescript are needed to run the client")
    out = tmp_path / "js"
    subprocess.run([str(PACKAGE / "node_modules" / ".bin" / "tsc"), "src/index.ts", "examples/stream.ts",
                    "--outDir", str(out), "--module", "commonjs", "--moduleResolution", "node10", "--target", "ES2022",
                    "--skipLibCheck"], cwd=PACKAGE, check=True, capture_output=True)
    (out / "package.json").write_text('{"type": "commonjs"}')
    (out / "node_modules").symlink_to(PACKAGE / "node_modules")
    server = serve()
    script = ("require('./examples/stream.js').streamed(process.argv[1], process.argv[2], 'slow', 'go')"
              ".then((seen) => console.log(JSON.stringify(seen)))")
    ran = subprocess.run(["node", "-e", script, server.url, api_key()], cwd=out, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert len(seen) > 10 and seen[-1] == "[ok]" and "".join(seen[:-1]).split() == [f"word{i}" for i in range(40)]
