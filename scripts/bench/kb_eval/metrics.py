"""Ranking metrics over documents, and the whole-document BM25 baseline measured in the same run.

A ranking is the list of sources of the returned chunks, best first. recall@5: a relevant document is among
the first 5 chunks' sources; MRR@10: 1 / rank of the first chunk from a relevant document (0 past 10);
nDCG@10: binary gain per distinct relevant document, counted at the rank where it first appears.
The baseline reads a gzipped page unpacked (the md set's ``.md.gz``), and an HTML page's text only (its tags,
attributes, scripts and styles dropped by the standard library's parser, not by halguru's loader, which is what the
html set evaluates).
"""

from __future__ import annotations

import gzip
import math
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

_WORD = re.compile(r"\w+")


def recall_at(ranking: list[str], relevant: set[str], k: int = 5) -> float:
    return 1.0 if relevant & set(ranking[:k]) else 0.0


def mrr_at(ranking: list[str], relevant: set[str], k: int = 10) -> float:
    for rank, source in enumerate(ranking[:k], 1):
        if source in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranking: list[str], relevant: set[str], k: int = 10) -> float:
    seen: set[str] = set()
    dcg = 0.0
    for rank, source in enumerate(ranking[:k], 1):
        if source in relevant and source not in seen:
            dcg += 1.0 / math.log2(rank + 1)
        seen.add(source)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def scores(rankings: list[tuple[list[str], set[str]]]) -> tuple[float, float, float]:
    """(recall@5, MRR@10, nDCG@10) averaged over questions."""
    n = max(1, len(rankings))
    return (sum(recall_at(r, rel) for r, rel in rankings) / n, sum(mrr_at(r, rel) for r, rel in rankings) / n,
            sum(ndcg_at(r, rel) for r, rel in rankings) / n)


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(text)]


class _PageText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style") and self.hidden > 0

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def page_text(path: Path) -> str:
    """A document's text as the baseline reads it: the file (a gzipped one unpacked, as halguru reads it), or an HTML
    page's text without its markup."""
    if path.suffix == ".gz":
        text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix != ".html":
        return text
    parser = _PageText()
    parser.feed(text)
    parser.close()
    return " ".join(parser.parts)


class WholeDocBM25:
    """Okapi BM25 (k1 1.2, b 0.75) over whole documents: the baseline a retrieval pipeline must beat."""

    def __init__(self, documents: dict[str, str], k1: float = 1.2, b: float = 0.75):
        self.names = list(documents)
        self.tf = [Counter(tokens(text)) for text in documents.values()]
        self.lengths = [sum(c.values()) for c in self.tf]
        self.average = sum(self.lengths) / max(1, len(self.lengths))
        df: Counter[str] = Counter()
        for counts in self.tf:
            df.update(counts.keys())
        n = len(self.tf)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    @classmethod
    def from_folder(cls, folder: Path, sources: dict[str, str]) -> WholeDocBM25:
        root = folder.parent
        return cls({s: page_text(root / s) for s in sources.values()})

    def rank(self, query: str, k: int = 10) -> list[str]:
        terms = [t for t in set(tokens(query)) if t in self.idf]
        scored = []
        for i, counts in enumerate(self.tf):
            norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.average)
            s = sum(self.idf[t] * counts[t] * (self.k1 + 1) / (counts[t] + norm) for t in terms if t in counts)
            if s:
                scored.append((s, self.names[i]))
        return [name for _, name in sorted(scored, reverse=True)[:k]]
