// Safe Markdown: the text is split into DOM nodes built with textContent, never innerHTML,
// so model output can never inject HTML. Links get rel=noopener and only http(s)/mailto;
// images are shown as links (no remote fetches).

// A link's URL may hold balanced parentheses (Wikipedia's Foo_(bar)): cut at the first ")" it lost its end.
const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(!?\[[^\]]*\]\((?:[^()\s]|\([^()\s]*\))+\))|(https?:\/\/[^\s<>()]+)/;

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
      const inner = /!?\[([^\]]*)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/.exec(token);
      parent.append(link(image ? `image: ${inner[1] || inner[2]}` : inner[1] || inner[2], inner[2]));
    } else {
      parent.append(link(token, token));
    }
    rest = rest.slice(m.index + token.length);
  }
}

// Markdown shown as it streams in: each complete line is parsed once and its nodes stay; only the unfinished
// last line (the draft) is drawn again on the next update, so an answer of length n costs O(n) in all, not
// O(n) per chunk. The parse is line by line: a fence, heading, list item, blank line or paragraph line.
export class MarkdownView {
  constructor(container) {
    this.container = container;
    this.reset();
  }

  // Draw from scratch on the next update.
  reset() {
    this.container.replaceChildren();
    this.text = "";
    this.done = 0;  // text[0:done] is committed: complete lines whose nodes stay
    this.state = { list: null, para: null, code: null };
    this.draft = [];  // the nodes the draft line added (removed before the next update)
    this.saved = this.state;  // the state before the draft line
    this.recording = false;
  }

  // Show `text`: the text shown before plus more (a stream) costs only the new part; anything else starts over.
  update(text) {
    if (text === this.text) return;
    if (!text.startsWith(this.text.slice(0, this.done))) this.reset();
    for (const node of this.draft) node.remove();
    this.draft = [];
    this.state = this.saved;
    const end = text.lastIndexOf("\n") + 1;
    if (end > this.done) {
      for (const line of text.slice(this.done, end - 1).split("\n")) this.line(line);
      this.done = end;
    }
    this.saved = { ...this.state };
    this.recording = true;
    this.line(text.slice(this.done));
    this.recording = false;
    this.text = text;
  }

  add(parent, ...nodes) {
    parent.append(...nodes);
    if (this.recording) this.draft.push(...nodes);
  }

  inline(text, parent) {
    const fragment = document.createDocumentFragment();
    renderInline(text, fragment);
    this.add(parent, ...fragment.childNodes);
  }

  line(line) {
    const s = this.state;
    if (s.code) {  // inside a fence: up to the closing one, the text as it is
      if (line.startsWith("```")) s.code = null;
      else { this.add(s.code, document.createTextNode(s.code.firstChild ? `\n${line}` : line)); }
      return;
    }
    if (line.startsWith("```")) {
      const pre = document.createElement("pre");
      s.code = document.createElement("code");
      pre.append(s.code); this.add(this.container, pre); s.list = s.para = null;
      return;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (heading) {
      const h = document.createElement(`h${Math.min(heading[1].length + 2, 6)}`);
      renderInline(heading[2], h); this.add(this.container, h); s.list = s.para = null;
    } else if (item) {
      if (!s.list) { s.list = document.createElement(/^\s*\d/.test(line) ? "ol" : "ul"); this.add(this.container, s.list); }
      const li = document.createElement("li"); renderInline(item[1], li); this.add(s.list, li); s.para = null;
    } else if (!line.trim()) {
      s.list = s.para = null;
    } else {
      if (!s.para) { s.para = document.createElement("p"); this.add(this.container, s.para); s.list = null; }
      else this.add(s.para, document.createElement("br"));
      this.inline(line, s.para);
    }
  }
}

// All of `text` at once, into `container` (its children replaced).
export function renderMarkdown(text, container) {
  new MarkdownView(container).update(text);
}
