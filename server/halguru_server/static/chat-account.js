// Who the chat calls the server as: the signed-in account (cookie + CSRF token), an API key, or an anonymous
// session token; the API helper every call goes through; sign-in/out and the API key bar.

import { $, embedAgent, KEYLIKE, shownHere, showStatus, state, store } from "/chat/static/chat-state.js";
import { loadAgents } from "/chat/static/chat-conversations.js";
import { notificationsOff, setupNotify } from "/chat/static/chat-push.js";

// What a call is sent as: the signed-in user (cookie), the API key, the anonymous session token, or nothing.
export function credential(anonymous = false) {
  if (state.me) return "user";
  if (store.key && state.usingKey && !anonymous) return "key";
  return store.session ? "session" : "";
}

function headers(extra = {}, anonymous = false) {
  const h = { "Content-Type": "application/json", ...extra };
  const via = credential(anonymous);
  if (via === "user") h["X-CSRF-Token"] = state.me.csrf;  // the cookie says who; its CSRF token goes with every call
  else if (via === "key") h.Authorization = `Bearer ${store.key}`;
  else if (via === "session") h["X-Chat-Session"] = store.session;
  return h;
}

export async function api(path, options = {}) {
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

// Who is signed in (the session cookie): their name and Sign out, else a Sign in link back to this page.
export async function loadMe() {
  state.me = null;
  if (embedAgent) return;  // inside another site's page: anonymous (no cookie crosses sites), no account links
  try {
    const response = await fetch("/auth/me");
    if (response.ok) {
      const who = await response.json();
      state.dev = who.via === "dev";
      if (who.via === "session" && who.mfa_done) state.me = who;
    }
  } catch { /* offline: stays anonymous */ }
  const account = $("account");
  if (state.me) {
    const name = state.me.user.name || state.me.user.email || state.me.user.id;
    const link = Object.assign(document.createElement("a"), { href: "/auth/account", textContent: name });
    const out = Object.assign(document.createElement("button"), { type: "button", textContent: "Sign out" });
    out.addEventListener("click", signOut);
    // "Signed in as" is heard, and on a narrow window only heard: the header had a row of its own for it
    const label = Object.assign(document.createElement("span"), { className: "signed-in-as", textContent: "Signed in as " });
    account.replaceChildren(label, link, " ", out);
  } else if (state.dev) {
    account.replaceChildren("Dev mode: no sign-in or keys");
  } else {
    account.replaceChildren(Object.assign(document.createElement("a"),
      { href: `/auth/login?next=${encodeURIComponent("/chat/")}`, textContent: "Sign in" }));
  }
  $("key-button").hidden = !!state.me || state.dev;
  $("history").hidden = !state.me;
  setupNotify();
}

async function signOut() {
  await notificationsOff().catch(() => { /* offline: the server drops it once the session has ended */ });
  await fetch("/auth/logout", { method: "POST", headers: { "X-CSRF-Token": state.me.csrf } });
  state.me = null;
  await loadMe();
  await loadAgents();
}

export async function ensureSession() {
  if (state.me || (state.usingKey && store.key) || store.session) return;
  store.session = (await (await api("/session", { method: "POST" })).json()).token;
}

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
