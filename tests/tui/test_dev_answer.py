"""`halguru dev`'s chat drawing a long streamed answer: what each flush costs does not grow with the answer."""

from __future__ import annotations

import time
from pathlib import Path

from textual.pilot import Pilot

from halguru.tui.answer import AnswerView
from halguru.tui.app import DevApp
from halguru.tui.widgets import AnswerStream, ChatPane


def long_answer(size: int) -> str:
    """Markdown as a model writes a long answer: headings, paragraphs, lists and code, ``size`` characters."""
    blocks, i = [], 0
    while sum(map(len, blocks)) < size:
        i += 1
        kinds = [f"## Section {i}\n\n", "- point one of many\n- point two\n- point three\n\n",
                 "```python\nx = 1\ny = x * 2\n```\n\n", f"paragraph {i} " + "words of text " * 30 + "\n\n"]
        blocks.append(kinds[i % 4])
    return "".join(blocks) + "The last words."


def shown(view: AnswerView) -> str:
    """The answer's lines on screen: its finished blocks, then the live one."""
    width = view._drawn.size.width
    lines = [*view._drawn._drawn(width), *view._drawn._draw(view.text[view._done:], True, width)]
    return "\n".join(line.text for line in lines)


async def stream_in(app: DevApp, pilot: Pilot[None], text: str, piece: int) -> tuple[AnswerView, float]:
    """Stream ``text`` into the chat ``piece`` characters at a time: the answer's view, and the CPU it took."""
    await pilot.pause()
    chat = app.query_one(ChatPane)
    stream = AnswerStream(chat, 0)
    started = time.process_time()
    for start in range(0, len(text), piece):
        await stream.add(text[start:start + piece])
        await pilot.pause()
    await stream.end()
    await pilot.pause()
    [view] = chat.query(AnswerView)
    return view, time.process_time() - started


async def test_a_long_streamed_answer_is_drawn_block_by_block(calc_agent: Path) -> None:
    """Textual's Markdown widget made each block a widget (a list, one per item) and the chat laid all of them
    out again at each flush: 40 KB streamed in 500-character flushes took 30 s of CPU (2.7 s now), growing with the
    square of the answer (150 KB: minutes). The finished blocks are drawn once now, the last one live."""
    text = long_answer(40_000)
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        view, took = await stream_in(app, pilot, text, 500)
        assert view.text == text
        drawn = shown(view)
        assert "Section 4" in drawn and "The last words." in drawn and "```" not in drawn  # all of it, as Markdown
        assert drawn.count("point two") == text.count("point two")
        assert len(list(view.children)) == 2  # the finished blocks, the live one: not a widget a block
        assert took < 10.0, f"{took:.1f} s of CPU"


async def test_one_huge_code_block_streams_at_a_pace_its_drawing_allows(calc_agent: Path) -> None:
    """A block that does not end (a 30 KB code block) stays live, and rich drew it whole at each flush: over a
    second a drawing at 50 KB, 15 times a second, so the answer took minutes and the app did not answer keys.
    It is drawn again no sooner than a few times what its last drawing cost; the end draws it whole."""
    text = "```python\n" + "".join(f"x_{i} = compute({i}, 'value')  # line {i}\n" for i in range(700)) + "```"
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        view, took = await stream_in(app, pilot, text, 100)
        assert view.text == text
        drawn = shown(view)
        assert "x_699 = compute(699, 'value')" in drawn and "x_0 = compute" in drawn
        assert took < 15.0, f"{took:.1f} s of CPU"
