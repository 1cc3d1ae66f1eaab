// The web chat: picks an agent, streams answers over SSE (fetch + ReadableStream), keeps each
// agent's conversation id in localStorage so a reload resumes it. No framework, no build step.
// This module is the page's entry and its composer (sending, attaching); the rest is in chat-*.js (the page
// preloads them all: index.html's modulepreload, sw.js's SHELL). chat-state.js imports nothing; the others may
// import each other, and do at their top level only what needs chat-state.js (the rest runs once all have loaded).

import { $, agentSelect, embedAgent, input, log, showStatus, state, store } from "/chat/static/chat-state.js";
import { addMessage, announce, ATTACHED, CUT, failed } from "/chat/static/chat-messages.js";
import { api, credential, ensureSession, loadMe } from "/chat/static/chat-account.js";
import { loadAgents, loadHistory, newConversation, showInUrl, tabs } from "/chat/static/chat-conversations.js";
import { stopAnswer, streamAnswer, watchHeld, working } from "/chat/static/chat-streaming.js";

// Remember that conversation `id` (now stored for its agent) is the session's; ids no longer stored are let go.
function tieToSession(id) {
  const stored = new Set(Object.keys(localStorage).filter((k) => k.startsWith("halguru.conversation."))
    .map((k) => localStorage.getItem(k)));
  store.sessionConversations = [...store.sessionConversations.filter((c) => stored.has(c) && c !== id), id];
}

// A new conversation's title: its first message's first 80 characters, whole ones (an emoji cut in half was a lone
// surrogate), with control characters (a pasted terminal's colour escapes) as spaces: the server refuses a title
// holding either, and the first message could not be sent at all.
const titleOf = (text) => Array.from(text.replace(/\p{Cc}+/gu, " ").trim()).slice(0, 80).join("");

async function ensureConversation(agent, firstMessage) {
  let id = store.conversation(agent);
  if (!id) {
    await ensureSession();
    const body = JSON.stringify({ agent, title: titleOf(firstMessage) });  // how the history lists it
    const response = await api("/conversations", { method: "POST", body });
    id = (await response.json()).id;
    store.setConversation(agent, id);
    if (credential() === "session") tieToSession(id);
    showInUrl(agent, id);
    loadHistory();
  }
  return id;
}

async function send(text) {
  const agent = agentSelect.value;
  if (!agent || state.controller) return;
  showStatus("");
  const question = addMessage("user", text);
  const bubble = addMessage("assistant", "");
  working(bubble, true);
  const mine = state.answering;
  const post = async () => {
    const id = await ensureConversation(agent, text);
    const response = await api(`/conversations/${encodeURIComponent(id)}/messages`, {
      // detach: a reload (or a dropped connection) leaves the answer running; Stop asks the server to stop it
      method: "POST", body: JSON.stringify({ content: text, stream: true, detach: true }),
      headers: { Accept: "text/event-stream" }, signal: state.controller.signal,
    });
    return { id, response };
  };
  let id, response;
  try {
    try {
      ({ id, response } = await post());
    } catch (error) {
      if (!error.sessionEnded) throw error;
      // The server no longer knows this browser's session (it restarted, or its secret changed): the message
      // starts a new conversation under a new session instead of failing.
      store.setConversation(agent, null);
      log.replaceChildren(question, bubble);
      ({ id, response } = await post());
      showStatus("Your earlier chat session had ended, so this is a new conversation.");
    }
    if (response.status === 202) {  // a person has taken the conversation over: they answer here, not the agent
      bubble.textContent = (await response.json()).message;
      bubble.classList.add("held");
      watchHeld(agent, id);
      return;
    }
    await streamAnswer(response, bubble);
  } catch (error) {
    if (error.name === "AbortError") {
      if (!mine.left) { failed(bubble, CUT.cancelled); showStatus("Stopped."); }
    } else {
      // Refused (429, 503, 413...) or never reached (fetch's own "Failed to fetch"): nothing was stored, so the
      // text goes back in the box to send again rather than being lost with the cleared box, and leaves the log
      // (drawn there too, it read as sent, and twice once sent again); where the box holds newer typing, the
      // message stays in the log, marked with why.
      const unreached = error instanceof TypeError && !error.status;
      const gone = error.status === 404 && /conversation/i.test(error.message);  // not a missing agent's 404
      const why = unreached ? "The server could not be reached" : error.type === "conversation_busy" ? BUSY
        : gone ? GONE : error.message;
      const back = !input.value;
      if (back) { input.value = text; fitInput(); question.remove(); bubble.remove(); }
      else failed(bubble, why);
      showStatus(back ? `${why}; your message is back in the box.` : why);
      if (error.status === 404) store.setConversation(agent, null);
      if (gone) { log.replaceChildren(); showInUrl(agent, null); loadHistory(); }  // not drawn under a new one
    }
  } finally {
    working(bubble, false);
    if (id) tabs?.postMessage({ agent, conversation: id });
  }
}

// The page's words for a 409 conversation_busy (the server's message names the conversation and the run).
const GONE = "This conversation was deleted (in another tab or on another device); send again to start a new one";
const BUSY = "An answer is still coming in this conversation (in another tab or on another device): "
  + "send this when it has ended";

