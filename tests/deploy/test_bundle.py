"""`halguru publish`'s bundles as a user's folder makes them: reproducible (an unchanged folder is the same
bundle), caches and .halguruignore left out, secrets left out by name and refused by content, links refused,
and the server's unpacking giving back exactly the files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from halguru.deploy.bundle import BundleError, make_bundle, open_bundle


def project(root: Path) -> Path:
    (root / "knowledge").mkdir(parents=True)
    (root / "agent.yaml").write_text("name: shop\nmodel: scripted\ntools: [lookup]\nknowledge: [knowledge]\n"
                                     "http_tools: [{name: orders, url: 'https://x.example'}]\n")
    (root / "tools.py").write_text("# tools\n")
    (root / "knowledge" / "faq.md").write_text("# FAQ\n")
    return root


def test_an_unchanged_folder_is_the_same_bundle(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    first = make_bundle(root)
    os.utime(root / "tools.py", (1, 1))  # times and owners are not in the bundle
    assert make_bundle(root).sha256 == first.sha256
    (root / "tools.py").write_text("# tools, changed\n")
    assert make_bundle(root).sha256 != first.sha256
    assert first.manifest["agent"] == "shop" and first.manifest["tools"] == ["lookup"]
    assert first.manifest["http_tools"] == ["orders"] and first.manifest["knowledge"] == ["knowledge"]


def test_caches_ignored_paths_and_secret_names_stay_out(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    for folder in (".git", ".venv/lib", "node_modules/x", "__pycache__", "data/raw", "logs"):
        (root / folder).mkdir(parents=True)
        (root / folder / "f.txt").write_text("x")
    for name in (".env", ".env.local", "server.pem", "id_ed25519", "deploy.key", "credentials.json"):
        (root / name).write_text("s")
    (root / ".env.example").write_text("SHOP_TOKEN=\n")
    (root / "debug.log").write_text("x")
    (root / ".halguruignore").write_text("# local only\n*.log\nlogs/\ndata/raw\n")
    bundle = make_bundle(root)
    assert sorted(bundle.manifest["files"]) == [".env.example", ".halguruignore", "agent.yaml", "knowledge/faq.md",
                                                "tools.py"]
    assert bundle.left_out == [".env", ".env.local", "credentials.json", "deploy.key", "id_ed25519", "server.pem"]

    out = tmp_path / "unpacked"
    out.mkdir()
    assert open_bundle(bundle.data, out) == bundle.manifest
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        bundle.manifest["files"])
    assert (out / "knowledge" / "faq.md").read_text() == "# FAQ\n"


def test_keys_under_other_names_and_links_are_refused(tmp_path: Path) -> None:
    root = project(tmp_path / "shop")
    (root / "notes.txt").write_text("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n")
    with pytest.raises(BundleError, match=r"notes\.txt holds a private key"):
        make_bundle(root)
    (root / "notes.txt").unlink()
    (root / "shared").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(BundleError, match="shared is a symbolic link"):
        make_bundle(root)
    (root / "shared").unlink()
    (root / "agent.yaml").write_text("just: words\n")
    with pytest.raises(BundleError, match="needs a name"):
        make_bundle(root)
    with pytest.raises(BundleError, match="not an agent project"):
        make_bundle(tmp_path / "nowhere")
