"""A CycloneDX 1.5 (JSON) bill of materials: the Python packages of an environment and, on Debian, the dpkg
packages installed. The image's build writes /opt/halguru/sbom.cdx.json with

    python -m halguru.deploy.sbom --dpkg --revision REV > sbom.cdx.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

DPKG_STATUS = Path("/var/lib/dpkg/status")


def _license(metadata: Any) -> list[dict[str, Any]]:
    expression = metadata.get("License-Expression")
    if expression:
        return [{"expression": expression}]
    names = [c.split(" :: ")[-1] for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    text = (metadata.get("License") or "").strip()
    if not names and text and "\n" not in text and len(text) < 80:
        names = [text]
    return [{"license": {"name": n}} for n in names]


def python_components() -> list[dict[str, Any]]:
    """One component per installed distribution of this interpreter's environment (pkg:pypi purls)."""
    from importlib.metadata import distributions

    found: dict[str, dict[str, Any]] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        purl = f"pkg:pypi/{re.sub(r'[-_.]+', '-', name).lower()}@{quote(dist.version)}"
        component: dict[str, Any] = {"type": "library", "bom-ref": purl, "name": name, "version": dist.version,
                                     "purl": purl}
        licenses = _license(dist.metadata)
        if licenses:
            component["licenses"] = licenses
        found[purl] = component
    return [found[k] for k in sorted(found)]


def dpkg_components(status: Path = DPKG_STATUS) -> list[dict[str, Any]]:
    """The installed Debian packages (pkg:deb purls), from dpkg's status file."""
    found: list[dict[str, Any]] = []
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", stanza, re.M))
        if not fields.get("Package") or "installed" not in fields.get("Status", "").split():
            continue
        name, version, arch = fields["Package"], fields.get("Version", ""), fields.get("Architecture", "all")
        purl = f"pkg:deb/debian/{name}@{quote(version)}?arch={arch}"
        found.append({"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl})
    return sorted(found, key=lambda c: c["purl"])


def bom(components: list[dict[str, Any]], name: str, version: str, revision: str | None) -> dict[str, Any]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    subject: dict[str, Any] = {"type": "container", "bom-ref": name, "name": name, "version": version}
    if revision:
        subject["properties"] = [{"name": "org.opencontainers.image.revision", "value": revision}]
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": f"urn:uuid:{uuid.uuid4()}",
            "version": 1, "metadata": {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       "tools": {"components": [{"type": "application",
                                                                 "name": "halguru.deploy.sbom"}]},
                                       "component": subject},
            "components": components}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpkg", action="store_true", help="also the Debian packages (dpkg's status file)")
    parser.add_argument("--name", default="halguru")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("--revision", default=None)
    args = parser.parse_args(argv)
    components = python_components() + (dpkg_components() if args.dpkg else [])
    json.dump(bom(components, args.name, args.version, args.revision), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
