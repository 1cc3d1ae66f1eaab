"""Draw the web chat's PNG icons (the favicon's speech bubble) into server/halguru_server/static/.

Run once when the icon changes (needs Pillow, a developer tool only); the PNGs are committed.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

STATIC = Path(__file__).resolve().parents[1] / "server" / "halguru_server" / "static"
BLUE, WHITE = (26, 95, 208, 255), (255, 255, 255, 255)


def icon(size: int) -> Image.Image:
    """A full-bleed blue square (maskable: the bubble sits inside the 80 % safe zone) with a white bubble."""
    image = Image.new("RGBA", (size, size), BLUE)
    draw = ImageDraw.Draw(image)
    u = size / 32  # the favicon's 32-unit grid, shrunk towards the centre
    points = [(8, 10), (24, 10), (24, 20), (15, 20), (10, 24), (10, 20), (8, 20)]
    draw.polygon([(16 * u + (x - 16) * u * 0.8, 16 * u + (y - 17) * u * 0.8) for x, y in points], fill=WHITE)
    return image


def main() -> None:
    for size in (192, 512):
        icon(size).quantize(colors=8).save(STATIC / f"icon-{size}.png", optimize=True)


if __name__ == "__main__":
    main()
