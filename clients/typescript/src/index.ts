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
