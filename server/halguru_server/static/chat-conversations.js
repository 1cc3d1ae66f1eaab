// The agents and the conversations: the agents picker, the conversations list (paged), opening one (its whole
// history), Rename, Delete, New conversation, and other tabs of this browser kept in step.

import {
  $, agentSelect, embedAgent, input, log, onChosen, showConversationActions, shownHere, showStatus, state, store,
  titles,
} from "/chat/static/chat-state.js";
import { addMessage, announce, CUT, failed } from "/chat/static/chat-messages.js";
import { api, credential } from "/chat/static/chat-account.js";
import { followRunning, leaveAnswer } from "/chat/static/chat-streaming.js";

// The caller's conversations with the agent, newest first: a signed-in person's from every device; an anonymous
// visitor's (their session's), an API key's or dev mode's from here. Only signed-in people had the list, so a
// visitor's "New conversation" lost the one before for good, though the server kept it for their session.
export async function loadHistory() {
  const history = $("history");
  const agent = agentSelect.value;
  if (embedAgent || !agent || !(state.me || state.dev || credential())) { history.hidden = !state.me; return; }
  const current = store.conversation(agent);
  let page = { data: [], next_cursor: null };
  try {
    page = await (await api(`/conversations?agent=${encodeURIComponent(agent)}&limit=${HISTORY_PAGE}`)).json();
  } catch (error) { showStatus(error.message); }
  // Another agent chosen meanwhile: its own list is on its way. Drawn anyway, a slow answer for the agent shown
  // at first (its list loaded at start) replaced the chosen agent's, which had come back sooner.
  if (agentSelect.value !== agent) return;
  titles.clear();
  history.replaceChildren(new Option("Your conversations…", ""));
  listed(page);
  history.value = page.data.some((c) => c.id === current) ? current : "";
  history.hidden = !state.me && !page.data.length;  // a visitor's list shows once there is something in it
  showConversationActions();
}

// The list shows a page of conversations at a time; its last option, while there are more, brings the next page
// (the list had the newest 50 and no way to the rest: an older conversation could no longer be opened here).
const HISTORY_PAGE = 50, OLDER = "older";
let olderCursor = null;
function listed(page) {
  const history = $("history");
  history.querySelector(`option[value="${OLDER}"]`)?.remove();
  for (const c of page.data) {
    titles.set(c.id, c.title);
    history.append(new Option(`${c.title || "Untitled"} · ${new Date(c.updated * 1000).toLocaleString()}`, c.id));
  }
  olderCursor = page.next_cursor || null;
  if (olderCursor) history.append(new Option("Older conversations…", OLDER));
}

async function loadOlder() {
  const history = $("history");
  const agent = agentSelect.value, current = store.conversation(agent);
  history.value = [...history.options].some((o) => o.value === current) ? current : "";
  if (!olderCursor) return;
  try {
    const path = `/conversations?agent=${encodeURIComponent(agent)}&limit=${HISTORY_PAGE}&cursor=${encodeURIComponent(olderCursor)}`;
    const page = await (await api(path)).json();
    if (agentSelect.value !== agent) return;
    listed(page);
    history.value = [...history.options].some((o) => o.value === current) ? current : "";
    announce(`${page.data.length} older conversations listed.`);
  } catch (error) { showStatus(error.message); }
}

$("rename").addEventListener("click", async () => {
  const id = store.conversation(agentSelect.value);
  if (!id) return;
  const title = prompt("A new title for this conversation", titles.get(id) || "");
  if (title === null) return;
  if (!title.trim()) { showStatus("A conversation's title cannot be blank."); return; }
  try {
    await api(`/conversations/${encodeURIComponent(id)}`, { method: "PATCH", body: JSON.stringify({ title: title.trim() }) });
  } catch (error) { showStatus(error.message); return; }
  await loadHistory();
  showStatus("Conversation renamed.");
});

