// The web chat: picks an agent, streams answers over SSE (fetch + ReadableStream), keeps each
// agent's conversation id in localStorage so a reload resumes it. No framework, no build step.
import { MarkdownView, renderMarkdown } from "/chat/static/markdown.js";

const $ = (id) => document.getElementById(id);
const log = $("log"), input = $("input"), agentSelect = $("agent"), statusLine = $("status");
let controller = null;  // the answer coming in now: its abort stops the page reading it (not the run)
// That answer's run (its id once known), and whether the page has left it or asked it to stop before it had an id.
let answering = { runId: "", stopWanted: false, left: false, reading: false };
let usingKey = true;  // send the stored key; false once the server refused it (then: the session token)
let me = null;  // the signed-in user (GET /auth/me through the session cookie), else null
let dev = false;  // `halguru serve --dev` (/auth/me's via): no keys, no accounts, so no key or sign-in controls
const embedAgent = document.body.dataset.embed || "";  // the widget's iframe (/chat/embed/NAME): that agent only

const KEYLIKE = /^[\x21-\x7e]*$/;  // what a header can carry: printable ASCII, no spaces
const shownHere = new Map();  // agent → the conversation this tab shows (see store.conversation)
const titles = new Map();  // conversation id → its title, from the conversations list last loaded (Rename)
const store = {
  get key() {  // one saved before keys were checked where typed is not sent (every call failed with it)
    const key = localStorage.getItem("halguru.key") || "";
    return KEYLIKE.test(key) ? key : "";
  },
  set key(v) { v ? localStorage.setItem("halguru.key", v) : localStorage.removeItem("halguru.key"); },
  // Anonymous chats belong to a session token the server issued: only this browser holds it.
  get session() { return localStorage.getItem("halguru.session") || ""; },
  set session(v) { v ? localStorage.setItem("halguru.session", v) : localStorage.removeItem("halguru.session"); },
  // Each tab sends to the conversation it shows: read from the browser's storage once (a reload shows the last
  // one opened), then kept here. Another tab's new conversation had this one's next message posted into it,
  // under a screen still showing the old one.
  conversation(agent) {
    if (!shownHere.has(agent)) shownHere.set(agent, localStorage.getItem(`halguru.conversation.${agent}`));
    return shownHere.get(agent);
  },
  setConversation(agent, id) {
    shownHere.set(agent, id);
    id ? localStorage.setItem(`halguru.conversation.${agent}`, id) : localStorage.removeItem(`halguru.conversation.${agent}`);
    showConversationActions();
  },
  // The conversations started under the session token: only it opens them, so they go when it does.
  get sessionConversations() {
    try { return JSON.parse(localStorage.getItem("halguru.session.conversations")) || []; } catch { return []; }
  },
  set sessionConversations(ids) {
    ids.length ? localStorage.setItem("halguru.session.conversations", JSON.stringify(ids))
      : localStorage.removeItem("halguru.session.conversations");
  },
};

// What a call is sent as: the signed-in user (cookie), the API key, the anonymous session token, or nothing.
function credential(anonymous = false) {
  if (me) return "user";
  if (store.key && usingKey && !anonymous) return "key";
  return store.session ? "session" : "";
}

function headers(extra = {}, anonymous = false) {
  const h = { "Content-Type": "application/json", ...extra };
  const via = credential(anonymous);
  if (via === "user") h["X-CSRF-Token"] = me.csrf;  // the cookie says who; its CSRF token goes with every call
  else if (via === "key") h.Authorization = `Bearer ${store.key}`;
  else if (via === "session") h["X-Chat-Session"] = store.session;
  return h;
}

