"""The passage a search gives for a page is one that can answer (not its NAME line, licence or author), and a
line without spaces (minified code, JSON, CJK text, a hex blob) is cut into chunks of the chunk size."""

from __future__ import annotations

import json
from pathlib import Path

from halguru import rag
from halguru.rag.chunking import chunk_text, count_tokens

PAGE = """\
{up}(1)                         User Commands                        {up}(1)

NAME
       {name} - {what}

SYNOPSIS
       {name} [OPTION]... [FILE]...

DESCRIPTION
       {desc}

       -a, --all
              {option}

       -q, --quiet
              never print headers giving file names

       -z, --zero-terminated
              line delimiter is NUL, not newline

       --help display this help and exit

AUTHOR
       Written by Ada Example and Bo Sample.

COPYRIGHT
       Copyright (C) 2024 Example Foundation, Inc.  This is free software:
       you are free to change and redistribute it.  There is NO WARRANTY, to
       the extent permitted by law.

SEE ALSO
       Full documentation is in the project's manual, or available locally
       via: info '(example) {name} invocation'
"""

TOOLS = {
    "ordr": ("sort lines of text files", "Write sorted concatenation of all FILE(s) to standard output.",
             "compare according to string numerical value, so 10 comes after 9"),
    "cnt": ("print newline, word, and byte counts for each file", "Print newline, word, and byte counts for each FILE.",
            "print the word counts as well as the line counts"),
    "uniqr": ("report or omit repeated lines", "Filter adjacent matching lines from INPUT, writing to OUTPUT.",
              "prefix lines by the number of occurrences"),
}


def test_a_page_is_given_by_a_passage_that_can_answer_not_its_name_line_or_licence(tmp_path: Path):
    folder = tmp_path / "man"
    folder.mkdir()
    for name, (what, desc, option) in TOOLS.items():
        (folder / f"{name}.1.txt").write_text(PAGE.format(up=name.upper(), name=name, what=what, desc=desc,
                                                          option=option))
    rag.create("pages")
    rag.ingest("pages", [folder])
    for question, page, answer in (("sort lines numerically", "ordr", "string numerical value"),
                                   ("count the words in a file", "cnt", "word counts"),
                                   ("count how often each line repeats", "uniqr", "number of occurrences")):
        hits = rag.search("pages", question, k=3)
        assert hits[0].source == f"man/{page}.1.txt"  # which page comes first is the ranking's, unchanged
        assert answer in hits[0].text, (question, hits[0].heading)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        by_page = [h.source for h in rag.search("pages", question, k=50)]
        assert len(by_page) == len(set(by_page[:3])) + len(by_page) - 3  # the first three are three pages


def test_a_line_without_spaces_is_cut_at_the_chunk_size():
    minified = json.dumps({f"key{i}": list(range(20)) for i in range(3000)}, separators=(",", ":"))
    cjk = "这是一个用于检查中文分块是否正确的测试句子" * 200
    blob = "ab" * 50_000
    for text in (minified, cjk, blob, f"intro words {minified} closing words"):
        chunks = chunk_text(text, "text", size=256, overlap=32)
        assert len(chunks) > 1
        assert max(count_tokens(c.text) for c in chunks) <= 260  # a few over where a run is cut by characters
        assert max(len(c.text) for c in chunks) < 3_000
        joined = "".join(c.text for c in chunks).replace(" ", "")
        assert all(piece.replace(" ", "") in joined for piece in (text[:40], text[-40:]))  # nothing lost at the ends
    assert count_tokens("中文") == 2 and count_tokens("internationalization") == 1
