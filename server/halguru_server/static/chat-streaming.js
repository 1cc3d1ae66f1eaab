// An answer as it comes in: the SSE stream drawn into its bubble, resumed after a broken connection, Stop, a
// run still going when the page was (re)loaded, and a conversation a person has taken over.

import { MarkdownView } from "/chat/static/markdown.js";
import { $, agentSelect, input, log, showStatus, state, store } from "/chat/static/chat-state.js";
import {
  addMessage, announce, copyButtons, CUT, cutShort, failed, said, spoken, toEnd,
} from "/chat/static/chat-messages.js";
import { api } from "/chat/static/chat-account.js";
import { messagePage } from "/chat/static/chat-conversations.js";

// A turn still being answered when the conversation was opened (the page reloaded mid-answer: the run goes on
// without it): its question, and its answer followed to its end from what the server stored (tokens are not kept:
// it arrives whole, as a resumed stream's does). Stop stops it here too.
export async function followRunning(running) {
  if (state.controller) return;
  addMessage("user", running.input);
  const bubble = addMessage("assistant", "");
  working(bubble, true);
  state.answering.runId = running.run_id;
  try {
    const response = await api(`/runs/${encodeURIComponent(running.run_id)}/events`,
      { signal: state.controller.signal, headers: { Accept: "text/event-stream" } });
    await streamAnswer(response, bubble);
  } catch (error) {
    if (error.name !== "AbortError") { failed(bubble, error.message); showStatus(error.message); }
  } finally {
    working(bubble, false);
  }
}

// The page stops showing the answer coming in (another conversation opened): its run goes on, on the server.
export function leaveAnswer() {
  if (!state.controller) return;
  state.answering.left = true;
  state.controller.abort();
  state.controller = null;
  $("send").disabled = false; $("stop").hidden = true;
}

// Stop: the server stops the run, on whichever server runs it (the stream then ends, saying so). A run still
// waiting for its place has no id yet: it is stopped as soon as its first event names it.
export async function stopAnswer() {
  if (!state.controller) return;
  const mine = state.answering;
  showStatus("Stopping…");
  if (!mine.runId) { mine.stopWanted = true; return; }
  try {
    await api(`/runs/${encodeURIComponent(mine.runId)}/cancel`, { method: "POST" });
  } catch (error) {
    if (error.status !== 409) { showStatus(`Not stopped: ${error.message}`); return; }  // 409: it had ended
  }
  // Between two tries to reconnect nothing will come to say it stopped: stop waiting for it.
  if (state.answering === mine && !mine.reading && state.controller) state.controller.abort();
}

// While an answer comes, its bubble is busy, Send waits and Stop (the controller's abort) shows; its end is heard.
export function working(bubble, on) {
  if (on) {
    bubble.setAttribute("aria-busy", "true"); state.controller = bubble.controller = new AbortController();
    state.answering = { runId: "", stopWanted: false, left: false, reading: false };
    announce("Answering…");
  } else {
    bubble.removeAttribute("aria-busy");
    if (state.controller !== bubble.controller) return;  // left for another answer meanwhile: that one is shown now
    state.controller = null; announce(spoken(bubble));
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
export async function streamAnswer(response, bubble) {
  const view = new MarkdownView(bubble);
  let answer = "", frame = 0, finished = false;
  const draw = () => { cancelAnimationFrame(frame); frame = 0; view.update(answer); toEnd(); };
  const onEvent = (type, event) => {
    if (type === "token") { answer += event.text; frame ||= requestAnimationFrame(draw); return; }
    if (type === "run_started" && !state.answering.runId) {
      state.answering.runId = event.run_id;
      if (state.answering.stopWanted) stopAnswer();
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
    const mine = state.answering;
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
      state.answering.runId ||= decodeURIComponent(run);
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
      if (state.controller) { showStatus("An answer is still coming: try again when it has ended."); return; }
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
export function watchHeld(agent, id) {
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
