"""Agent bundles for ``halguru publish``: an agent folder as one reproducible tar.gz with a manifest, and the
server's side, which opens one only after every entry checks out.

What goes in: every file under the folder except version-control and cache folders (``SKIPPED_DIRS``,
``SKIPPED_FILES``), the patterns in the folder's ``.halguruignore`` (one per line, matched against the path
and the file name), and secrets. A file *named* like a secret (``SECRET_NAMES``: ``.env``, keys, keystores,
keyring files) is left out and reported; a file that *holds* a private key under another name makes the
client refuse (a secret must never be uploaded by accident), and the server refuses any bundle with either.
Symbolic links are refused: a bundle is plain files.

The manifest (``MANIFEST``, the first entry) lists each file with its SHA-256, the agent's name, model, tools
and knowledge; the server checks that the entries are exactly those files with those hashes. The archive is
byte-for-byte reproducible (sorted entries, zeroed times and owners), so an unchanged folder has the same
bundle hash and publishing it again is a no-op.
"""

from __future__ import annotations

import collections
import fnmatch
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from halguru.errors import HalguruError

AGENT_FILE = "agent.yaml"  # as halguru.agents.loader names it (not imported: the CLI stays quick)
MANIFEST = ".halguru-bundle.json"
IGNORE_FILE = ".halguruignore"
FORMAT = 1
MAX_BUNDLE_BYTES = 20 * 1024 * 1024  # the tar.gz as uploaded
MAX_FILES_BYTES = 100 * 1024 * 1024  # all files, unpacked
MAX_FILES = 2000
MAX_NAME_BYTES = 255  # one file or folder name (NAME_MAX on Linux, macOS and Windows)
MAX_HEADER_BYTES = 64 * 1024  # a PAX or GNU long-name header (a path, a few attributes): read whole into memory
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache",
                          ".pytest_cache", ".ruff_cache", ".tox", ".idea", ".vscode", ".cache"})
SKIPPED_FILES = ("*.pyc", "*.pyo", ".DS_Store", "Thumbs.db", "*.swp", "*~")
SECRET_NAMES = (".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx", "id_rsa",
                "id_dsa", "id_ecdsa", "id_ed25519", ".netrc", ".pypirc", ".npmrc", ".git-credentials",
                "keyring_pass.cfg", "crypted_pass.cfg", "*.keyring", "credentials.json", "service-account*.json")
NOT_SECRETS = (".env.example", ".env.sample", ".env.template", ".env.dist")
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_SCAN_BYTES = 1024 * 1024  # files are scanned for private keys up to this size (and the first part of larger ones)


class BundleError(HalguruError):
    """A bundle that cannot be made or is refused; the message is one line for the publisher."""


@dataclass
class Bundle:
    data: bytes
    sha256: str
    manifest: dict[str, Any]
    left_out: list[str] = field(default_factory=list)  # secrets named as such, not packed


def secret_reason(path: str, head: bytes) -> str | None:
    """Why the file at ``path`` (posix, relative) holding ``head`` (its first bytes) is a secret, or None."""
    name = PurePosixPath(path).name
    if name not in NOT_SECRETS and any(fnmatch.fnmatchcase(name.lower(), p) for p in SECRET_NAMES):
        return f"{path} is a secret file by its name ({name})"
    if _PRIVATE_KEY.search(head):
        return f"{path} holds a private key"
    return None


def _ignored(rel: str, patterns: list[str], folder: bool = False) -> bool:
    """``.halguruignore``, the common part of .gitignore: ``name`` or ``*.log`` matches a file or folder of
    that name anywhere, ``name/`` a folder only, and a pattern with a ``/`` inside the path from the project's
    top (``data/raw``, ``/notes.txt``)."""
    parts = rel.split("/")
    for pattern in patterns:
        only_folders = pattern.endswith("/")
        pattern = pattern.strip("/")
        if not pattern or (only_folders and not folder):
            continue
        if "/" in pattern:
            if fnmatch.fnmatchcase(rel, pattern):
                return True
        elif fnmatch.fnmatchcase(parts[-1], pattern):
            return True
    return False


