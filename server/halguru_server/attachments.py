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
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from halguru.rag.loaders import Skip, kind_of, load
from halguru_server import ratelimit, service
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

MAX_BYTES = 1_000_000
MAX_CHARS = 50_000
KINDS = {"pdf", "markdown", "text"}  # what the loaders call .pdf, .md/.markdown and .txt (among others)
SUFFIXES = {".pdf", ".md", ".markdown", ".txt"}
PREFIX = "[Attached file: "

router = APIRouter(prefix="/chat/api", tags=["web chat"], responses=responses(401, 403, 422))
Caller = Annotated[Principal, Depends(require("chat:use", anonymous=True))]
State = Annotated[ServerState, Depends(state_of)]


class AttachmentOut(BaseModel):
    name: str
    kind: str
    chars: int
    seq: int | None


@router.post("/conversations/{conversation_id}/attachments", response_model=AttachmentOut, status_code=201,
             responses=responses(400, 404, 413, 415, 429))
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
    if FilePath(filename).suffix.lower() not in SUFFIXES or kind_of(FilePath(filename)) not in KINDS:
        raise ApiError(415, f"{filename!r}: attach a PDF, text (.txt) or Markdown (.md) file", "unsupported_type")
    data = await request.body()
    if len(data) > MAX_BYTES:
        raise ApiError(413, f"the file is {len(data)} bytes; the limit is {MAX_BYTES}", "attachment_too_large")
    document = await asyncio.to_thread(load, FilePath(filename), data)
    if isinstance(document, Skip):
        raise ApiError(400, f"{filename!r} has no text to read: {document.summary}", "unreadable_attachment")
    text = document.text.strip()
    if len(text) > MAX_CHARS:
        raise ApiError(413, f"{filename!r} holds {len(text)} characters of text; the limit is {MAX_CHARS}",
                       "attachment_too_long")
    service.check_text(text, "the file")
    seq = await asyncio.to_thread(state.store.append_message, conversation_id, "user",
                                  f"{PREFIX}{filename}]\n\n{text}")
    if seq is None:  # deleted while the file was read: nothing was stored
        raise ApiError(404, f"no conversation {conversation_id!r}")
    return AttachmentOut(name=filename, kind=document.kind, chars=len(text), seq=seq)
