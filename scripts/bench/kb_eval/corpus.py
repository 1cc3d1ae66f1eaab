"""The evaluation corpora, extracted at bench time from what every machine of this kind has.

- ``pydoc``: pydoc's plain text of the labelled modules plus other stdlib modules (upper-case sections,
  no Markdown), each page capped at ``PAGE_CHARS``.
- ``man``: the manual pages listed in ``man_pages.txt`` (Debian base tools), rendered by ``man`` at 80
  columns; pages missing on this machine are left out and counted.
- ``code``: standard-library source files, the labelled ones plus others in name order.
- ``info``: the nodes of GNU info manuals (coreutils, grep, sed, findutils, diffutils, wget, gzip), one file per
  node (``coreutils/tac invocation.txt``): reference sections with underlined numbered titles, a kind of text none
  of the defaults were tuned on. Index and licence nodes are left out.
- ``html``: HTML reference pages as Debian ships them (Node.js API, Valgrind manual, libxslt and libexslt
  manuals and API reference, libffi manual, Expat reference, shared-mime-info spec), copied unchanged
  (``nodejs/fs.html``) so that halguru's own HTML loader reads them. Index, table-of-contents and licence pages
  and the second rendering of libxslt's API are left out; packages missing on this machine are left out and counted.
- ``md``: Markdown reference pages as this machine ships them (npm's documentation with YAML front matter, buildah's
  manual pages with md2man ``# name "1"`` titles, one a pandoc ``%`` block, and its tutorials, podman's guides,
  docker-registry's configuration and specifications, pip's topic and reference pages (its reStructuredText pages are
  not Markdown and are left out), containerd's docs), copied unchanged, gzipped ones still
  gzipped (``buildah/buildah-run.1.md.gz``), so that halguru's own loader reads them. Changelogs and release notes,
  licences, contributing, security and governance files, translations and pages that only link to others are left
  out; collections missing on this machine are left out and counted.
- ``admin``: manual pages of sections 5 and 8 (configuration-file formats and administration commands: apt, dpkg,
  e2fsprogs, PAM, shadow, iproute2, iptables, systemd, containers, caddy, git's file formats...) listed in
  ``admin_pages.txt``, rendered like ``man``'s, one file per page named ``NAME.SECTION.txt`` so that a label is
  ``NAME.SECTION`` (``adduser.8``, ``adduser.conf.5``, ``config.5ssl``): always with its section, so that names
  both sections use (faillog, hwclock: one of each is listed now) can never clash. Chosen once, by rule: no ``.so``
  links, no stubs (under 1,200 rendered characters), no page already in ``man_pages.txt``, no byte-identical
  copies, no D-Bus API pages (``org.freedesktop.*``), none over 140,000 characters (nft, systemd.exec, proc: one
  would be 5% of the corpus); then the largest first, at most 15 pages of one Debian package and 12 of one family
  (the name up to its first ``-``, ``_``, ``.`` or ``@``: ``tc-*``, ``pam_*``, ``deb-*``). Pages missing on this
  machine are left out and counted.

Rendered corpora are cached under ``~/.cache/halguru-bench`` (rendering ~300 man pages takes a while).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import importlib.util
import os
import pkgutil
import pydoc
import re
import shutil
import subprocess
import sys
import sysconfig
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kb_eval.questions import SETS

CACHE = Path(os.environ.get("HALGURU_BENCH_CACHE", Path.home() / ".cache" / "halguru-bench"))
PAGE_CHARS = 30_000
SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "test"}


def build(name: str, pages: int) -> tuple[Path, dict[str, str]]:
    """The corpus folder for set ``name`` and label -> source (as citations name it) for its documents."""
    folder = CACHE / f"{name}-{pages}"
    builders = {"pydoc": _pydoc, "man": _man, "code": _code, "info": _info, "html": _html,
                "md": _md, "admin": _admin}
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        builders[name](folder, pages)
        (folder / ".complete").write_text("ok")
    sources = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.name != ".complete":
            sources[_label(name, path.relative_to(folder))] = f"{folder.name}/{path.relative_to(folder).as_posix()}"
    return folder, sources


def copies(folder: Path) -> dict[str, str]:
    """source -> the first source (by name) with byte-identical content: a page under several names (man's
    ``gzip``, ``gunzip``, ``zcat``) is one document, so returning any copy of a labelled page answers the question,
    and nDCG counts the copies once."""
    groups: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".complete":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            groups.setdefault(digest, []).append(f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return {source: group[0] for group in groups.values() for source in group}


def _label(name: str, relative: Path) -> str:
    if name == "code":
        return relative.as_posix()
    if name in ("info", "html"):
        return relative.as_posix().rsplit(".", 1)[0]
    if name == "md":
        return _MD_SUFFIX.sub("", relative.as_posix())
    return relative.name.rsplit(".", 1)[0]


def _labels(name: str) -> list[str]:
    return sorted({label for _, labels in SETS[name] for label in labels})


def _pydoc(folder: Path, pages: int) -> None:
    warnings.simplefilter("ignore")
    labelled = [m for m in _labels("pydoc") if importlib.util.find_spec(m) is not None]
    stdlib = sorted({m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")} & sys.stdlib_module_names)
    written = 0
    for module in labelled + [m for m in stdlib if m not in labelled]:
        if written >= pages:
            break
        if module in SKIP_MODULES:
            continue
        try:
            text = pydoc.plain(pydoc.render_doc(module, renderer=pydoc.plaintext))
        except Exception:  # a module that cannot import here is simply not in the corpus
            continue
        (folder / f"{module}.txt").write_text(text[:PAGE_CHARS], encoding="utf-8")
        written += 1


def _render_man(path: str) -> tuple[str, str]:
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LANG": "C.UTF-8"}
    out = subprocess.run(["man", "-P", "cat", "-l", path], capture_output=True, env=env, timeout=60).stdout
    text = subprocess.run(["col", "-bx"], input=out, capture_output=True, timeout=60).stdout
    return Path(path).name.rsplit(".", 2)[0], text.decode("utf-8", "replace")


def _man(folder: Path, pages: int) -> None:
    _man_pages(folder, "man", pages, lambda path: Path(path).name.rsplit(".", 2)[0])  # ``tail``


def _admin(folder: Path, pages: int) -> None:
    _man_pages(folder, "admin", pages, lambda path: Path(path).name.removesuffix(".gz"))  # ``adduser.conf.5``


def _man_pages(folder: Path, name: str, pages: int, label: Callable[[str], str]) -> None:
    """The pages listed in ``{name}_pages.txt`` that this machine has, rendered, each as ``label(path).txt``."""
    listed = (Path(__file__).parent / f"{name}_pages.txt").read_text().split()
    labelled = set(_labels(name))  # the answering pages first, so that a smaller corpus still holds them
    listed = sorted(listed, key=lambda p: label(p) not in labelled)
    present = [p for p in listed if Path(p).exists()][:pages] if shutil.which("man") and shutil.which("col") else []
    with ThreadPoolExecutor(4) as pool:
        for path, (_, text) in zip(present, pool.map(_render_man, present), strict=True):
            if text.strip():
                (folder / f"{label(path)}.txt").write_text(text, encoding="utf-8")
    print(f"{name} corpus: {len(present)} of {len(listed)} listed pages on this machine", file=sys.stderr)


def _code(folder: Path, pages: int) -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    labelled = [p for p in _labels("code") if (lib / p).exists()]
    others = sorted(p.name for p in lib.glob("*.py") if not p.name.startswith("_") and p.name not in labelled)
    for relative in (labelled + others)[:pages]:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib / relative, target)


INFO_MANUALS = ("coreutils", "grep", "sed", "find", "diffutils", "wget", "gzip")
_NODE = re.compile(r"Node: ([^,\n]+)")


def info_nodes(manual: str) -> list[tuple[str, str]]:
    """(node name, text) of each node of an installed info manual (all its .info*.gz parts, in order)."""
    parts = sorted(Path("/usr/share/info").glob(f"{manual}.info*.gz"), key=lambda p: (len(p.name), p.name))
    nodes = []
    for part in parts:
        for node in gzip.decompress(part.read_bytes()).decode("utf-8", "replace").split("\x1f")[1:]:
            header, _, body = node.lstrip("\n").partition("\n")
            match = _NODE.search(header)
            if match and body.strip():
                nodes.append((match.group(1).strip().replace("/", "-"), body.strip("\n") + "\n"))
    return nodes


def _info(folder: Path, pages: int) -> None:
    labelled = set(_labels("info"))
    nodes = [(f"{manual}/{name}", text) for manual in INFO_MANUALS for name, text in info_nodes(manual)
             if "index" not in name.lower() and "Free Documentation License" not in name]
    nodes.sort(key=lambda item: item[0] not in labelled)  # stable: the answering nodes first, then manual order
    for label, text in nodes[:pages]:
        (folder / f"{label}.txt").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{label}.txt").write_text(text, encoding="utf-8")
    print(f"info corpus: {min(pages, len(nodes))} nodes of {len(INFO_MANUALS)} manuals", file=sys.stderr)


XSLT = "/usr/share/doc/libxslt1-dev"
_API_INDEXES = {"API", "APIconstructors", "APIfiles", "APIfunctions", "APIsymbols",
                *(f"APIchunk{i}" for i in range(20))}
# (corpus folder, installed folder, file pattern, pages left out: index and table-of-contents pages, licences, and
# the whole site again on one page, like Node's all.html: libxslt's xslt.html and EXSLT/exslt.html)
HTML_SOURCES = (
    ("nodejs", "/usr/share/doc/nodejs/api", "*.html", {"all", "index"}),
    ("valgrind", "/usr/share/doc/valgrind/html", "*.html",
     {"index", "manual", "tech-docs", "dist", "licenses", "license.gpl", "license.gfdl", "FAQ", "QuickStart"}),
    ("libxslt", f"{XSLT}/html", "*.html", {"index", "docs", "xslt", *_API_INDEXES}),
    ("libxslt/EXSLT", f"{XSLT}/html/EXSLT", "*.html", {"index", "docs", "exslt", *_API_INDEXES}),
    ("libxslt", f"{XSLT}/html/tutorial", "*.html", set()),
    ("libxslt", f"{XSLT}/html/tutorial2", "*.html", set()),
    ("libxslt", f"{XSLT}/gtk-doc/html/libxslt", "libxslt-*.html", set()),  # (html/html/ renders this API again)
    ("libxslt", f"{XSLT}/gtk-doc/html/libexslt", "libexslt-*.html", set()),
    ("libffi", "/usr/share/doc/libffi8/html", "*.html", {"index", "Index", "Types", "Using-libffi"}),
    ("expat", "/usr/share/doc/libexpat1-dev/expat.html", "reference.html", set()),  # (index.html: the same page)
    ("shared-mime-info", "/usr/share/doc/shared-mime-info/shared-mime-info-spec.html", "*.html", {"index"}),
)


def _html(folder: Path, pages: int) -> None:
    labelled = set(_labels("html"))
    found = [(f"{prefix}/{path.stem}", path) for prefix, installed, pattern, left_out in HTML_SOURCES
             for path in sorted(Path(installed).glob(pattern)) if path.is_file() and path.stem not in left_out]
    found.sort(key=lambda item: item[0] not in labelled)  # stable: the answering pages first, then by collection
    for label, path in found[:pages]:
        (folder / f"{label}.html").parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / f"{label}.html")
    missing = sorted(labelled - {label for label, _ in found})
    print(f"html corpus: {min(pages, len(found))} of {len(found)} pages found; {len(missing)} answering pages missing "
          f"on this machine{': ' + ', '.join(missing) if missing else ''}", file=sys.stderr)


_MD_SUFFIX = re.compile(r"\.md(\.gz)?$")
# (collection, installed folder, pages left out by their path under it without .md/.md.gz: changelogs and release
# notes, licences, contributing, security and governance files, translations and pages that only link to others)
MD_SOURCES = (
    ("npm", "/usr/lib/node_modules/npm/docs/content", set()),
    ("buildah", "/usr/share/doc/buildah",
     {"tutorials/README", "release-announcements/*"}),  # (the tutorials' README: links to the five tutorials)
    ("podman", "/usr/share/doc/podman",
     {"RELEASE_NOTES", "CONTRIBUTING", "SECURITY", "commands", "podman_tutorial_cn"}),  # (commands: "has moved")
    ("docker-registry", "/usr/share/doc/docker-registry", {"spec/index", "spec/auth/index", "spec/menu"}),
    ("pip", "/usr/share/doc/python3-pip/html",
     {"index", "cli/index", "topics/index", "reference/index", "development/*"}),  # (development: triage policy)
    ("containerd", "/usr/share/doc/containerd", set()),
)


def _md(folder: Path, pages: int) -> None:
    labelled = set(_labels("md"))
    present = [(collection, Path(installed), left_out) for collection, installed, left_out in MD_SOURCES
               if Path(installed).is_dir()]
    found = []
    for collection, installed, left_out in present:
        for path in sorted(installed.rglob("*")):
            relative = _MD_SUFFIX.sub("", path.relative_to(installed).as_posix())
            if (path.is_file() and _MD_SUFFIX.search(path.name)
                    and not any(fnmatch.fnmatchcase(relative, pattern) for pattern in left_out)):
                found.append((f"{collection}/{relative}", path))
    found.sort(key=lambda item: item[0] not in labelled)  # stable: the answering pages first, then by collection
    for label, path in found[:pages]:
        target = folder / (label + (".md.gz" if path.name.endswith(".gz") else ".md"))  # gzipped stays gzipped
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    missing = sorted(labelled - {label for label, _ in found})
    absent = [collection for collection, installed, _ in MD_SOURCES if not Path(installed).is_dir()]
    print(f"md corpus: {min(pages, len(found))} of {len(found)} pages found in {len(present)} of {len(MD_SOURCES)} "
          f"collections{' (missing: ' + ', '.join(absent) + ')' if absent else ''}; {len(missing)} answering pages "
          f"missing on this machine{': ' + ', '.join(missing) if missing else ''}", file=sys.stderr)