async function api(path, options = {}) {
  const { anonymous = false, retried = false, ...rest } = options;
  const via = credential(anonymous);
  let response;
  try {
    response = await fetch(`/chat/api${path}`, { ...rest, headers: headers(rest.headers, anonymous) });
  } catch (error) {  // never reached: said in words, not the browser's "Failed to fetch"; still a TypeError
    if (error.name === "AbortError") throw error;
    throw new TypeError(navigator.onLine ? UNREACHABLE : OFFLINE_NOW);
  }
  if (!response.ok) {
    let message = `${response.status}`, type = "";
    try { ({ message, type } = (await response.json()).error); } catch { /* not JSON */ }
    if (response.status === 401 && type === "invalid_session" && via === "session" && !retried) {
      dropSession();
      // What named a conversation or run of the old session is gone with it; anything else is asked again
      // (a new session first, for what creates something).
      if (!/^\/(conversations|runs)\//.test(path)) {
        if (rest.method === "POST" && path !== "/session") await ensureSession();
        return api(path, { ...options, retried: true });
      }
      message = "Your earlier chat session has ended, and its conversation with it.";
    }
    // Signed in when the page opened, but no longer (the sign-in expired, or was ended on another device): the
    // server took the call as a stranger's ("no conversation 'conv_…'", a 404 that had the page forget the
    // conversation shown). Say so, and show Sign in again; what was shown stays for when they are back.
    if (via === "user" && [401, 403, 404].includes(response.status) && !(await stillSignedIn())) {
      await loadMe();
      throw Object.assign(new Error(SIGNED_OUT), { status: 401, type: "signed_out", signedOut: true });
    }
    const error = Object.assign(new Error(message),
      { status: response.status, type, sessionEnded: type === "invalid_session" });
    throw error;
  }
  return response;
}

const UNREACHABLE = "The server could not be reached: try again in a moment.";
const OFFLINE_NOW = "You are offline: try again when the network is back.";
const SIGNED_OUT = "Your sign-in has ended: sign in again (Sign in, at the top) to go on";

async function stillSignedIn() {
  try {
    return ![401, 403].includes((await fetch("/auth/me")).status);  // not known (a blip): taken as signed in
  } catch { return true; }
}

// The server no longer accepts the session token (restarted with another secret, or the operator changed it):
// forget the token and the conversations started under it (nobody can open them now). Without this the page
// sent the dead token on every call, and each call (even the list of public agents) was refused for good.
function dropSession() {
  const tied = new Set(store.sessionConversations);
  for (const key of Object.keys(localStorage)) {
    if (key.startsWith("halguru.conversation.") && tied.has(localStorage.getItem(key))) localStorage.removeItem(key);
  }
  for (const [agent, id] of shownHere) if (tied.has(id)) shownHere.delete(agent);
  store.sessionConversations = [];
  store.session = "";
  showStatus("Your earlier chat session has ended; a new one starts with your next message.");
}

function showStatus(text) { statusLine.textContent = text || ""; }

// The log follows what comes in (a streaming answer, an operator's message) only while the reader is at its end:
// one who scrolled up to read an earlier part was pulled back down on every chunk. Only a scroll up lets go (the
// page's own scrolls go down); reaching the end again, or sending a message, follows again.
let following = true, lastTop = 0;
log.addEventListener("scroll", () => {
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 40) following = true;
  else if (log.scrollTop < lastTop) following = false;
  lastTop = log.scrollTop;
});
function toEnd(always = false) {
  if (always) following = true;
  if (following) log.scrollTop = log.scrollHeight;
}

// What a screen reader hears of the conversation: an answer once it has ended and an operator's message, each
// once. The log is no live region: it read every chunk drawn while an answer streamed (and a whole conversation
// when one was opened). Errors are heard from the status line.
const announcer = $("announce");
function announce(text) { announcer.textContent = text; }
const spoken = (bubble) => [...bubble.childNodes].filter((n) => !n.classList?.contains("error") && !n.classList?.contains("copy"))
  .map((n) => n.textContent).join(" ").trim();
const OFFLINE = "You are offline: your message stays in the box; send it when the network is back.";

// A failed send says why in its own bubble (plain text, never HTML), not only in the status line.
function failed(bubble, message) {
  const note = document.createElement("p");
  note.className = "error";
  note.textContent = `⚠ ${message}`;
  bubble.classList.add("failed");
  bubble.append(note);
}

// What the page says under an answer whose run ended short of "ok" (the messages' run_status).
const CUT = {
  cancelled: "This answer was stopped before it finished.",
  failed: "This answer failed before it finished.",
  limited: "This answer was cut short by a limit.",
  interrupted: "This answer was cut off when the server stopped.",
  paused: "This answer waits for a tool call to be approved.",
};

// A stream's fatal error in the page's words where it says how the answer ended (a run whose server went away:
// "interrupted"); the server's own wording is for API clients ("GET /v1/runs/ID shows what it did").
function cutShort(event) {
  return CUT[event.kind === "shutdown" ? "interrupted" : event.kind] || event.message;
}

