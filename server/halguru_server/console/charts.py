"""Charts as inline SVG, drawn on the server from the store's numbers (no chart library, no script): vertical
bars with an optional second series drawn over the first (runs and, within them, errors) and horizontal bars
(a value per name). Each has a text summary for screen readers (``role="img"`` and ``aria-label``)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 480, 160, 34, 18


def _num(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}"


def columns(values: Sequence[float], labels: Sequence[str], summary: str,
            over: Sequence[float] | None = None, every: int = 4) -> Markup:
    """Vertical bars (class s1) with ``over`` (class s2) drawn on top of them; a label under every ``every``-th
    bar; the highest value on the axis."""
    top = max([*values, *(over or []), 1])
    inner_w, inner_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - 8
    step = inner_w / max(1, len(values))
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(summary)}">',
             f'<line class="axis" x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - PAD_BOTTOM}"/>',
             f'<text x="{PAD_LEFT - 4}" y="14" text-anchor="end">{_num(top)}</text>',
             f'<text x="{PAD_LEFT - 4}" y="{HEIGHT - PAD_BOTTOM}" text-anchor="end">0</text>']
    for i in range(len(values)):
        x = PAD_LEFT + i * step + 1
        for series, klass in ((values, "s1"), (over, "s2")):
            if series is None or not series[i]:
                continue
            h = inner_h * series[i] / top
            parts.append(f'<rect class="{klass}" x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM - h:.1f}" '
                         f'width="{max(1.0, step - 2):.1f}" height="{h:.1f}"><title>{escape(labels[i])}: '
                         f'{_num(series[i])}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 4}">{escape(labels[i])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(items: Sequence[tuple[str, float]], summary: str, unit: str = "") -> Markup:
    """Horizontal bars, one per (name, value), longest first as given."""
    items = list(items)[:12]
    row, label_w = 22, 190  # room for a 20-character name at a phone's larger text (console.css)
    height = max(1, len(items)) * row + 4
    top = max([v for _, v in items] + [1])
    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(summary)}">']
    for i, (name, value) in enumerate(items):
        y = i * row + 2
        w = (WIDTH - label_w - 60) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(name[:20])}</text>'
                     f'<rect class="s1" x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 8}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{_num(value)}{escape(unit)}</text>')
    if not items:
        parts.append('<text x="4" y="16">No data in this window.</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
