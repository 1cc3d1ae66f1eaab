// A typed client for a halguru server's REST API: openapi-fetch over the types openapi-typescript generated
// from the server's /openapi.json (src/schema.d.ts; regenerate with `python scripts/gen_ts_client.py`).
//
//   import { halguru } from "@halguru/client";
//   const api = halguru("http://127.0.0.1:8000", process.env.HALGURU_KEY);
//   const { data: chat } = await api.POST("/v1/conversations", { body: { agent: "basic" } });
//   const { data: run } = await api.POST("/v1/conversations/{conversation_id}/messages",
//     { params: { path: { conversation_id: chat!.id } }, body: { content: "Hello" } });
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };
export type Schemas = components["schemas"];

/** A client for the server at `baseUrl`; `apiKey` (from `halguru keys create`) goes as a Bearer token. */
export function halguru(baseUrl: string, apiKey?: string): Client<paths> {
  return createClient<paths>({
    baseUrl: baseUrl.replace(/\/+$/, ""),
    headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
  });
}

/** One event of a run as the server streams it: `type` (run_started, token, ..., run_finished, error) and its
 * fields, e.g. a token's `text`, run_finished's `status` and `output`. */
export type RunEvent = { type: string; [field: string]: unknown };

/** A stream the server ended with a fatal `error` event (`kind`: shutdown, conversation_busy, internal...). */
export class StreamError extends Error {
  constructor(readonly kind: string, message: string) {
    super(`${kind}: ${message}`);
  }
}

/**
 * The run's events from a streamed answer, each as soon as it arrives. openapi-fetch reads every answer as JSON
 * unless told otherwise, which throws on Server-Sent Events: ask for the body with `parseAs: "stream"`.
 *
 *   const { data } = await api.POST("/v1/conversations/{conversation_id}/messages", { params, parseAs: "stream",
 *     body: { content: "Hello", stream: true }, signal });   // signal: an AbortController's stops the run
 *   for await (const event of events(data!)) if (event.type === "token") process.stdout.write(String(event.text));
 *
 * The server's own fatal `error` event (it shut down, ...) throws a StreamError after the events before it.
 */
export async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<RunEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();  // streaming: a character split across two chunks is decoded whole
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
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
          throw new StreamError(String(event.kind), String(event.message));
        }
        yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