def _files(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files to pack (relative posix path, path) and the secrets left out; refuses links and unnamed keys.
    Skipped and ignored folders are not even entered (a .venv or node_modules can hold many thousand files)."""
    ignore = root / IGNORE_FILE
    patterns = [line.strip() for line in _text(ignore).splitlines()
                if line.strip() and not line.lstrip().startswith("#")] if ignore.is_file() else []
    packed: list[tuple[str, Path]] = []
    left_out: list[str] = []
    for folder, dirs, names in os.walk(root):
        base = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS
                         and not _ignored((base / d).relative_to(root).as_posix(), patterns, folder=True))
        for name in sorted(names) + [d for d in dirs if (base / d).is_symlink()]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise BundleError(f"{rel} is a symbolic link: a bundle holds plain files only (copy the file in, "
                                  f"or add it to {IGNORE_FILE})")
            if any(fnmatch.fnmatchcase(name, p) for p in SKIPPED_FILES) or _ignored(rel, patterns):
                continue
            if secret_reason(rel, b"") is not None:
                left_out.append(rel)
                continue
            with path.open("rb") as f:
                head = f.read(_SCAN_BYTES)
            if secret_reason(rel, head) is not None:
                raise BundleError(f"{rel} holds a private key: secrets are never published; move it out of the "
                                  f"folder or add it to {IGNORE_FILE} (the server reads secrets from its "
                                  "environment or keyring)")
            packed.append((rel, path))
        if len(packed) > MAX_FILES:
            counts = collections.Counter(rel.rpartition("/")[0] or "." for rel, _ in packed)
            most = ", ".join(f"{folder}/ {n}" for folder, n in counts.most_common(3))
            raise BundleError(f"{root}: more than {MAX_FILES} files; a bundle holds at most {MAX_FILES} (most: "
                              f"{most}; add folders to {IGNORE_FILE})")
    return sorted(packed), sorted(left_out)


def _entry(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), mode, 0, 0, 0, "", ""
    return info, io.BytesIO(data)


def make_bundle(project: Path) -> Bundle:
    """Pack the agent project at ``project`` (its folder or agent.yaml) with its manifest."""
    from halguru import __version__

    root = project.parent if project.name.endswith((".yaml", ".yml")) else project
    if not (root / AGENT_FILE).is_file():
        raise BundleError(f"{project}: not an agent project (a folder with {AGENT_FILE})")
    spec = _spec(root / AGENT_FILE)
    files, left_out = _files(root)
    total = sum(path.stat().st_size for _, path in files)
    if total > MAX_FILES_BYTES:
        raise BundleError(f"{root}: {total // 1_000_000} MB of files; a bundle holds at most "
                          f"{MAX_FILES_BYTES // 1_000_000} MB ({_largest(files)}; add large files to "
                          f"{IGNORE_FILE})")
    contents = {rel: path.read_bytes() for rel, path in files}
    manifest = {"format": FORMAT, "agent": spec["name"], "model": str(spec.get("model", "")),
                "tools": _names(spec.get("tools")), "http_tools": _names(spec.get("http_tools")),
                "mcp": _names(spec.get("mcp")), "knowledge": _names(spec.get("knowledge")), "halguru": __version__,
                "files": {rel: hashlib.sha256(data).hexdigest() for rel, data in contents.items()}}
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w",
                                                                            format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(*_entry(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()))
        for rel, path in files:
            tar.addfile(*_entry(rel, contents[rel], 0o755 if path.stat().st_mode & 0o111 else 0o644))
    data = raw.getvalue()
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"the bundle is {len(data) // 1_000_000} MB; at most {MAX_BUNDLE_BYTES // 1_000_000} MB "
                          f"can be published ({_largest(files)}; add large files to {IGNORE_FILE})")
    return Bundle(data, hashlib.sha256(data).hexdigest(), manifest, left_out)


def _largest(files: list[tuple[str, Path]]) -> str:
    """The three largest files, as the refusal of a bundle too large names them (what to move out or ignore)."""
    sizes = sorted(((path.stat().st_size, rel) for rel, path in files), reverse=True)[:3]
    return "largest: " + ", ".join(f"{rel} {_mb(size)}" for size, rel in sizes)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.0f} kB"


def _text(path: Path) -> str:
    """A text file publish reads (agent.yaml, .halguruignore); one not UTF-8 (Notepad's UTF-16, Latin-1) or
    unreadable is one line, as `halguru validate` says it (it was a traceback)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        from halguru.yamlfile import not_utf8

        raise BundleError(not_utf8(path, exc)) from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _spec(path: Path) -> dict[str, Any]:
    """What the manifest names, read from agent.yaml as plain YAML: the server checks the spec itself (and the
    CLI stays quick: the spec's models cost most of a second to import)."""
    import yaml

    try:
        spec = yaml.safe_load(_text(path))
    except yaml.YAMLError as exc:
        raise BundleError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BundleError(f"{path}: needs a name: (and the rest of an agent; `halguru validate` checks it)")
    return spec


def _names(value: Any) -> list[str]:
    """Names listed in agent.yaml: strings, or mappings with a ``name`` (HTTP tools, MCP servers)."""
    items = value if isinstance(value, list) else []
    return [str(i.get("name")) if isinstance(i, dict) else str(i) for i in items]


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (bool(name) and "\\" not in name and "\x00" not in name and not path.is_absolute()
            and ".." not in path.parts and str(path) == name and ":" not in path.parts[0])


def open_bundle(data: bytes, dest: Path, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, Any]:
    """Check the bundle ``data`` and unpack it into the empty folder ``dest``; its manifest. Refused (one line):
    too large, not a tar.gz, an entry that is not a plain file or whose path leaves the folder, a file the
    manifest does not list or whose hash differs, a missing file, a secret."""
    if len(data) > max_bytes:
        raise BundleError(f"the bundle is {len(data)} bytes; this server takes at most {max_bytes}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz", tarinfo=_BoundedTarInfo) as tar:
            return _unpack(tar, dest)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"not a halguru bundle (a tar.gz made by `halguru publish`): {exc}") from None


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses an extended header (PAX, GNU long name) larger than MAX_HEADER_BYTES, or a chain of them longer
    than a file needs, before tarfile reads it: a 1 MB upload could otherwise declare a 1 GB header, which
    tarfile reads into memory whole, and each chained header is one more level of recursion."""

    _EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                 tarfile.GNUTYPE_LONGLINK)

    def _proc_member(self, tarfile: Any) -> Any:
        if self.type in self._EXTENDED:
            chain = getattr(tarfile, "_halguru_chain", 0) + 1
            tarfile._halguru_chain = chain
            if self.size > MAX_HEADER_BYTES or chain > 8:
                raise BundleError(f"the bundle's extended tar headers are too large ({self.size} bytes) or too "
                                  f"many in a row; `halguru publish` writes headers of at most {MAX_HEADER_BYTES}")
        else:
            tarfile._halguru_chain = 0
        return super()._proc_member(tarfile)  # type: ignore[misc]


def _unpack(tar: tarfile.TarFile, dest: Path) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    seen: dict[str, str] = {}
    folders: set[str] = set()  # the folders the entries so far are in
    total = 0
    for member in tar:
        if not _safe_name(member.name):
            raise BundleError(f"entry {member.name!r} is refused: paths must stay inside the agent folder")
        if not member.isreg():
            raise BundleError(f"entry {member.name!r} is refused: a bundle holds plain files only (no links, "
                              "devices or folders)")
        total += member.size
        if len(seen) >= MAX_FILES or total > MAX_FILES_BYTES:
            raise BundleError(f"the bundle unpacks to more than {MAX_FILES} files or {MAX_FILES_BYTES} bytes")
        extracted = tar.extractfile(member)
        content = extracted.read() if extracted is not None else b""
        if member.name == MANIFEST:
            if manifest is not None:
                raise BundleError(f"the bundle holds two manifests ({MANIFEST})")
            manifest = _manifest(content)
            continue
        if member.name in seen:
            raise BundleError(f"entry {member.name!r} appears twice")
        reason = secret_reason(member.name, content[:_SCAN_BYTES])
        if reason is not None:
            raise BundleError(f"bundle refused: {reason}; secrets are never published (the server reads them "
                              "from its environment or keyring)")
        _check_path(member.name, seen, folders)
        seen[member.name] = hashlib.sha256(content).hexdigest()
        folders.update(str(p) for p in PurePosixPath(member.name).parents)
        target = dest / member.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o755 if member.mode & 0o111 else 0o644)
        except OSError as exc:  # what the checks above do not foresee (a path too long for this filesystem)
            raise BundleError(f"entry {_shown(member.name)} cannot be unpacked: {exc.strerror or exc}") from None
    if manifest is None:
        raise BundleError(f"the bundle has no manifest ({MANIFEST}); make it with `halguru publish`")
    listed: dict[str, str] = manifest["files"]
    for name in sorted(set(listed) | set(seen)):
        if name not in seen:
            raise BundleError(f"the manifest lists {name} but the bundle does not hold it")
        if name not in listed:
            raise BundleError(f"{name} is in the bundle but not in its manifest")
        if listed[name] != seen[name]:
            raise BundleError(f"{name}: its SHA-256 is not the manifest's (the bundle was changed after it was made)")
    return manifest


def _shown(name: str) -> str:
    """An entry's name in an error, quoted, a long one cut: the line stays one readable line."""
    return repr(name if len(name) <= 60 else name[:40] + "…" + name[-10:])


def _check_path(name: str, files: Mapping[str, str], folders: set[str]) -> None:
    """Refuse a path that a filesystem cannot hold or that clashes with another entry: a file and a folder
    of one name, or a name over NAME_MAX (these were `[Errno 17] File exists` and `[Errno 36]`)."""
    path = PurePosixPath(name)
    long = next((part for part in path.parts if len(part.encode()) > MAX_NAME_BYTES), None)
    if long is not None:
        raise BundleError(f"entry {_shown(name)} is refused: a name in its path is {len(long.encode())} bytes "
                          f"long; a file or folder name has at most {MAX_NAME_BYTES}")
    if name in folders:
        raise BundleError(f"entry {_shown(name)} is refused: the bundle also holds a folder of that name")
    clash = next((str(p) for p in path.parents if str(p) in files), None)
    if clash is not None:
        raise BundleError(f"entry {_shown(name)} is refused: the bundle also holds a file {_shown(clash)} "
                          "where it needs a folder")


def _manifest(content: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(content)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in manifest["files"].items()):
        raise BundleError(f"the bundle's manifest ({MANIFEST}) is not valid: it must hold files: {{path: sha256}}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle format {manifest.get('format')!r} is not one this server reads ({FORMAT}); "
                          "publish with the server's halguru version")
    return manifest