const PAGE = 500;  // messages per history request (the server's default is 100, its most 1000)
const ATTACHED = "[Attached file: ";  // how the server stores an attachment's text in the conversation

// Each code block of an ended answer has a Copy button above it, where the browser lets the page write to the
// clipboard (https, or localhost); what it did is heard, and shown on the button for 2 s.
function copyButtons(bubble) {
  if (!navigator.clipboard) return;
  for (const pre of bubble.querySelectorAll("pre")) {
    const button = Object.assign(document.createElement("button"), { type: "button", className: "copy", textContent: "Copy" });
    const name = pre.getAttribute("aria-label") || "Code";  // "Copy code: python": which block, where there are many
    button.setAttribute("aria-label", `Copy ${name[0].toLowerCase()}${name.slice(1)}`);
    button.addEventListener("click", async () => {
      const done = await navigator.clipboard.writeText(pre.textContent).then(() => "Copied", () => "Not copied");
      button.textContent = done; announce(done);
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    pre.before(button);
  }
}

// Each message is an article named after who wrote it: a screen reader told only colours and sides apart.
function said(div, who) {
  div.setAttribute("role", "article");
  div.setAttribute("aria-label", who);
  return div;
}

function addMessage(role, text, human = false) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.dataset.role = role;
  div.dir = "auto";  // right to left where its text is (Hebrew, Arabic); Markdown blocks each have their own
  said(div, human ? "Operator" : role === "user" ? "You" : role === "tool" ? "Tool call" : agentSelect.value);
  if (role === "user" && text.startsWith(ATTACHED)) {  // the file's text is for the agent: show its name
    div.className = "msg attachment";
    div.textContent = `📎 ${text.split("\n")[0].slice(ATTACHED.length, -1)}`;
  } else if (role === "assistant") { renderMarkdown(text, div); copyButtons(div); } else div.textContent = text;
  if (human) {  // an operator wrote this, not the agent: say so
    div.classList.add("human");
    div.prepend(Object.assign(document.createElement("span"), { className: "who", textContent: "Operator" }));
  }
  log.append(div);
  toEnd(role === "user");  // one's own message (sent, or a conversation opened) brings the end into view
  return div;
}

// Who is signed in (the session cookie): their name and Sign out, else a Sign in link back to this page.
async function loadMe() {
  me = null;
  if (embedAgent) return;  // inside another site's page: anonymous (no cookie crosses sites), no account links
  try {
    const response = await fetch("/auth/me");
    if (response.ok) {
      const who = await response.json();
      dev = who.via === "dev";
      if (who.via === "session" && who.mfa_done) me = who;
    }
  } catch { /* offline: stays anonymous */ }
  const account = $("account");
  if (me) {
    const name = me.user.name || me.user.email || me.user.id;
    const link = Object.assign(document.createElement("a"), { href: "/auth/account", textContent: name });
    const out = Object.assign(document.createElement("button"), { type: "button", textContent: "Sign out" });
    out.addEventListener("click", signOut);
    // "Signed in as" is heard, and on a narrow window only heard: the header had a row of its own for it
    const label = Object.assign(document.createElement("span"), { className: "signed-in-as", textContent: "Signed in as " });
    account.replaceChildren(label, link, " ", out);
  } else if (dev) {
    account.replaceChildren("Dev mode: no sign-in or keys");
  } else {
    account.replaceChildren(Object.assign(document.createElement("a"),
      { href: `/auth/login?next=${encodeURIComponent("/chat/")}`, textContent: "Sign in" }));
  }
  $("key-button").hidden = !!me || dev;
  $("history").hidden = !me;
  setupNotify();
}

async function signOut() {
  await notificationsOff().catch(() => { /* offline: the server drops it once the session has ended */ });
  await fetch("/auth/logout", { method: "POST", headers: { "X-CSRF-Token": me.csrf } });
  me = null;
  await loadMe();
  await loadAgents();
}

// A signed-in user's conversations with this agent, from every device, newest first.
// The caller's conversations with the agent, newest first: a signed-in person's from every device; an anonymous
// visitor's (their session's), an API key's or dev mode's from here. Only signed-in people had the list, so a
// visitor's "New conversation" lost the one before for good, though the server kept it for their session.
async function loadHistory() {
  const history = $("history");
  const agent = agentSelect.value;
  if (embedAgent || !agent || !(me || dev || credential())) { history.hidden = !me; return; }
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
  history.hidden = !me && !page.data.length;  // a visitor's list shows once there is something in it
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

// Rename and Delete act on the conversation shown: they are there while there is one (not in an embedded chat).
function showConversationActions() {
  const none = !!embedAgent || !agentSelect.value || !store.conversation(agentSelect.value);
  $("rename").hidden = none;
  $("delete").hidden = none;
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
  if (controller) { showStatus("An answer is still coming: stop it first (Stop, or Escape), then delete."); return; }
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

async function loadAgents() {
  usingKey = true;
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
  $("key-button").hidden = !!me || dev;
  if (!agents.length) {
    $("key-form").hidden = !!me || dev;
    if (!badKey) showStatus(me || dev ? "No agent's chat is open to you." : store.key
      ? "This key opens no agent's chat." : "Sign in, or enter an API key, to chat.");
  }
  usingKey = !!store.key && !badKey;
  agentSelect.replaceChildren(...agents.map((a) => new Option(a.name, a.name)));
  const saved = localStorage.getItem("halguru.agent");
  if (agents.some((a) => a.name === saved)) agentSelect.value = saved;
  await loadConversation();
  await loadHistory();
}

// The address says which conversation is shown (/chat/?agent=A&conversation=ID): a notification opens it, and
// the service worker shows none for the conversation a focused window already shows.
function showInUrl(agent, id) {
  if (embedAgent) return;
  const query = agent && id ? `?agent=${encodeURIComponent(agent)}&conversation=${encodeURIComponent(id)}` : "";
  if (location.search !== query) history.replaceState(null, "", `/chat/${query}`);
}

// A page of conversation `id`'s messages, oldest first, from `cursor` (null: the first page): { data, next_cursor }.
async function messagePage(id, cursor) {
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
async function loadConversation() {
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

// A turn still being answered when the conversation was opened (the page reloaded mid-answer: the run goes on
// without it): its question, and its answer followed to its end from what the server stored (tokens are not kept:
// it arrives whole, as a resumed stream's does). Stop stops it here too.
async function followRunning(running) {
  if (controller) return;
  addMessage("user", running.input);
  const bubble = addMessage("assistant", "");
  working(bubble, true);
  answering.runId = running.run_id;
  try {
    const response = await api(`/runs/${encodeURIComponent(running.run_id)}/events`,
      { signal: controller.signal, headers: { Accept: "text/event-stream" } });
    await streamAnswer(response, bubble);
  } catch (error) {
    if (error.name !== "AbortError") { failed(bubble, error.message); showStatus(error.message); }
  } finally {
    working(bubble, false);
  }
}

// The page stops showing the answer coming in (another conversation opened): its run goes on, on the server.
function leaveAnswer() {
  if (!controller) return;
  answering.left = true;
  controller.abort();
  controller = null;
  $("send").disabled = false; $("stop").hidden = true;
}

// Stop: the server stops the run, on whichever server runs it (the stream then ends, saying so). A run still
// waiting for its place has no id yet: it is stopped as soon as its first event names it.
async function stopAnswer() {
  if (!controller) return;
  const mine = answering;
  showStatus("Stopping…");
  if (!mine.runId) { mine.stopWanted = true; return; }
  try {
    await api(`/runs/${encodeURIComponent(mine.runId)}/cancel`, { method: "POST" });
  } catch (error) {
    if (error.status !== 409) { showStatus(`Not stopped: ${error.message}`); return; }  // 409: it had ended
  }
  // Between two tries to reconnect nothing will come to say it stopped: stop waiting for it.
  if (answering === mine && !mine.reading && controller) controller.abort();
}

async function ensureSession() {
  if (me || (usingKey && store.key) || store.session) return;
  store.session = (await (await api("/session", { method: "POST" })).json()).token;
}

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
  if (!agent || controller) return;
  showStatus("");
  const question = addMessage("user", text);
  const bubble = addMessage("assistant", "");
  working(bubble, true);
  const mine = answering;
  const post = async () => {
    const id = await ensureConversation(agent, text);
    const response = await api(`/conversations/${encodeURIComponent(id)}/messages`, {
      // detach: a reload (or a dropped connection) leaves the answer running; Stop asks the server to stop it
      method: "POST", body: JSON.stringify({ content: text, stream: true, detach: true }),
      headers: { Accept: "text/event-stream" }, signal: controller.signal,
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

// This browser's other tabs showing the same conversation draw a turn when its answer ends (they showed it only
// once reloaded, and a message sent from them followed a turn they had never shown).
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("halguru.chat") : null;
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
  if (!controller && data.agent === agentSelect.value && data.conversation === store.conversation(data.agent)) {
    loadConversation();
  }
});

// While an answer comes, its bubble is busy, Send waits and Stop (the controller's abort) shows; its end is heard.
function working(bubble, on) {
  if (on) {
    bubble.setAttribute("aria-busy", "true"); controller = bubble.controller = new AbortController();
    answering = { runId: "", stopWanted: false, left: false, reading: false };
    announce("Answering…");
  } else {
    bubble.removeAttribute("aria-busy");
    if (controller !== bubble.controller) return;  // left for another answer meanwhile: that one is shown now
    controller = null; announce(spoken(bubble));
    // back to the box from Stop (about to hide) or nowhere; not from where the user went meanwhile
    if ([document.body, $("stop"), $("send")].includes(document.activeElement)) input.focus();
  }
  // Pressed from the keyboard, a disabled Send (or a Try again taken away) dropped the focus to the page's start
  const dropped = on && [$("send"), document.body].includes(document.activeElement);
  $("send").disabled = on; $("stop").hidden = !on;
  if (dropped) $("stop").focus();
}

// A stream that broke before its answer ended (its server went away, or is restarting: loading a real model takes
// a while) is followed again from the last event got, on whichever server answers, after about 1, 2, 4... s (15 at
// most) for two minutes; then a button tries again. The answer arrives whole in run_finished (tokens are not kept).
// Each wait is drawn between half and one and a half times it: every tab's stream broke at the same moment when
// their server went away, and they would all come back to it at the same moments.
const RECONNECT_MS = 120000, RECONNECT_MAX_WAIT_MS = 15000;

// The answer's events into its bubble. Tokens are drawn at most once a frame, and only what they add
// (MarkdownView): drawing the whole answer again on every chunk froze the tab for seconds on long answers.
async function streamAnswer(response, bubble) {
  const view = new MarkdownView(bubble);
  let answer = "", frame = 0, finished = false;
  const draw = () => { cancelAnimationFrame(frame); frame = 0; view.update(answer); toEnd(); };
  const onEvent = (type, event) => {
    if (type === "token") { answer += event.text; frame ||= requestAnimationFrame(draw); return; }
    if (type === "run_started" && !answering.runId) {
      answering.runId = event.run_id;
      if (answering.stopWanted) stopAnswer();
    }
    if (type === "tool_call") log.insertBefore(said(Object.assign(document.createElement("div"),
      { className: "msg tool", textContent: `→ ${event.name}` }), "Tool call"), bubble);
    else if (type === "model_result" && event.tool_calls.length) { answer = ""; draw(); }
    else if (type === "run_finished") {
      if (event.output !== answer || bubble.classList.contains("failed")) view.reset();  // not what streamed
      answer = event.output;
      draw();
      copyButtons(bubble);
      if (event.status !== "ok") {
        const why = event.status === "cancelled" ? CUT.cancelled : event.error || event.status;
        failed(bubble, why); showStatus(why);
      }
      finished = true;
    }
    else if (type === "error" && event.fatal) {
      draw(); failed(bubble, cutShort(event)); showStatus(cutShort(event)); finished = true;
    }
    toEnd();
  };
  const seen = { lastId: "" };
  const reading = async (read) => {
    const mine = answering;
    mine.reading = true;
    try { await read; } finally { mine.reading = false; }
  };
  let refused = "";  // why the server would not give the run (not ours, gone with its session): no use waiting
  const reconnect = async () => {
    const until = Date.now() + RECONNECT_MS;
    for (let wait = 1000; !finished && seen.lastId && Date.now() < until;
      wait = Math.min(2 * wait, RECONNECT_MAX_WAIT_MS)) {
      const drawn = Math.round(wait * (0.5 + Math.random()));
      showStatus(`The connection to the server broke; reconnecting in ${(drawn / 1000).toFixed(1)} s…`);
      await pause(drawn, bubble.controller.signal);
      const run = encodeURIComponent(seen.lastId.split(":")[0]);
      answering.runId ||= decodeURIComponent(run);
      const more = await api(`/runs/${run}/events`, { signal: bubble.controller.signal,
        headers: { Accept: "text/event-stream", "Last-Event-ID": seen.lastId } }).catch((error) => {
        if (error.status >= 400 && error.status < 500 && error.status !== 429) refused = error.message;
        return rethrowAbort(error);
      });
      if (refused) return;
      if (more && more.status === 204) { seen.lastId = ""; return; }  // the server says we have its end
      if (more) { showStatus(""); await reading(readEvents(more, onEvent, seen)).catch(rethrowAbort); }
    }
  };
  const cutOff = () => {
    if (finished) return;
    const why = refused || (seen.lastId ? "The server could not be reached, so the answer stopped here."
      : "The answer was cut off; send the message again.");
    failed(bubble, why);
    showStatus(why);
    if (refused || !seen.lastId) return;
    const note = bubble.lastChild;
    const again = Object.assign(document.createElement("button"), { type: "button", textContent: "Try again" });
    note.append(" ", again);
    again.addEventListener("click", async () => {
      if (controller) { showStatus("An answer is still coming: try again when it has ended."); return; }
      note.remove(); bubble.classList.remove("failed");
      working(bubble, true);
      try {
        await reconnect();
      } catch (error) {
        if (error.name !== "AbortError") throw error;
        failed(bubble, CUT.cancelled); showStatus("Stopped."); return;
      } finally {
        if (frame) draw();
        working(bubble, false);
      }
      cutOff();
    });
  };
  try {
    await reading(readEvents(response, onEvent, seen)).catch(rethrowAbort);
    await reconnect();
  } finally {
    if (frame) draw();  // what came before a stop or a break, before any note under it
  }
  cutOff();
}

// Waits `ms`, or throws an AbortError at once when `signal` aborts (Stop).
function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}

// While a person holds the conversation, their answers are fetched every few seconds and shown as they come.
let heldTimer = null;
function watchHeld(agent, id) {
  clearInterval(heldTimer);
  // each look reads on from the last page it saw (`cursor`, `count` of its messages seen): one page, not all
  let cursor = null, count = null;
  const look = async () => {
    if (agentSelect.value !== agent || store.conversation(agent) !== id) { clearInterval(heldTimer); return; }
    try {
      for (;;) {
        const page = await messagePage(id, cursor);
        if (count !== null) {
          for (const m of page.data.slice(count)) {
            if (m.role === "assistant" && m.content) announce(spoken(addMessage("assistant", m.content, m.human)));
          }
        }
        if (!page.next_cursor) { count = page.data.length; break; }
        cursor = page.next_cursor;
        if (count !== null) count = 0;  // a page past the one seen: all of it is new
      }
    } catch { /* tried again next time */ }
  };
  look();
  heldTimer = setInterval(look, 3000);
}

// A PDF, text or Markdown file for the agent, in this conversation only (the server parses and limits it).
async function attach(file) {
  const agent = agentSelect.value;
  if (!agent || !file) return;
  if (controller) { showStatus(`An answer is still coming: attach ${file.name} when it has ended.`); return; }
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

// Notifications (Web Push): a signed-in browser may ask to hear of answers that come while the chat is in the
// background. The subscription is this browser's and this sign-in's: it is posted again after each sign-in (by
// the same person), and dropped on sign-out.
const notify = $("notify");
const pushable = () => !embedAgent && window.isSecureContext && "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
const notifyUser = {
  get() { return localStorage.getItem("halguru.notify") || ""; },
  set(v) { v ? localStorage.setItem("halguru.notify", v) : localStorage.removeItem("halguru.notify"); },
};

function base64url(text) {
  const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function showNotify(on) { notify.setAttribute("aria-pressed", String(on)); }

async function setupNotify() {
  notify.hidden = true;
  if (!me || !pushable()) return;
  try { notify.dataset.key = (await (await api("/push/key")).json()).public_key; } catch { return; }  // off here
  notify.hidden = false;
  showNotify(false);
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.getSubscription();
  if (!subscription || Notification.permission !== "granted" || notifyUser.get() !== me.user.id) return;
  try {
    await api("/push/subscriptions", { method: "POST", body: JSON.stringify(subscription.toJSON()) });
    showNotify(true);
  } catch { /* shown as off: a click subscribes again */ }
}

async function notificationsOn() {
  if (await Notification.requestPermission() !== "granted") {
    showStatus("Notifications are blocked for this site in the browser's settings.");
    return;
  }
  const registration = await navigator.serviceWorker.ready;
  const old = await registration.pushManager.getSubscription();
  if (old) await old.unsubscribe();  // maybe someone else's, or made with another server key: a fresh one
  const subscription = await registration.pushManager.subscribe(
    { userVisibleOnly: true, applicationServerKey: base64url(notify.dataset.key) });
  await api("/push/subscriptions", { method: "POST", body: JSON.stringify(subscription.toJSON()) });
  notifyUser.set(me.user.id);
  showNotify(true);
  showStatus("Notifications are on: answers that come while the chat is in the background show up here.");
}

async function notificationsOff() {
  notifyUser.set("");
  if (!pushable() || !me) return;
  showNotify(false);
  const registration = await navigator.serviceWorker.getRegistration("/chat/");
  const subscription = registration && await registration.pushManager.getSubscription();
  if (!subscription) return;
  await api(`/push/subscriptions?endpoint=${encodeURIComponent(subscription.endpoint)}`, { method: "DELETE" });
  await subscription.unsubscribe();
}

notify.addEventListener("click", async () => {
  showStatus("");
  notify.disabled = true;
  try {
    if (notify.getAttribute("aria-pressed") === "true") {
      await notificationsOff();
      showStatus("Notifications are off.");
    } else await notificationsOn();
  } catch (error) {
    showStatus(`Notifications: ${error.message}`);
  } finally {
    notify.disabled = false;
  }
});

// A push arrived (the service worker asks): the window showing that conversation reloads it (unless an answer is
// streaming in) and answers that it shows it, so no notification pops up over it.
if (pushable()) {
  navigator.serviceWorker.addEventListener("message", (event) => {
    const data = event.data || {};
    if (data.type !== "push") return;
    const shown = !!data.conversation && data.conversation === store.conversation(agentSelect.value)
      && document.visibilityState === "visible";
    if (shown && !controller) loadConversation();
    if (event.ports[0]) event.ports[0].postMessage({ shown });
  });
}

// Reads an SSE response, handing each event to onEvent(type, data); seen.lastId follows the events' ids.
async function readEvents(response, onEvent, seen) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      seen.lastId = /^id: (.*)$/m.exec(block)?.[1] || seen.lastId;
      const type = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (type && data) onEvent(type, JSON.parse(data));
    }
  }
}

// A broken stream is worth a retry; the Stop button (an abort) is not.
function rethrowAbort(error) {
  if (error.name === "AbortError") throw error;
  return null;
}

function newConversation() {
  leaveAnswer();
  store.setConversation(agentSelect.value, null);
  showInUrl(null, null);
  $("history").value = "";
  log.replaceChildren();
  showStatus("");
  input.focus();
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  // Not sendable now: the text stays in the box (it was cleared and silently dropped).
  if (controller) { showStatus("An answer is still coming: send this when it has ended, or stop it first (Stop, or Escape)."); return; }
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
  if (e.key === "Escape" && controller) stopAnswer();
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
$("key-button").addEventListener("click", () => { $("key-form").hidden = !$("key-form").hidden; $("key").focus(); });
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  // A header carries printable ASCII only: a key with "…" or a smart quote in it was saved, and every call then
  // failed in the browser before it went out (no agents listed, until the site's data was cleared).
  if (!KEYLIKE.test($("key").value.trim())) {
    showStatus("That is not an API key: a key has no spaces and only ASCII characters; paste it again.");
    $("key").focus();
    return;
  }
  store.key = $("key").value.trim(); $("key").value = ""; $("key-form").hidden = true;
  showStatus(""); loadAgents();
});
agentSelect.addEventListener("change", () => {
  localStorage.setItem("halguru.agent", agentSelect.value); loadConversation(); loadHistory();
});
$("history").addEventListener("change", () => {
  if ($("history").value === OLDER) { loadOlder(); return; }
  store.setConversation(agentSelect.value, $("history").value || null);
  loadConversation();
});

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
