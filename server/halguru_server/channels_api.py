"""Channel webhooks: ``/channels/{channel}/{agent}[/{path}]``, answered by the agent's channel object.

The channel checks the request is genuine (Twilio: its signature over the configured public URL) before
anything is written, then hands the message to the pipeline, which stores and queues it once; the worker
replies. No API key: providers authenticate by signature. Not in the OpenAPI schema (providers call these,
not API clients).
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from halguru.channels.base import NOT_SIGNED, WebhookChannel, WebhookRequest, WebhookResponse
from halguru.errors import StoreUnavailable, a_kind, exception_line
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, error_response
from halguru_server.identity.guards import public
from halguru_server.state import ServerState, state_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(public)],  # each webhook checks its signature
                   route_class=GuardedRoute)
State = Annotated[ServerState, Depends(state_of)]
log = logging.getLogger("halguru.server.channels")
METHODS = ["GET", "POST", "PUT"]
# A provider's form has tens of fields (Twilio's MMS: ~60); splitting 100,000 took 0.5 s of the event loop
MAX_FORM_FIELDS = 1000


async def _webhook(request: Request, state: ServerState, channel: str, agent: str, path: str) -> Response:
    # Until a webhook has checked the request's signature, every answer is the same whether or not the webhook
    # exists: the body is read (a 413 alike) and a form not in UTF-8, or of over MAX_FORM_FIELDS fields, is an
    # unsigned request, not a 400.
    body = await request.body()
    form: dict[str, str] = {}
    readable = True
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
        except (UnicodeDecodeError, ValueError):
            readable = False  # no provider signs one (nor one of thousands of fields)
    handler = state.channels.get(agent, {}).get(channel)
    if not isinstance(handler, WebhookChannel) or state.sink is None or not readable:
        why = "a form not in UTF-8" if isinstance(handler, WebhookChannel) and state.sink else "no such webhook"
        log.info("webhook refused", extra={"fields": {"channel": channel, "agent": agent, "reason": why}})
        raise ApiError(403, NOT_SIGNED)
    # Taken while draining too: it is only stored and queued, for another replica's worker or the next start.
    # Twilio retries a failed message webhook only when its URL asks it to (connection overrides); else it drops it.
    hook = WebhookRequest(method=request.method, path=path, query=request.url.query,
                          headers={k.lower(): v for k, v in request.headers.items()}, body=body, form=form)
    try:
        answer = await handler.webhook(hook, state.sink.for_channel(channel, agent))
    except StoreUnavailable:  # the store's outage, not the channel's bug: the server's 503 with Retry-After
        raise
    except Exception as exc:  # a channel plugin's bug: one line naming it (the traceback kept), a 500 to the caller
        return _failed(channel, agent, exception_line(exc), exc)
    if not isinstance(answer, WebhookResponse):
        return _failed(channel, agent, f"it gave {a_kind(answer)}, not a WebhookResponse")
    if answer.status >= 400:  # a refusal in the one error shape, as everywhere else on this server
        return error_response(answer.status, answer.body or "refused")
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def _failed(channel: str, agent: str, why: str, exc: Exception | None = None) -> Response:
    """The answer to a request a channel's webhook failed on, said in the log naming the channel's plugin."""
    from halguru.plugins.manager import owners

    plugin = owners("register_channels").get(channel, "?")
    log.error("channel %r (plugin %r) failed on a webhook request for agent %s: %s", channel, plugin, agent, why,
              exc_info=exc)
    return error_response(500, "the channel's webhook failed; see the server log", "internal")


@router.api_route("/channels/{channel}/{agent}", methods=METHODS)
async def webhook(request: Request, state: State, channel: str, agent: str) -> Response:
    return await _webhook(request, state, channel, agent, "")


@router.api_route("/channels/{channel}/{agent}/{path:path}", methods=METHODS)
async def webhook_path(request: Request, state: State, channel: str, agent: str, path: str) -> Response:
    return await _webhook(request, state, channel, agent, path)
