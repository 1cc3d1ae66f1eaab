// The conversation's log: drawing messages (Markdown answers, Copy buttons, attachments, operators'), following
// its end, what a screen reader hears, and the notes under an answer that failed or was cut short.

import { renderMarkdown } from "/chat/static/markdown.js";
import { $, agentSelect, log } from "/chat/static/chat-state.js";

// The log follows what comes in (a streaming answer, an operator's message) only while the reader is at its end:
// one who scrolled up to read an earlier part was pulled back down on every chunk. Only a scroll up lets go (the
// page's own scrolls go down); reaching the end again, or sending a message, follows again.
let following = true, lastTop = 0;
log.addEventListener("scroll", () => {
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 40) following = true;
  else if (log.scrollTop < lastTop) following = false;
  lastTop = log.scrollTop;
});
export function toEnd(always = false) {
  if (always) following = true;
  if (following) log.scrollTop = log.scrollHeight;
}

// What a screen reader hears of the conversation: an answer once it has ended and an operator's message, each
// once. The log is no live region: it read every chunk drawn while an answer streamed (and a whole conversation
// when one was opened). Errors are heard from the status line.
const announcer = $("announce");
export function announce(text) { announcer.textContent = text; }
export const spoken = (bubble) => [...bubble.childNodes].filter((n) => !n.classList?.contains("error") && !n.classList?.contains("copy"))
  .map((n) => n.textContent).join(" ").trim();

// A failed send says why in its own bubble (plain text, never HTML), not only in the status line.
export function failed(bubble, message) {
  const note = document.createElement("p");
  note.className = "error";
  note.textContent = `⚠ ${message}`;
  bubble.classList.add("failed");
  bubble.append(note);
}

// What the page says under an answer whose run ended short of "ok" (the messages' run_status).
export const CUT = {
  cancelled: "This answer was stopped before it finished.",
  failed: "This answer failed before it finished.",
  limited: "This answer was cut short by a limit.",
  interrupted: "This answer was cut off when the server stopped.",
  paused: "This answer waits for a tool call to be approved.",
};

// A stream's fatal error in the page's words where it says how the answer ended (a run whose server went away:
// "interrupted"); the server's own wording is for API clients ("GET /v1/runs/ID shows what it did").
export function cutShort(event) {
  return CUT[event.kind === "shutdown" ? "interrupted" : event.kind] || event.message;
}

export const ATTACHED = "[Attached file: ";  // how the server stores an attachment's text in the conversation

// Each code block of an ended answer has a Copy button above it, where the browser lets the page write to the
// clipboard (https, or localhost); what it did is heard, and shown on the button for 2 s.
export function copyButtons(bubble) {
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
export function said(div, who) {
  div.setAttribute("role", "article");
  div.setAttribute("aria-label", who);
  return div;
}

export function addMessage(role, text, human = false) {
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
