// The web chat's service worker: it keeps the app shell (the page, its scripts, styles and icons) for offline
// starts and NEVER caches API answers or conversations (/chat/api/*, /auth/*, /v1/* are not even looked at).
// It also shows the server's Web Push notifications (an answer that came while the chat was in the background).
// The server fills in VERSION (a hash of the static files): a new release installs a new cache.
const VERSION = "__VERSION__";
const CACHE = `halguru-shell-${VERSION}`;
// Every module the page imports is listed: one left out would fail chat.js's imports on an offline start.
const SHELL = ["/chat/", "/chat/offline", "/chat/manifest.webmanifest", "/chat/static/chat.css",
  "/chat/static/chat.js", "/chat/static/chat-state.js", "/chat/static/chat-messages.js",
  "/chat/static/chat-account.js", "/chat/static/chat-conversations.js", "/chat/static/chat-streaming.js",
  "/chat/static/chat-push.js", "/chat/static/markdown.js", "/chat/static/favicon.svg",
  "/chat/static/icon-192.png", "/chat/static/icon-512.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("halguru-shell-") && k !== CACHE)
      .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// Only the shell: the chat page itself and /chat/static/*; everything else goes to the network untouched.
function isShell(url) {
  return url.origin === self.location.origin && (SHELL.includes(url.pathname)
    || url.pathname === "/chat" || url.pathname.startsWith("/chat/static/"));
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || !isShell(url)) return;
  if (request.mode === "navigate") {  // the page: fresh when online; offline, the page that says what works
    event.respondWith(fetch(request, { cache: "no-cache" }).catch(() => caches.match("/chat/offline")));
    return;
  }
  // Scripts, styles, icons: the network first (a new release shows at once), the cache when it is away.
  event.respondWith(fetch(request, { cache: "no-cache" }).then((response) => {
    if (response.ok && response.type === "basic") {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(request, copy));
    }
    return response;
  }).catch(() => caches.match(request).then((hit) => hit || Response.error())));
});

// A push from the server (halguru_server.push): {title, body, url, tag, conversation}. Every open window of the
// chat hears of it (the one showing that conversation reloads it and says so); the notification is shown unless
// a focused window answered that it shows that conversation.
function tell(client, conversation) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(false), 1000);  // a window that does not answer shows nothing
    channel.port1.onmessage = (event) => { clearTimeout(timer); resolve(!!(event.data && event.data.shown)); };
    client.postMessage({ type: "push", conversation }, [channel.port2]);
  });
}

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = { body: event.data ? event.data.text() : "" }; }
  let url = new URL(typeof data.url === "string" ? data.url : "/chat/", self.location.origin);
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/chat/")) url = new URL("/chat/", self.location.origin);
  const conversation = typeof data.conversation === "string" ? data.conversation : null;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true })
    .then((windows) => Promise.all(windows.map((w) => tell(w, conversation)
      .then((shown) => shown && w.focused && w.visibilityState === "visible"))))
    .then((inFront) => {
      if (conversation && inFront.some(Boolean)) return undefined;
      return self.registration.showNotification(String(data.title || "halguru"), {
        body: String(data.body || ""), tag: data.tag ? String(data.tag) : undefined, renotify: !!data.tag,
        icon: "/chat/static/icon-192.png", data: { url: url.href },
      });
    }));
});

// A click on a notification: the chat window showing that conversation, else any chat window taken there, else a
// new one.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || new URL("/chat/", self.location.origin).href;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    const same = windows.find((w) => w.url === url);
    if (same) return same.focus();
    const chat = windows.find((w) => new URL(w.url).pathname.startsWith("/chat/") && "navigate" in w);
    if (chat) return chat.navigate(url).then((w) => (w || chat).focus());
    return self.clients.openWindow(url);
  }));
});
