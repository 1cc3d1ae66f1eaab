"""A small documentation folder with every supported file type."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rag.test_loaders_chunking import write_pdf


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "guide.md").write_text(
        "# Guide\n\n## Install\n\nInstall halguru with pipx install halguru.\n\n"
        "## Configure\n\nSet HALGURU_HOME to choose where traces and knowledge bases live.\n")
    (folder / "faq.txt").write_text("The office cat is called Pixel.\n\nRefunds take fourteen days.\n")
    (folder / "page.html").write_text("<h1>Pricing</h1><script>var secret='tracking';</script>"
                                      "<p>The team plan costs 40 EUR per month.</p>")
    (folder / "tool.py").write_text("def parse_invoice(path):\n    \"\"\"Read an invoice PDF and return totals.\"\"\"\n"
                                    "    return {}\n")
    write_pdf(folder / "report.pdf", ["Annual report", "Solar panels produced 42 megawatt hours."])
    return folder
