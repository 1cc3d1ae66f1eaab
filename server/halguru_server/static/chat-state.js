// The web chat's shared parts: its elements, what the page holds now (the answer coming in, who is signed in),
// what the browser keeps (key, session token, each agent's conversation) and the status line.

export const $ = (id) => document.getElementById(id);
export const log = $("log"), input = $("input"), agentSelect = $("agent"), statusLine = $("status");
// What the page holds now, shared by its modules (an imported binding cannot be assigned: these are properties).
export const state = {
  controller: null,  // the answer coming in now: its abort stops the page reading it (not the run)
  // That answer's run (its id once known), and whether the page has left it or asked it to stop before it had an id.
  answering: { runId: "", stopWanted: false, left: false, reading: false },
  usingKey: true,  // send the stored key; false once the server refused it (then: the session token)
  me: null,  // the signed-in user (GET /auth/me through the session cookie), else null
  dev: false,  // `halguru serve --dev` (/auth/me's via): no keys, no accounts, so no key or sign-in controls
};
export const embedAgent = document.body.dataset.embed || "";  // the widget's iframe (/chat/embed/NAME): that agent only

export const KEYLIKE = /^[\x21-\x7e]*$/;  // what a header can carry: printable ASCII, no spaces
export const shownHere = new Map();  // agent → the conversation this tab shows (see store.conversation)
export const titles = new Map();  // conversation id → its title, from the conversations list last loaded (Rename)
export const store = {
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

export function showStatus(text) { statusLine.textContent = text || ""; }

// Rename and Delete act on the conversation shown: they are there while there is one (not in an embedded chat).
export function showConversationActions() {
  const none = !!embedAgent || !agentSelect.value || !store.conversation(agentSelect.value);
  $("rename").hidden = none;
  $("delete").hidden = none;
}

// A <select> whose choice opens something (a conversation, an agent). Chromium fires `change` at each arrow key
// on a closed one, so arrowing through the list opened every conversation on the way (WCAG 3.2.2): a choice
// arrowed to is made by Enter or by leaving the control; a click, or an option picked from the open list, at once.
const ARROWS = new Set(["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);
export function onChosen(select, handler) {
  let arrowed = false, pending = false;
  select.addEventListener("keydown", (e) => {
    arrowed = ARROWS.has(e.key);
    if (e.key === "Enter" && pending) { pending = false; handler(); }
  });
  select.addEventListener("pointerdown", () => { arrowed = false; });
  select.addEventListener("change", () => { if (arrowed) pending = true; else { pending = false; handler(); } });
  select.addEventListener("blur", () => { if (pending) { pending = false; handler(); } });
}
