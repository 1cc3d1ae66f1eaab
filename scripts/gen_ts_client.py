"""Regenerate the TypeScript client in clients/typescript/ from the server's OpenAPI document.

    .venv/bin/python scripts/gen_ts_client.py     # writes openapi.json, then (with node) src/schema.d.ts

openapi.json is the app's /openapi.json (built in-process, in a throwaway HALGURU_HOME, with no agents but a
placeholder: the routes do not depend on them), pretty-printed with sorted keys and without the version, so
it changes only when the API does. src/schema.d.ts comes from openapi-typescript (pinned in package.json;
`npm ci` in clients/typescript first). tests/server/test_ts_client.py checks that both are current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clients" / "typescript"
GENERATOR = PACKAGE / "node_modules" / ".bin" / "openapi-typescript"


def openapi_document() -> dict[str, Any]:
    """The server's OpenAPI document, as /openapi.json serves it, less ``info.version``."""
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("HALGURU_HOME")
        os.environ["HALGURU_HOME"] = str(Path(tmp) / "home")
        try:
            from halguru_server import ServerSettings, create_app

            agent = Path(tmp) / "agents" / "placeholder"
            agent.mkdir(parents=True)
            (agent / "agent.yaml").write_text("name: placeholder\nmodel: scripted\ninstructions: x\n")
            document = create_app(ServerSettings(agents=[agent], worker=False, keep_mcp_servers=False)).openapi()
        finally:
            if old is None:
                os.environ.pop("HALGURU_HOME", None)
            else:
                os.environ["HALGURU_HOME"] = old
    document["info"].pop("version", None)
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate_types(spec: Path, out: Path) -> None:
    """openapi-typescript ``spec`` → ``out`` (needs ``npm ci`` in clients/typescript). A field with a default is
    optional in a request (by default openapi-typescript makes it required: the README's
    ``{ body: { agent: "basic" } }`` did not compile for want of a title)."""
    subprocess.run([str(GENERATOR), str(spec), "-o", str(out), "--default-non-nullable", "false"], check=True,
                   capture_output=True, cwd=PACKAGE)


def main() -> int:
    (PACKAGE / "openapi.json").write_text(render(openapi_document()), encoding="utf-8")
    if not GENERATOR.exists():
        print("openapi.json written; run `npm ci` in clients/typescript for src/schema.d.ts", file=sys.stderr)
        return 1
    generate_types(PACKAGE / "openapi.json", PACKAGE / "src" / "schema.d.ts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
