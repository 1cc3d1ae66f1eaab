// The README's and src/index.ts's example, compiled by `npm run check` (tests/server/test_ts_client.py) so that
// what the docs show keeps type-checking against the generated types.
import { halguru } from "../src/index";

export async function quickstart(key: string): Promise<string> {
  const api = halguru("http://127.0.0.1:8000", key);
  const { data: chat, error } = await api.POST("/v1/conversations", { body: { agent: "basic" } });
  if (!chat) throw new Error(`could not start a conversation: ${JSON.stringify(error)}`);
  const { data: run } = await api.POST("/v1/conversations/{conversation_id}/messages",
    { params: { path: { conversation_id: chat.id } }, body: { content: "Hello" } });
  // the 200 answer is the run (JSON) or, with stream: true, server-sent events (text)
  return typeof run === "object" && run !== null && "output" in run ? String(run.output) : "";
}
