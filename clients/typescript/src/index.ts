// A typed client for a halguru server's REST API: openapi-fetch over the types openapi-typescript generated
// from the server's /openapi.json (src/schema.d.ts; regenerate with `python scripts/gen_ts_client.py`).
//
//   import { halguru } from "@halguru/client";
//   const api = halguru("http://127.0.0.1:8000", process.env.HALGURU_KEY);
//   const { data: chat } = await api.POST("/v1/conversations", { body: { agent: "basic" } });
//   const { data: run } = await api.POST("/v1/conversations/{conversation_id}/messages",
//     { params: { path: { conversation_id: chat!.id } }, body: { content: "Hello" } });
//
// As the Python client (halguru.client): a 429 or 503 is retried after Retry-After (or a backoff), and every
// other refusal, or one retried enough, throws a HalguruError (NotFound, RateLimited, Unavailable...).
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };
export type Schemas = components["schemas"];

/** The server said no: its `status`, error `code` (not_found, rate_limited, queue_full, shutdown...) and
 * `message`; `retryAfter`: the seconds its Retry-After asked for; `requestId`: its X-Request-ID (in its log). */
export class HalguruError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly retryAfter?: number,
              readonly requestId?: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** 401 (no key, a wrong or revoked key) or 403 (the key may not do this). */
export class AuthError extends HalguruError {}
/** 404: no such agent, conversation or run (or not yours: the server does not tell the difference). */
export class NotFound extends HalguruError {}
/** 409: the object is not in a state for this (a run no longer paused, a conversation still answering...). */
export class Conflict extends HalguruError {}
/** 429 after every retry. */
export class RateLimited extends HalguruError {}
/** 503 after every retry (a full model queue, a draining server), or at once for `shutdown` (see below). */
export class Unavailable extends HalguruError {}

/** A stream the server ended with a fatal `error` event (`kind`: shutdown, conversation_busy, internal...). */
export class StreamError extends HalguruError {
  constructor(readonly kind: string, message: string, retryAfter?: number) {
    super(200, kind, message, retryAfter);
  }
}

/** A stream that broke off (the connection lost, a proxy's limit) or ended before its run's `run_finished`: `code`
 * `stream_cut`; the message names the run, whose GET /v1/runs/{run_id} says how it ended. */
export class StreamCut extends StreamError {
  constructor(message: string) {
    super("stream_cut", message);
  }
}

const BY_STATUS: Record<number, typeof HalguruError> = {
  401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict, 429: RateLimited, 503: Unavailable,
};
const RETRIED = new Set([429, 503]);
// A 503 `shutdown` answered a message the server had taken: stored, and its run cut off by a shutdown (stored as
// interrupted). Sent again it would be a second turn with the same text, so it is thrown at once.
const TAKEN = new Set(["shutdown"]);

/** When a refused request is tried again (all times in seconds). */
export interface RetryOptions {
  /** How many times a 429 or 503 is retried (3); 0: never. */
  maxRetries?: number;
  /** The first wait when the server sends no Retry-After (0.5), doubled each time, with jitter. */
  backoff?: number;
  /** The longest wait before a retry, whatever Retry-After says (30). */
  maxWait?: number;
  /** Told of each retry before its wait: attempt (0 for the first), seconds it waits, the refusal. */
  onRetry?: (attempt: number, wait: number, error: HalguruError) => void;
  /** The fetch to send with (globalThis.fetch). */
  fetch?: (input: Request) => Promise<Response>;
}

/** A client for the server at `baseUrl`; `apiKey` (from `halguru keys create`) goes as a Bearer token.
 * A refusal throws a HalguruError (openapi-fetch's `error` is never set); `options`: the retries of 429/503. */
export function halguru(baseUrl: string, apiKey?: string, options: RetryOptions = {}): Client<paths> {
  return createClient<paths>({
    baseUrl: baseUrl.replace(/\/+$/, ""),
    headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
    fetch: retrying(options),
  });
}

/** `Retry-After` in seconds from now (it is a number or an HTTP date), or undefined. */
export function retryAfterSeconds(value: string | null): number | undefined {
  if (!value?.trim()) return undefined;
  const seconds = Number(value);
  const at = Number.isNaN(seconds) ? (Date.parse(value) - Date.now()) / 1000 : seconds;
  return Number.isNaN(at) ? undefined : Math.max(0, at);
}

/** The error for a refused response, from the server's `{"error": {"type", "message"}}` body (or OpenAI's shape,
 * on /v1/chat/..., whose `code` is halguru's type). */
