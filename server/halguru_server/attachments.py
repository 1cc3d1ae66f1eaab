"""Attachments in the web chat: a PDF, text or Markdown file given to the agent in one conversation only.

``POST /chat/api/conversations/{id}/attachments?name=FILE`` with the file as the request body. The server
checks the type (by name: .pdf, .txt, .md, .markdown), the size (``MAX_BYTES``, and the server's body
limit) and the text's length (``MAX_CHARS``), parses it with the knowledge loaders (``halguru.rag.loaders``:
PDF text, decoded text) and adds the text to the conversation as a user message that starts with
``[Attached file: NAME]``: the agent reads it with the rest of that conversation's history, nowhere else.
Nothing of the file is kept but that text.
"""

from __future__ import annotations

import asyncio
import unicodedata
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from halguru.errors import ConversationBusy
from halguru.rag.loaders import Skip, is_pdf, kind_of, load
from halguru_server import attachment_reader, ratelimit, service
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

MAX_BYTES = 1_000_000
MAX_CHARS = 50_000
KINDS = {"pdf", "markdown", "text"}  # what the loaders call .pdf, .md/.markdown and .txt (among others)
SUFFIXES = {".pdf", ".md", ".markdown", ".txt"}
PREFIX = "[Attached file: "
_BRACKETS = str.maketrans("[]", "()")
READERS = 2  # PDFs read at once per server process (each in a process of its own); others wait their turn
_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
# Text and Markdown are decoded on threads of their own: on the event loop's default executor, which every store
# call of every request goes through (asyncio.to_thread), six slow files held all of its threads and another
# user's one-line message waited 100 s. Here a file waits only for other files.
_text_readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="halguru-attachment")

router = APIRouter(prefix="/chat/api", tags=["web chat"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("chat:use", anonymous=True))]
State = Annotated[ServerState, Depends(state_of)]


class AttachmentOut(BaseModel):
    name: str
    kind: str
    chars: int
    seq: int | None


@router.post("/conversations/{conversation_id}/attachments", response_model=AttachmentOut, status_code=201,
             responses=responses(400, 404, 409, 413, 415, 422, 429, 503))
async def attach(conversation_id: Annotated[str, Path(max_length=100)],
                 request: Request, state: State, caller: Caller,
                 name: Annotated[str, Query(max_length=200, description="the file's name (.pdf, .txt, .md)")] = "",
                 ) -> AttachmentOut:
    """Attach a file (the request body) to one of the caller's conversations: its text goes to the agent."""
    await asyncio.to_thread(service.get_conversation, state, caller, conversation_id)  # 404 before anything
    if caller.anonymous:  # a write: off the event loop, as the store may be busy with another writer
        await asyncio.to_thread(ratelimit.check, state.limiter, caller.client)
    filename = FilePath(name.replace("\\", "/")).name  # a name, never a path
    if not filename.strip():
        raise ApiError(400, "the file's name is missing: add ?name= with it, e.g. ?name=notes.pdf "
                       "(.pdf, .txt or .md says how its text is read)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in filename):  # it opens what the model reads
        raise ApiError(400, "the file's name has a line break or control character; rename the file")
    filename = filename.translate(_BRACKETS)  # "evil] SYSTEM: ..." would close the [Attached file: ...] marker
    if FilePath(filename).suffix.lower() not in SUFFIXES or kind_of(FilePath(filename)) not in KINDS:
        raise ApiError(415, f"{filename!r}: attach a PDF, text (.txt) or Markdown (.md) file", "unsupported_type")
    data = await request.body()
    if len(data) > MAX_BYTES:
        raise ApiError(413, f"the file is {len(data)} bytes; the limit is {MAX_BYTES}", "attachment_too_large")
    kind, text = await _read(filename, data)
    if not text:
        raise ApiError(400, f"{filename!r} has no text to read", "unreadable_attachment")
    if len(text) > MAX_CHARS:
        raise ApiError(413, f"{filename!r} holds {len(text)} characters of text; the limit is {MAX_CHARS}",
                       "attachment_too_long")
    service.check_text(text, "the file")
    message = f"{PREFIX}{filename}]\n\n{text}"
    await asyncio.to_thread(service.check_room, state, caller, conversation_id, len(message))
    try:  # as a message would be: not while a turn is answered or waits for an approval (it would land before it)
        seq = await asyncio.to_thread(state.store.append_message, conversation_id, "user",
                                      message, when_idle=True)
    except ConversationBusy as exc:  # or paused
        raise service.conflict(exc) from None
    if seq is None:  # deleted while the file was read: nothing was stored
        raise ApiError(404, f"no conversation {conversation_id!r}")
    return AttachmentOut(name=filename, kind=kind, chars=len(text), seq=seq)


async def _read(filename: str, data: bytes) -> tuple[str, str]:
    """The file's kind and text (stripped). Text and Markdown are decoded here, on ``READERS`` threads of their
    own (bounded work: a Markdown file's front matter is parsed only up to a few KB); a PDF is parsed in a process
    of its own under time and memory limits (``attachment_reader``), at most ``READERS`` at once."""
    if not is_pdf(FilePath(filename), data):
        loop = asyncio.get_running_loop()
        document = await loop.run_in_executor(_text_readers, load, FilePath(filename), data)
        if isinstance(document, Skip):
            raise ApiError(400, f"{filename!r} has no text to read: {document.summary}", "unreadable_attachment")
        return document.kind, document.text.strip()
    readers = _readers.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(READERS))
    try:
        await asyncio.wait_for(readers.acquire(), attachment_reader.TIMEOUT_S)
    except TimeoutError:
        raise ApiError(503, "the server is busy reading other files; try again shortly", "busy",
                       headers={"Retry-After": "10"}) from None
    try:
        answer = await attachment_reader.read(filename, data)
    except attachment_reader.TooSlow:
        raise ApiError(422, f"{filename!r} could not be read within {attachment_reader.TIMEOUT_S:.0f} s; "
                       "attach a smaller or simpler file", "unreadable_attachment") from None
    finally:
        readers.release()
    if "skip" in answer:
        raise ApiError(400, f"{filename!r} has no text to read: {answer['skip']}", "unreadable_attachment")
    return answer["kind"], answer["text"].strip()
