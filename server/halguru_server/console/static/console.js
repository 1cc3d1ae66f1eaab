// The admin console's live parts (no inline script: CSP script-src 'self').
// <div data-live="/admin/...fragment" data-every="3">: its HTML is refetched every N seconds (paused while the
// tab is hidden) and swapped in; <form data-confirm="question">: asks before posting.
(function () {
  "use strict";

  function refresh(el) {
    // Not while the keyboard is in it: the swap took the focus away (to the page's start) every few seconds.
    if (document.hidden || el.dataset.busy || el.contains(document.activeElement)) return;
    el.dataset.busy = "1";
    fetch(el.dataset.live, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) {
        // Signed out meanwhile: the fragment's URL was redirected to the sign-in page; reload to go there.
        if (r.redirected) { window.location.reload(); return Promise.reject("signed out"); }
        return r.ok ? r.text() : Promise.reject(r.status);
      })
      .then(function (html) {
        // A table scrolled sideways (on a phone) stays where it was: the swap snapped it back to its start.
        var scrolled = Array.prototype.map.call(el.querySelectorAll(".table-wrap"), function (w) { return w.scrollLeft; });
        el.innerHTML = html;
        el.querySelectorAll(".table-wrap").forEach(function (w, i) { w.scrollLeft = scrolled[i] || 0; });
        el.dispatchEvent(new CustomEvent("console:updated", { bubbles: true }));
        var stamp = document.getElementById(el.id + "-stamp");
        if (stamp) stamp.textContent = "Updated " + new Date().toLocaleTimeString();
      })
      .catch(function (status) {
        var stamp = document.getElementById(el.id + "-stamp");
        if (stamp) stamp.textContent = "Live update failed (" + status + "); retrying";
      })
      .finally(function () { delete el.dataset.busy; });
  }

  // A table (or trace) wider than the screen scrolls sideways in its .table-wrap: while it does, the box takes
  // the keyboard's focus (the arrow keys scroll it) as a region named after its caption; else it is no tab stop.
  function scrollers() {
    document.querySelectorAll(".table-wrap").forEach(function (wrap) {
      var caption = wrap.querySelector("caption");
      if (wrap.scrollWidth > wrap.clientWidth) {
        wrap.tabIndex = 0;
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-label", caption ? caption.textContent.trim() : wrap.dataset.label || "Table");
      } else {
        ["tabindex", "role", "aria-label"].forEach(function (name) { wrap.removeAttribute(name); });
      }
    });
  }

  // <time datetime="...Z" title="... UTC">: shown in the viewer's own time zone (named: "2026-11-02 17:30:00
  // GMT+5:30"); the UTC value stays in the title, on hover. Without the script the page reads in UTC.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zone(date) {
    try {
      var part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date)
        .filter(function (p) { return p.type === "timeZoneName"; })[0];
      return part ? " " + part.value : "";
    } catch (e) { return ""; }
  }
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      el.textContent = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
        pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) + zone(date);
      el.dataset.local = "1";
    });
  }

  // <button data-copy="conv_1a2b" hidden>: shown once the script runs; a click puts the id on the clipboard and
  // the button says "Copied" for a moment. navigator.clipboard exists only on https or localhost; elsewhere (a
  // server on a LAN address over http) the text is copied from a selected, off-screen field.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var field = document.createElement("textarea");
      field.value = text;
      field.setAttribute("readonly", "");
      field.className = "visually-hidden";
      document.body.appendChild(field);
      field.select();
      var done = false;
      try { done = document.execCommand("copy"); } catch (e) { done = false; }
      document.body.removeChild(field);
      if (done) resolve(); else reject("not allowed");
    });
  }
  function copyButtons(root) {
    (root || document).querySelectorAll("button[data-copy][hidden]").forEach(function (b) { b.hidden = false; });
  }

  function start() {
    copyButtons();
    document.addEventListener("console:updated", function (event) { copyButtons(event.target); });
    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("button[data-copy]");
      if (!button) return;
      var label = button.textContent;
      copyText(button.dataset.copy).then(function () { button.textContent = "Copied"; },
                                         function () { button.textContent = "Copy failed"; });
      setTimeout(function () { button.textContent = label; }, 2000);
    });
    localTimes();
    document.addEventListener("console:updated", function (event) { localTimes(event.target); });
    scrollers();
    window.addEventListener("resize", scrollers);
    document.addEventListener("console:updated", scrollers);
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var every = Math.max(1, parseFloat(el.dataset.every || "3")) * 1000;
      setInterval(function () { refresh(el); }, every);
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) document.querySelectorAll("[data-live]").forEach(refresh);
    });
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
