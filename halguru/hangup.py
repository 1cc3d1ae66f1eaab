"""A command that reads a terminal ends when that terminal goes away.

Closing a terminal window, a tmux pane or an ssh connection hangs the terminal up. The kernel sends SIGHUP only
to a session that has the terminal as its controlling terminal; a process started on a pseudo-terminal any other
way (a test's pty, a supervisor, SIGHUP ignored by `nohup`) is not told. `halguru dev` then spun on the dead
input (Textual's input thread reads end-of-file in a loop: most of a CPU) and never exited; on SIGTERM its
shutdown blocked writing to the dead terminal until the stop grace ran out. `halguru chat` went on generating an
answer nobody could read. Here a daemon thread waits (without using any CPU) for the hangup, points the standard
streams at /dev/null so nothing blocks or fails writing to the terminal that is gone, and stops the command as
SIGTERM does: the run is stored as cancelled and the command exits.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

HANGUP_GRACE = 10.0  # seconds a command has to stop cleanly after its terminal went, before it is ended


def end_on_hangup(fd: int = 0, grace: float = HANGUP_GRACE) -> None:
    """Watch the terminal on ``fd`` (stdin) and stop this process when it hangs up; nothing if it is no terminal."""
    if not hasattr(select, "poll"):  # Windows: a console window that closes ends its processes itself
        return
    try:
        if not os.isatty(fd):
            return
    except OSError:
        return
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # not where it is ignored (nohup): the watch serves
        signal.signal(signal.SIGHUP, _on_sighup)
    threading.Thread(target=_wait_for_hangup, args=(fd, grace), name="halguru-hangup", daemon=True).start()


def _wait_for_hangup(fd: int, grace: float) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: poll reports only a hangup or an error
    while True:
        masks = [mask for _fd, mask in poller.poll()]
        if any(mask & select.POLLNVAL for mask in masks):  # the descriptor was closed: nothing left to watch
            return
        if any(mask & (select.POLLHUP | select.POLLERR) for mask in masks):
            break
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)
    _stop()
    time.sleep(grace)
    os._exit(128 + signal.SIGHUP)  # the stop hung (a thread that does not return): end as SIGHUP would have


def _on_sighup(signum: int, frame: object) -> None:
    """SIGHUP (a closed terminal window, for a command it controls) ended the command at once: the run it was
    answering read 'running' until its lease passed. Now it stops as SIGTERM stops it (the watch, woken by the
    same hangup, points the streams at /dev/null)."""
    _stop()


_stopping = threading.Lock()


def _stop() -> None:
    """Stop as `kill` does, once (a second SIGTERM ends at once): the run is stored cancelled, an ingest says how
    far it got."""
    if _stopping.acquire(blocking=False):
        os.kill(os.getpid(), signal.SIGTERM)
