// The README's streaming example, compiled by `npm run check` and run with node by tests/server/test_ts_client.py.
import { events, halguru } from "../src/index";

/** Stream an answer to `text` in a new conversation with `agent`; the tokens, then run_finished's status. */
export async function streamed(baseUrl: string, apiKey: string, agent: string, text: string,
                               signal?: AbortSignal): Promise<string[]> {
  const api = halguru(baseUrl, apiKey);
  const { data: chat } = await api.POST("/v1/conversations", { body: { agent } });
  const { data } = await api.POST("/v1/conversations/{conversation_id}/messages", {
    params: { path: { conversation_id: chat!.id } }, body: { content: text, stream: true }, parseAs: "stream", signal,
  });
  const seen: string[] = [];
  for await (const event of events(data!)) {
    if (event.type === "token") seen.push(String(event.text));
    if (event.type === "run_finished") seen.push(`[${String(event.status)}]`);
  }
  return seen;
}
