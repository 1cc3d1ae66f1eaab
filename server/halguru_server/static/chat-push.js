import { $, agentSelect, embedAgent, showStatus, state, store } from "/chat/static/chat-state.js";
import { api } from "/chat/static/chat-account.js";
import { loadConversation } from "/chat/static/chat-conversations.js";

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

export async function setupNotify() {
  notify.hidden = true;
  if (!state.me || !pushable()) return;
  try { notify.dataset.key = (await (await api("/push/key")).json()).public_key; } catch { return; }  // off here
  notify.hidden = false;
  showNotify(false);
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.getSubscription();
  if (!subscription || Notification.permission !== "granted" || notifyUser.get() !== state.me.user.id) return;
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
  notifyUser.set(state.me.user.id);
  showNotify(true);
  showStatus("Notifications are on: answers that come while the chat is in the background show up here.");
}

export async function notificationsOff() {
  notifyUser.set("");
  if (!pushable() || !state.me) return;
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
    if (shown && !state.controller) loadConversation();
    if (event.ports[0]) event.ports[0].postMessage({ shown });
  });
}