$("delete").addEventListener("click", async () => {
  const id = store.conversation(agentSelect.value);
  if (!id) return;
  if (state.controller) { showStatus("An answer is still coming: stop it first (Stop, or Escape), then delete."); return; }
  if (!confirm("Delete this conversation and its messages? This cannot be undone.")) return;
  try {
    await api(`/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) { showStatus(error.message); return; }  // 404: gone already, as asked
  }
  store.sessionConversations = store.sessionConversations.filter((c) => c !== id);
  tabs?.postMessage({ agent: agentSelect.value, conversation: id, deleted: true });
  newConversation();
  await loadHistory();
  showStatus("Conversation deleted.");
});

export async function loadAgents() {
  state.usingKey = true;
  let agents = [];
  let badKey = false;
  try {
    agents = (await (await api("/agents")).json()).data;
    if (embedAgent) agents = agents.filter((a) => a.name === embedAgent);
  } catch (error) {
    badKey = error.status === 401 && !!store.key;
    if (!badKey) showStatus(error.message);
  }
  if (badKey) {  // a wrong key still lets the public chats open
    try { agents = (await (await api("/agents", { anonymous: true })).json()).data; } catch { /* none */ }
    showStatus("Invalid key: it is unknown, revoked or expired. Public agents only.");
  }
  $("key-button").hidden = !!state.me || state.dev;
  if (!agents.length) {
    $("key-form").hidden = !!state.me || state.dev;
    if (!badKey) showStatus(state.me || state.dev ? "No agent's chat is open to you." : store.key
      ? "This key opens no agent's chat." : "Sign in, or enter an API key, to chat.");
  }
  state.usingKey = !!store.key && !badKey;
  agentSelect.replaceChildren(...agents.map((a) => new Option(a.name, a.name)));
  const saved = localStorage.getItem("halguru.agent");
  if (agents.some((a) => a.name === saved)) agentSelect.value = saved;
  await loadConversation();
  await loadHistory();
}

// The address says which conversation is shown (/chat/?agent=A&conversation=ID): a notification opens it, and
// the service worker shows none for the conversation a focused window already shows.
export function showInUrl(agent, id) {
  if (embedAgent) return;
  const query = agent && id ? `?agent=${encodeURIComponent(agent)}&conversation=${encodeURIComponent(id)}` : "";
  if (location.search !== query) history.replaceState(null, "", `/chat/${query}`);
}

// A page of conversation `id`'s messages, oldest first, from `cursor` (null: the first page): { data, next_cursor }.
const PAGE = 500;  // messages per history request (the server's default is 100, its most 1000)
export async function messagePage(id, cursor) {
  const after = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
  return (await api(`/conversations/${encodeURIComponent(id)}/messages?limit=${PAGE}${after}`)).json();
}

// All of conversation `id`'s messages, page after page (the server sends a long history a page at a time).
// With the turn still being answered, if any (`running`: its run id and question, on the last page).
async function allMessages(id) {
  const messages = [];
  let cursor = null, running = null;
  do {
    const page = await messagePage(id, cursor);
    messages.push(...page.data);
    cursor = page.next_cursor;
    running = page.running || null;
  } while (cursor);
  return { messages, running };
}

let shownLoad = 0;  // which loadConversation call the log is for: only the latest draws
export async function loadConversation() {
  leaveAnswer();  // another conversation shown (or this one again): its answer goes on without this page
  log.replaceChildren();
  const load = ++shownLoad;
  const agent = agentSelect.value;
  const id = agent && store.conversation(agent);
  showInUrl(agent, id);
  if (!id) return;
  try {
    const { messages, running } = await allMessages(id);
    if (load !== shownLoad) return;  // another conversation opened meanwhile: its messages, not these, are shown
    let shown = null;  // the last message shown of the current run
    messages.forEach((m, i) => {
      if (m.run_id !== messages[i - 1]?.run_id) shown = null;
      if (m.role === "user") shown = addMessage("user", m.content);
      else if (m.role === "assistant" && m.content) shown = addMessage("assistant", m.content, m.human);
      else if (m.role === "assistant") for (const c of m.tool_calls) shown = addMessage("tool", `→ ${c.name}`);
      // a run that did not end well says so under the last of its messages, as it did while it streamed
      if (shown && m.run_id !== messages[i + 1]?.run_id && CUT[m.run_status]) failed(shown, CUT[m.run_status]);
    });
    if (running && !messages.some((m) => m.run_id === running.run_id)) followRunning(running);
  } catch (error) {
    if (load !== shownLoad) return;
    if (error.status === 404 || error.sessionEnded) { store.setConversation(agent, null); showInUrl(agent, null); }
    else showStatus(error.message);
  }
}

// This browser's other tabs showing the same conversation draw a turn when its answer ends (they showed it only
// once reloaded, and a message sent from them followed a turn they had never shown).
export const tabs = "BroadcastChannel" in window ? new BroadcastChannel("halguru.chat") : null;
tabs?.addEventListener("message", ({ data }) => {
  if (data.deleted) {  // this tab let go of it too: it stayed on the screen, and a message sent there was refused
    if (shownHere.get(data.agent) !== data.conversation) return;
    shownHere.set(data.agent, null);
    if (data.agent !== agentSelect.value) return;
    newConversation();
    loadHistory();
    showStatus("This conversation was deleted in another tab.");
    return;
  }
  if (!state.controller && data.agent === agentSelect.value && data.conversation === store.conversation(data.agent)) {
    loadConversation();
  }
});

export function newConversation() {
  leaveAnswer();
  store.setConversation(agentSelect.value, null);
  showInUrl(null, null);
  $("history").value = "";
  log.replaceChildren();
  showStatus("");
  input.focus();
}

onChosen(agentSelect, () => {
  localStorage.setItem("halguru.agent", agentSelect.value); loadConversation(); loadHistory();
});
onChosen($("history"), () => {
  if ($("history").value === OLDER) { loadOlder(); return; }
  store.setConversation(agentSelect.value, $("history").value || null);
  loadConversation();
});
