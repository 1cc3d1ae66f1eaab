// Safe Markdown: the text is split into DOM nodes built with textContent, never innerHTML,
// so model output can never inject HTML. Links get rel=noopener and only http(s)/mailto;
// images are shown as links (no remote fetches).

const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(!?\[[^\]]*\]\([^)\s]+\))|(https?:\/\/[^\s<>()]+)/;

function safeHref(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return ["http:", "https:", "mailto:"].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

function link(text, url) {
  const href = safeHref(url);
  if (!href) return document.createTextNode(text);
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}

export function renderInline(text, parent) {
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) { parent.append(document.createTextNode(rest)); break; }
    if (m.index) parent.append(document.createTextNode(rest.slice(0, m.index)));
    const token = m[0];
    if (m[1]) {
      const code = document.createElement("code"); code.textContent = token.slice(1, -1); parent.append(code);
    } else if (m[2]) {
      const b = document.createElement("strong"); renderInline(token.slice(2, -2), b); parent.append(b);
    } else if (m[3]) {
      const i = document.createElement("em"); renderInline(token.slice(1, -1), i); parent.append(i);
    } else if (m[4]) {
      const image = token.startsWith("!");
      const inner = /!?\[([^\]]*)\]\(([^)\s]+)\)/.exec(token);
      parent.append(link(image ? `image: ${inner[1] || inner[2]}` : inner[1] || inner[2], inner[2]));
    } else {
      parent.append(link(token, token));
    }
    rest = rest.slice(m.index + token.length);
  }
}

export function renderMarkdown(text, container) {
  container.replaceChildren();
  const lines = text.split("\n");
  let list = null;
  let para = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      const body = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) body.push(lines[i]);
      code.textContent = body.join("\n");
      pre.append(code); container.append(pre); list = para = null;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (heading) {
      const h = document.createElement(`h${Math.min(heading[1].length + 2, 6)}`);
      renderInline(heading[2], h); container.append(h); list = para = null;
    } else if (item) {
      if (!list) { list = document.createElement(/^\s*\d/.test(line) ? "ol" : "ul"); container.append(list); }
      const li = document.createElement("li"); renderInline(item[1], li); list.append(li); para = null;
    } else if (!line.trim()) {
      list = para = null;
    } else {
      if (!para) { para = document.createElement("p"); container.append(para); list = null; }
      else para.append(document.createElement("br"));
      renderInline(line, para);
    }
  }
}