// A PDF, text or Markdown file for the agent, in this conversation only (the server parses and limits it).
async function attach(file) {
  const agent = agentSelect.value;
  if (!agent || !file) return;
  if (state.controller) { showStatus(`An answer is still coming: attach ${file.name} when it has ended.`); return; }
  showStatus("");
  if (file.size > 1000000) { showStatus(`${file.name} is over 1 MB.`); return; }
  // Checked here as the server would (415), before a conversation is made for it: a dropped or pasted picture
  // left an empty "Attached image.png" conversation behind.
  if (!/\.(pdf|txt|md|markdown)$/i.test(file.name)) {
    showStatus(`${file.name}: attach a PDF, text (.txt) or Markdown (.md) file.`); return;
  }
  try {
    const id = await ensureConversation(agent, `Attached ${file.name}`);
    const path = `/conversations/${encodeURIComponent(id)}/attachments?name=${encodeURIComponent(file.name)}`;
    const info = await (await api(path, { method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream" } })).json();
    addMessage("user", `${ATTACHED}${info.name}]`);
    announce(`Attached ${info.name}.`);  // the conversation is no live region: a screen reader heard nothing
  } catch (error) {
    showStatus(error.message);
    if (error.status === 404 || error.sessionEnded) store.setConversation(agent, null);
  }
  input.focus();
}

// The composer: Enter sends (the text stays in the box while it cannot be sent), the box grows with its text.
const OFFLINE = "You are offline: your message stays in the box; send it when the network is back.";
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  // Not sendable now: the text stays in the box (it was cleared and silently dropped).
  if (state.controller) { showStatus("An answer is still coming: send this when it has ended, or stop it first (Stop, or Escape)."); return; }
  if (!agentSelect.value) { showStatus("No agent to send this to."); return; }
  if (!navigator.onLine) { showStatus(OFFLINE); return; }
  input.value = "";
  fitInput();
  send(text);
});
// The box grows with what is in it, up to 40% of the window (then it scrolls), and is small again once sent: two
// rows showed a long message two lines at a time, and on a phone cut its own placeholder off.
function fitInput() {
  input.style.height = "auto";
  const borders = input.offsetHeight - input.clientHeight;
  input.style.height = `${Math.min(input.scrollHeight + borders, Math.round(window.innerHeight * 0.4))}px`;
}
input.addEventListener("input", fitInput);
window.addEventListener("resize", fitInput);
fitInput();
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
});
document.addEventListener("keydown", (e) => {
  if (e.altKey && (e.key === "n" || e.key === "N")) { e.preventDefault(); newConversation(); }
  if (e.key === "Escape" && state.controller) stopAnswer();
  else if (e.key === "Escape" && !$("key-form").hidden) {  // the key bar, left as the button opened it
    $("key-form").hidden = true; $("key").value = ""; $("key-button").focus();
  }
});
$("new").addEventListener("click", newConversation);
$("attach-button").addEventListener("click", () => $("attach").click());
$("attach").addEventListener("change", () => { const file = $("attach").files[0]; $("attach").value = ""; attach(file); });
// Files dropped anywhere on the chat, or pasted into the message box, are attached as Attach does, one after
// another. Dropped with no handler, Chromium left the chat for the file itself (the conversation gone from the
// tab), and a pasted file did nothing.
async function attachAll(files) { for (const file of files) await attach(file); }
const carriesFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes("Files");
// While files are dragged over it the conversation is outlined: where to let go (nothing showed it).
const dropping = (on) => document.body.classList.toggle("dropping", on);
document.addEventListener("dragover", (e) => {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
  dropping(true);
});
document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) dropping(false); });  // out of the window
document.addEventListener("drop", (e) => {
  dropping(false);
  if (!carriesFiles(e)) return;
  e.preventDefault();
  attachAll([...e.dataTransfer.files]);
});
input.addEventListener("paste", (e) => {
  const files = e.clipboardData ? [...e.clipboardData.files] : [];
  if (!files.length) return;  // text pastes as text
  e.preventDefault();
  attachAll(files);
});
$("stop").addEventListener("click", stopAnswer);

const opened = new URLSearchParams(location.search);
if (!embedAgent && opened.get("agent") && opened.get("conversation")) {
  localStorage.setItem("halguru.agent", opened.get("agent"));
  store.setConversation(opened.get("agent"), opened.get("conversation"));
}
// Into the message box once loaded, unless the user has gone elsewhere meanwhile (a slow link: it took them away).
loadMe().then(loadAgents).then(() => { if (document.activeElement === document.body) input.focus(); });
// Losing the network while the chat is open: say so (the status line is a live region), and clear it on return.
window.addEventListener("offline", () => showStatus(OFFLINE));
window.addEventListener("online", () => showStatus(""));
// The installable app: the service worker keeps the shell for offline starts (never the conversations).
if ("serviceWorker" in navigator && !embedAgent) {
  navigator.serviceWorker.register("/chat/sw.js", { scope: "/chat/" }).catch(() => { /* http on a LAN: no SW */ });
}
