"""Read one attached file's text in a process of its own: ``python -m halguru_server.attachment_reader NAME``
with the file's bytes on stdin, a JSON line out (``{"kind", "text"}`` or ``{"skip"}``).

A crafted PDF can keep a parser busy for minutes (pages that each reuse one large compressed stream: 33 s for a
4.5 KB file) and cannot be stopped inside the server, where it held one of the request threads every keyed
request needs. Here it runs under CPU, memory and wall-clock limits, and is killed past them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

TIMEOUT_S = 10.0  # wall clock for one file, the process's start included
CPU_S = 8  # its CPU seconds (RLIMIT_CPU)
MEMORY_BYTES = 1 << 30  # its address space (RLIMIT_AS)


class TooSlow(Exception):
    """The file could not be read within the limits."""


async def read(name: str, data: bytes) -> dict[str, str]:
    """``{"kind", "text"}`` of the file, or ``{"skip": why}``; raises TooSlow past the limits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "halguru_server.attachment_reader", name, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), TIMEOUT_S)
    except TimeoutError:
        raise TooSlow(name) from None
    finally:
        if proc.returncode is None:  # past the time limit, or the request was cancelled
            proc.kill()
            await asyncio.shield(proc.wait())
    if proc.returncode != 0 or not out:  # killed by its CPU or memory limit
        raise TooSlow(name)
    result: dict[str, str] = json.loads(out)
    return result


def main() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    from halguru.rag.loaders import Skip, load

    document = load(Path(sys.argv[1]), sys.stdin.buffer.read())
    answer = ({"skip": document.summary} if isinstance(document, Skip)
              else {"kind": document.kind, "text": document.text})
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
