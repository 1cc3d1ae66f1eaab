// halguru chat widget: <script src="https://SERVER/chat/widget.js" data-agent="NAME" async></script>
// A bubble that opens the agent's chat in an iframe from SERVER: the host page never sees the conversation.
// Optional: data-label (the bubble's text), data-position="left". The agent must list this site's origin in
// its metadata.embed_origins, or the server refuses the frame.
(() => {
  const script = document.currentScript;
  const agent = script && script.dataset.agent;
  if (!agent) return;
  const server = new URL(script.src).origin;
  const side = script.dataset.position === "left" ? "left" : "right";
  const css = (el, rules) => Object.assign(el.style, rules);
  const bubble = document.createElement("button");
  bubble.type = "button";
  const label = script.dataset.label || "Chat";
  bubble.textContent = label;
  bubble.setAttribute("aria-expanded", "false");
  // Its name starts with the text it shows (what a voice-control user says to press it), then whom it opens.
  bubble.setAttribute("aria-label", label === "Chat" ? `Chat with ${agent}` : `${label}: chat with ${agent}`);
  css(bubble, { position: "fixed", bottom: "1rem", [side]: "1rem", zIndex: "2147483647", padding: ".7rem 1.1rem",
    border: "0", borderRadius: "2rem", background: "#1a5fd0", color: "#fff", font: "600 16px system-ui,sans-serif",
    boxShadow: "0 2px 10px rgba(0,0,0,.3)", cursor: "pointer" });
  let frame = null;
  const toggle = () => {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.src = `${server}/chat/embed/${encodeURIComponent(agent)}`;
      frame.title = `Chat with ${agent}`;
      frame.referrerPolicy = "no-referrer";
      css(frame, { position: "fixed", bottom: "4.5rem", [side]: "1rem", zIndex: "2147483647", border: "1px solid #ccc",
        borderRadius: "12px", background: "#fff", width: "min(24rem, calc(100vw - 2rem))",
        height: "min(36rem, calc(100vh - 6rem))", boxShadow: "0 4px 20px rgba(0,0,0,.25)" });
      document.body.append(frame);
      frame.hidden = true;
    }
    frame.hidden = !frame.hidden;
    bubble.setAttribute("aria-expanded", String(!frame.hidden));
    if (!frame.hidden) frame.focus();
  };
  bubble.addEventListener("click", toggle);
  const mount = () => document.body.append(bubble);
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