export async function errorFor(response: Response): Promise<HalguruError> {
  const text = await response.text().catch(() => "");
  const line = text.slice(0, 2000).replace(/\s+/g, " ").trim();  // not JSON (a proxy's HTML page): on one line
  let code = "http_error", message = line.slice(0, 500) || response.statusText;
  try {
    const detail = JSON.parse(text).error;
    if (detail && typeof detail === "object") {
      code = String(detail.code ?? detail.type ?? code);
      message = String(detail.message ?? message);
    }
  } catch { /* not JSON: its text */ }
  const Kind = BY_STATUS[response.status] ?? HalguruError;
  return new Kind(response.status, code, message, retryAfterSeconds(response.headers.get("retry-after")),
                  response.headers.get("x-request-id") ?? undefined);
}

/** A fetch that throws a HalguruError for any answer but 2xx, after retrying a 429 or 503 (not `shutdown`). Only
 * refusals are retried, never a request that failed on the way (its server may have acted on it) nor a stream cut
 * after its 200: a message whose stream broke was stored, and its answer is read again from
 * GET /v1/runs/{run_id}/events, not by sending it twice. */
function retrying({ maxRetries = 3, backoff = 0.5, maxWait = 30, onRetry, fetch: send }: RetryOptions) {
  return async (request: Request): Promise<Response> => {
    for (let attempt = 0; ; attempt++) {
      const response = await (send ?? globalThis.fetch)(request.clone());  // a body is read once: send copies
      if (response.ok) return response;
      const error = await errorFor(response);
      if (!RETRIED.has(error.status) || TAKEN.has(error.code) || attempt >= maxRetries) throw error;
      const wait = Math.min(error.retryAfter ?? backoff * 2 ** attempt * (0.5 + Math.random()), maxWait);
      onRetry?.(attempt, wait, error);
      await sleep(wait, request.signal);
    }
  };
}

/** Waits `seconds`, or rejects as soon as `signal` aborts (the caller gave up). */
function sleep(seconds: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = () => { clearTimeout(timer); reject(signal.reason); };
    const timer = setTimeout(() => { signal.removeEventListener("abort", stop); resolve(); }, seconds * 1000);
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
}

/** One event of a run as the server streams it: `type` (run_started, token, ..., run_finished, error) and its
 * fields, e.g. a token's `text`, run_finished's `status` and `output`. */
export type RunEvent = { type: string; [field: string]: unknown };

/**
 * The run's events from a streamed answer, each as soon as it arrives. openapi-fetch reads every answer as JSON
 * unless told otherwise, which throws on Server-Sent Events: ask for the body with `parseAs: "stream"`.
 *
 *   const { data } = await api.POST("/v1/conversations/{conversation_id}/messages", { params, parseAs: "stream",
 *     body: { content: "Hello", stream: true }, signal });   // signal: an AbortController's stops the run
 *   for await (const event of events(data!)) if (event.type === "token") process.stdout.write(String(event.text));
 *
 * The server's own fatal `error` event (it shut down, ...) throws a StreamError after the events before it, and a
 * body that breaks off, or ends, before its run's `run_finished` throws a StreamCut (aborting `signal` throws as
 * fetch does: you stopped it).
 */
export async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<RunEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();  // streaming: a character split across two chunks is decoded whole
  let buffer = "", runId: string | undefined, finished = false;
  const cut = (what: string) => new StreamCut(runId ? `the stream of run ${runId} ${what}: GET /v1/runs/${runId} `
                                              + "says how it ended" : `the stream ${what}`);
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (e instanceof Error && (e.name === "AbortError" || e.name === "TimeoutError")) throw e;  // the caller's
        throw cut(`broke off before the run finished (${e instanceof Error ? `${e.name}: ${e.message}` : e})`);
      }
      const { value, done } = chunk;
      if (done) {
        if (!finished) throw cut("ended before the run finished");
        return;
      }
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n?/g, "\n");  // a CR ending one chunk meets its LF in the next
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5)).join("\n");
        if (!data) continue;  // a comment (keep-alive)
        const event = JSON.parse(data) as RunEvent;
        // the server's own end of a stream (no run_id); a run's own fatal error comes before its run_finished
        if (event.type === "error" && event.fatal && !event.run_id) {
          const wait = event.retry_after;  // conversation_busy: when sending again gets past
          throw new StreamError(String(event.kind), String(event.message),
                                typeof wait === "number" ? wait : undefined);
        }
        // a stream followed from the middle (Last-Event-ID) has no run_started: its first run_finished is the run's
        if (event.type === "run_started" && runId === undefined) runId = String(event.run_id);
        else if (event.type === "run_finished" && (runId === undefined || event.run_id === runId)) finished = true;
        yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
