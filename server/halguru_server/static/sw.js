// The web chat's service worker: it keeps the app shell (the page, its scripts, styles and icons) for offline
// starts and NEVER caches API answers or conversations (/chat/api/*, /auth/*, /v1/* are not even looked at).
// The server fills in VERSION (a hash of the static files): a new release installs a new cache.
const VERSION = "__VERSION__";
const CACHE = `halguru-shell-${VERSION}`;
const SHELL = ["/chat/", "/chat/offline", "/chat/manifest.webmanifest", "/chat/static/chat.css",
  "/chat/static/chat.js", "/chat/static/markdown.js", "/chat/static/favicon.svg",
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
