"""Real processes on real terminals, for tests: a pseudo-terminal (``PtyProcess``) or a tmux session
(``TmuxSession``). The fixtures in conftest.py end every one a test starts, the test passed or not: a TUI left on
a closed terminal spun on a CPU for hours and slowed every test after it."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Sequence


class PtyProcess:
    """A command whose stdin, stdout and stderr are one pseudo-terminal; the test holds the terminal's side."""

    def __init__(self, args: Sequence[str], env: dict[str, str], size: tuple[int, int] = (30, 100),
                 controlling: bool = False):
        """``controlling``: the terminal is the command's controlling terminal, as a terminal window's shell has
        (closing it sends SIGHUP); otherwise closing it only hangs it up, as for a test's or a supervisor's."""
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        self.proc = subprocess.Popen(list(args), stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                                     start_new_session=controlling, preexec_fn=_take_terminal if controlling else None)
        os.close(slave)
        self.output = ""

    def read_until(self, needle: str, timeout: float = 30.0) -> str:
        """Read the terminal until ``needle`` shows; all read so far."""
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s in:\n{self.output[-3000:]}"
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {needle!r}:\n{self.output[-3000:]}"
            if select.select([self.master], [], [], 0.1)[0]:
                self.output += os.read(self.master, 65536).decode(errors="replace")
        return self.output

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close_terminal(self) -> None:
        """Close the terminal's side, as a terminal window or tmux pane that is closed does."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


    def end(self) -> None:
        """Close the terminal and kill the process (SIGKILL: a wedged one ignores anything else)."""
        self.close_terminal()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


class TmuxSession:
    """A detached tmux session running one command."""

    def __init__(self, command: str, env: dict[str, str], size: tuple[int, int] = (100, 30)):
        import uuid

        self.name = f"halguru-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]),
                        *[f"-e{k}={v}" for k, v in env.items()], command], check=True)
        pane = subprocess.run(["tmux", "display-message", "-p", "-t", self.name, "#{pane_pid}"],
                              capture_output=True, text=True, check=True)
        self.pane_pid = int(pane.stdout.strip())

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def send(self, *keys: str, literal: bool = False) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *(["-l"] if literal else []), *keys], check=True)

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0

    def close(self) -> None:
        """Kill the session, as closing its terminal does (tmux hangs up the pane's terminal and sends SIGHUP)."""
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)

    def end(self) -> None:
        """Kill the session, then what it ran if that outlived it (it did, spinning, where SIGHUP was lost)."""
        self.close()
        deadline = time.monotonic() + 5
        while _group_alive(self.pane_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(self.pane_pid):
            os.killpg(self.pane_pid, signal.SIGKILL)


def _take_terminal() -> None:
    """In the child, a session leader: its stdin's terminal becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has: it waits only to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _group_alive(group: int) -> bool:
    """Whether a live process (not a zombie) is in process group ``group`` (a pane's shell and its command)."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        if fields[2] == str(group) and fields[0] != "Z":
            return True
    return False
