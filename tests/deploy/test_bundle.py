"""`halguru publish`'s bundles as a user's folder makes them: reproducible (an unchanged folder is the same
bundle), caches and .halguruignore left out, secrets left out by name and refused by content, links refused,
and the server's unpacking giving back exactly the files."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
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


def test_files_not_in_utf8_are_one_line(tmp_path: Path) -> None:
    """agent.yaml in Latin-1 and a .halguruignore saved as UTF-16 (Notepad) were tracebacks."""
    root = project(tmp_path / "shop")
    (root / ".halguruignore").write_text("*.log\n", encoding="utf-16")
    with pytest.raises(BundleError, match=r"\.halguruignore: not UTF-8 text \(byte 0xff at line 1\); save it as"):
        make_bundle(root)
    (root / ".halguruignore").unlink()
    (root / "agent.yaml").write_bytes(b"name: shop\nmodel: scripted\ninstructions: caf\xe9\n")
    with pytest.raises(BundleError, match=r"agent\.yaml: not UTF-8 text \(byte 0xe9 at line 3\)"):
        make_bundle(root)


def _tar_gz(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        for info, payload in entries:
            gz.write(info.tobuf(tarfile.USTAR_FORMAT))
            if payload is not None:
                gz.write(payload + b"\0" * (-len(payload) % 512))
    return raw.getvalue()


def test_a_huge_or_endless_extended_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A 1 MB upload declaring a 1 GB PAX header (the zeros compress away) was read whole into memory."""
    import resource

    huge = tarfile.TarInfo("././@PaxHeader")
    huge.type, huge.size = tarfile.XHDTYPE, 1 << 30
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as gz:
        gz.write(huge.tobuf(tarfile.USTAR_FORMAT))
        zeros = b"\0" * (1 << 20)
        for _ in range(1024):
            gz.write(zeros)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BundleError, match="extended tar headers are too large"):
        open_bundle(raw.getvalue(), tmp_path / "a")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nowhere near 1 GB
    chained = []
    for _ in range(5000):  # header after header, each naming the next: recursed once each
        long_name = tarfile.TarInfo("././@LongLink")
        long_name.type, long_name.size = tarfile.GNUTYPE_LONGNAME, 10
        chained.append((long_name, b"x" * 10))
    with pytest.raises(BundleError, match="too many"):
        open_bundle(_tar_gz(*chained), tmp_path / "b")


@pytest.mark.parametrize(("names", "error"), [
    (["a", "a/b"], "entry 'a/b' is refused: the bundle also holds a file 'a' where it needs a folder"),
    (["a/b", "a"], "entry 'a' is refused: the bundle also holds a folder of that name"),
    (["d/" + "n" * 256 + "/x"], "entry 'd/nnn"),
    (["é" * 128], "is 256 bytes long; a file or folder name has at most 255"),
])
def test_entries_a_folder_cannot_hold_are_refused_by_name(tmp_path: Path, names: list[str], error: str) -> None:
    """A file and a folder of one name, or a name over 255 bytes, were `[Errno 17] File exists: 'a'` and
    `[Errno 36] File name too long` after the bundle's first files were written."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w",
                                                                   format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BundleError) as caught:
        open_bundle(raw.getvalue(), tmp_path)
    message = str(caught.value)
    assert error in message and "Errno" not in message and len(message) < 200, message


def test_a_folder_too_large_to_publish_names_what_makes_it_so(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle over the limit said only its size and "add large files to .halguruignore": which ones (a model
    file, an export left in data/) the user had to find with du."""
    from halguru.deploy import bundle

    root = project(tmp_path / "shop")
    (root / "data").mkdir()
    (root / "data" / "export.csv").write_bytes(os.urandom(300_000))
    (root / "model.bin").write_bytes(os.urandom(1_200_000))
    monkeypatch.setattr(bundle, "MAX_BUNDLE_BYTES", 1_000_000)
    with pytest.raises(BundleError) as refused:
        make_bundle(root)
    assert "largest: model.bin 1.2 MB, data/export.csv 0.3 MB, agent.yaml" in str(refused.value)
    assert "add large files to .halguruignore" in str(refused.value)

    monkeypatch.setattr(bundle, "MAX_FILES_BYTES", 1_000_000)  # unpacked: refused before it is packed
    with pytest.raises(BundleError, match=r"1 MB of files; .*\(largest: model\.bin 1\.2 MB, data/export"):
        make_bundle(root)

    for i in range(12):
        (root / "knowledge" / f"page{i}.md").write_text("x\n")
    monkeypatch.setattr(bundle, "MAX_FILES", 10)
    with pytest.raises(BundleError, match=r"at most 10 \(most: knowledge/ 13, \./ \d+.*; add folders to"):
        make_bundle(root)
