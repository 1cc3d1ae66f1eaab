"""What a user *sees* in `halguru chat` after Ctrl-C: the partial answer drawn once.

The raw output of a live (redrawn) answer holds every frame, so the test replays it on a small terminal
emulator (printable text with line wrap, CR, LF, erase line, cursor up) and reads the screen.
"""

from __future__ import annotations

import re
import signal

import pexpect

PROMPT = "you> "
WORDS = " ".join(f"word{i}" for i in range(200))
WIDTH = 60
CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b[()][0-9A-Za-z]|\x1b[=>]|\x1b\][^\x07]*\x07")


def screen_lines(raw: str, width: int = WIDTH) -> list[str]:
    """The text an xterm-like terminal ``width`` columns wide shows after ``raw`` (scrollback included)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    pending_wrap = False
    pos = 0
    while pos < len(raw):
        match = CSI.match(raw, pos)
        if match:
            pos = match.end()
            args, final = match.group(1) or "", match.group(2)
            if final == "K":  # erase the line
                lines[row] = []
            elif final == "A":  # cursor up
                row = max(0, row - int(args or 1))
                pending_wrap = False
            continue
        char = raw[pos]
        pos += 1
        if char == "\r":
            col, pending_wrap = 0, False
        elif char == "\n":
            row, pending_wrap = row + 1, False
            if row == len(lines):
                lines.append([])
        elif char >= " ":
            if pending_wrap:  # a character after the last column goes to the next line
                row, col, pending_wrap = row + 1, 0, False
                if row == len(lines):
                    lines.append([])
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            if col == width - 1:
                pending_wrap = True
            else:
                col += 1
    return ["".join(line).rstrip() for line in lines]


def test_screen_emulator_wraps_and_erases():
    assert screen_lines("a" * WIDTH + "^C\r\x1b[2K\x1b[1A\x1b[2Kb") == ["b", ""]
    assert screen_lines("ab\r\ncd\r\x1b[2K\x1b[1A\x1b[2Kxy\r\nz") == ["xy", "z"]


def test_ctrl_c_shows_the_partial_answer_once(write_agent, halguru_cmd, subprocess_env, tmp_path):
    script = tmp_path / "slow.yaml"
    script.write_text(f'- {{text: "{WORDS}", token_delay: 0.05}}\n', encoding="utf-8")
    agent = write_agent(f"name: slowpoke\nmodel: scripted:{script}\n")
    env = {k: v for k, v in subprocess_env.items() if k != "COLUMNS"}  # the width is the terminal's
    child = pexpect.spawn(halguru_cmd[0], [*halguru_cmd[1:], "chat", str(agent)],
                          env={**env, "TERM": "xterm-256color"}, encoding="utf-8",
                          codec_errors="replace", dimensions=(40, WIDTH),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    raw = ""
    try:
        child.expect_exact(PROMPT, timeout=60)
        raw += child.before + child.after
        child.sendline("tell me a long story")
        child.expect_exact("word12", timeout=60)
        raw += child.before + child.after
        child.sendintr()
        child.expect_exact("Stopped.", timeout=30)
        raw += child.before + child.after
        child.expect_exact(PROMPT, timeout=30)
        raw += child.before + child.after
    finally:
        child.close(force=True)
    shown = screen_lines(raw)
    starts = [line for line in shown if line.startswith("word0 word1")]
    assert len(starts) == 1, "\n".join(shown)
    answer = shown.index(starts[0])
    assert any(line.startswith("Stopped.") for line in shown[answer:]), "\n".join(shown)
