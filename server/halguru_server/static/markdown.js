// Safe Markdown: the text is split into DOM nodes built with textContent, never innerHTML,
// so model output can never inject HTML. Links get rel=noopener and only http(s)/mailto, never with a user name;
// images are shown as links (no remote fetches).

// Emphasis: *em*, **strong** (an *em* inside it too), ***both***, and _em_ where it is not inside a word (snake_case_name, 2_000_000
// and __init__.py stay as they are: "__" is no bold here, a Python name's far more often than not). A link's URL may hold balanced parentheses (Wikipedia's Foo_(bar)): cut at
// the first ")" it lost its end. So may a bare URL, whose closing punctuation is the sentence's, not the URL's
// ("see https://x.org/a."). A backslash before ASCII punctuation is that mark as itself.
const INLINE = new RegExp([
  /(?<code>`[^`]+`)/, /(?<both>\*\*\*[^*]+\*\*\*)/, /(?<strong>\*\*(?:[^*]|\*(?!\*))+?\*\*)/,
  /(?<em>\*[^*\s][^*]*\*|(?<!\w)_[^_\s](?:[^_]*[^_\s])?_(?!\w))/,
  /(?<link>!?\[[^\]]*\]\((?:[^()\s]|\([^()\s]*\))+\))/, /(?<url>https?:\/\/(?:[^\s<>()]|\([^\s<>()]*\))+)/,
  /(?<escape>\\[!-/:-@[-`{-~])/,
].map((r) => r.source).join("|"));
const SENTENCE_END = /[.,:;!?'"*_~]+$/;

function safeHref(url) {
  try {
    const parsed = new URL(url, window.location.href);
    // "https://bank.example@evil.example/" goes to evil.example (before the "@" is a user name): no link
    if (parsed.username || parsed.password) return null;
    return ["http:", "https:", "mailto:"].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

// The hosts a link's text names, where a word of it is an address ("https://bank.example/login",
// "www.bank.example"); "report.pdf" is a file's name as often as a host's, so bare names are not taken as hosts.
function namedHosts(text) {
  const hosts = [];
  for (const [word] of text.matchAll(/(?:https?:\/\/|www\.)[^\s/?#]+/gi)) {
    try {
      hosts.push(new URL(/^https?:\/\//i.test(word) ? word : `https://${word}`).hostname);
    } catch { /* not an address after all */ }
  }
  return hosts;
}

function link(text, url) {
  const href = safeHref(url);
  if (!href) return document.createTextNode(text);
  const a = document.createElement("a");
  a.href = href;
  // A text that names an address of another host shows where the link goes instead:
  // "[https://bank.example](https://evil.example)" or "[log in at www.bank.example](https://evil.example)" (in an
  // answer, or a web page or tool result the model repeats) read as the bank's, and a phone shows no URL on hover.
  if (namedHosts(text).some((host) => host !== a.hostname)) a.textContent = href;
  else renderInline(text, a, true);  // "[**Docs**](…)": bold, not two stars either side
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}

// A block of text whose direction is its own text's: a Hebrew or Arabic paragraph reads right to left (its
// punctuation at its end), beside an English one that reads left to right.
const textBlock = (tag) => Object.assign(document.createElement(tag), { dir: "auto" });

// A block that may scroll sideways (a code block, a wide table's box): a named region the keyboard can reach and
// scroll. It had no name (a screen reader said nothing of what it was) and no way in but a mouse or a swipe.
function scroller(tag, name) {
  const node = document.createElement(tag);
  node.tabIndex = 0;
  node.setAttribute("role", "region");
  node.setAttribute("aria-label", name);
  return node;
}

// `text` as inline Markdown into `parent`; `plain`: links and addresses as text (inside a link's own text).
export function renderInline(text, parent, plain = false) {
  const inside = (tag, inner) => {
    const node = document.createElement(tag); renderInline(inner, node, plain); return node;
  };
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) { parent.append(document.createTextNode(rest)); break; }
    if (m.index) parent.append(document.createTextNode(rest.slice(0, m.index)));
    const found = m.groups;
    let token = m[0];
    if (found.code) {
      const code = document.createElement("code"); code.textContent = token.slice(1, -1); parent.append(code);
    } else if (found.both) {
      const b = document.createElement("strong"); b.append(inside("em", token.slice(3, -3))); parent.append(b);
    } else if (found.strong) {
      parent.append(inside("strong", token.slice(2, -2)));
    } else if (found.em) {
      parent.append(inside("em", token.slice(1, -1)));
    } else if (found.escape) {  // "\*" is a star, not emphasis (ASCII punctuation only: "C:\Users" keeps its "\")
      parent.append(document.createTextNode(token[1]));
    } else if (plain) {
      parent.append(document.createTextNode(token));
    } else if (found.link) {
      const image = token.startsWith("!");
      const inner = /!?\[([^\]]*)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/.exec(token);
      parent.append(link(image ? `image: ${inner[1] || inner[2]}` : inner[1] || inner[2], inner[2]));
    } else {
      token = token.replace(SENTENCE_END, "");  // the rest of it is text, drawn on the next turn
      parent.append(link(token, token));
    }
    rest = rest.slice(m.index + token.length);
  }
}

// Markdown shown as it streams in: each complete line is parsed once and its nodes stay; only the unfinished
// last line (the draft) is drawn again on the next update, so an answer of length n costs O(n) in all, not
// O(n) per chunk. The parse is line by line: a fence, heading, table row, quote, list item, blank line or
// paragraph line.
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
    this.state = { list: null, para: null, code: null, fence: "", indent: 0, table: null, quote: null };
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
    if (s.code) {  // inside a fence: up to the closing one, the text as it is (less the fence's own indent)
      if (line.trimStart().startsWith(s.fence)) s.code = null;
      else {
        const text = line.slice(Math.min(s.indent, line.length - line.trimStart().length));
        this.add(s.code, document.createTextNode(s.code.firstChild ? `\n${text}` : text));
      }
      return;
    }
    const block = (node) => { this.add(this.container, node); s.list = s.para = s.table = s.quote = null; };
    // A fence is ``` or ~~~ (closed by the same), and may be indented (a step's code under a list item).
    const fence = /^(`{3,}|~{3,})\s*([^\s`{}]{0,30})/.exec(line.trimStart());
    if (fence) {
      const pre = scroller("pre", fence[2] ? `Code: ${fence[2]}` : "Code");  // "```python": Code: python
      const code = document.createElement("code");
      pre.append(code); block(pre);
      s.code = code; s.fence = fence[1]; s.indent = line.length - line.trimStart().length;
      return;
    }
    if (/^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/.test(line)) {  // "---", "***" or "* * *": a rule across
      block(document.createElement("hr"));
      return;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/.exec(line);
    const quote = /^\s*>\s?(.*)$/.exec(line);
    if (heading) {
      const h = textBlock(`h${Math.min(heading[1].length + 2, 6)}`);
      renderInline(heading[2], h); block(h);
    } else if (/^\s*\|.*\|\s*$/.test(line)) {
      this.row(line);
    } else if (quote) {
      if (!s.quote) {
        const q = document.createElement("blockquote");
        block(q); s.quote = textBlock("p"); this.add(q, s.quote);
      } else this.add(s.quote, document.createElement("br"));
      this.inline(quote[1], s.quote);
    } else if (item) {
      // s.list: the open lists, outermost first, each with its items' indent. An item indented two spaces or
      // more past its list's is a list of its own inside that list's last item ("1. a", "   - b", "2. c": b is
      // under a, and c is 2); one indented less goes back out. The stack is replaced, never changed in place,
      // as the state saved before the draft line holds it too.
      const indent = line.length - line.trimStart().length;
      let stack = s.list || [];
      while (stack.length && indent < stack[stack.length - 1].indent) stack = stack.slice(0, -1);
      const top = stack[stack.length - 1];
      let list = top && indent < top.indent + 2 ? top.list : null;
      if (!list) {
        list = textBlock(item[1] ? "ol" : "ul");
        // "1. a", a paragraph or code, then "2. b": the second list goes on counting from 2, not from 1 again
        if (item[1] && Number(item[1]) !== 1) list.start = Number(item[1]);
        if (top) this.add(top.list.lastChild, list);
        else { this.add(this.container, list); s.para = s.table = s.quote = null; }
        stack = [...stack, { list, indent }];
      }
      s.list = stack;
      const li = textBlock("li"); renderInline(item[2], li); this.add(list, li); s.para = null;
    } else if (!line.trim()) {
      s.list = s.para = s.table = s.quote = null;
    } else {
      if (!s.para) { s.para = textBlock("p"); this.add(this.container, s.para); s.list = s.table = s.quote = null; }
      else this.add(s.para, document.createElement("br"));
      this.inline(line, s.para);
    }
  }

  // A table row ("| a | b |"): the first row of a table is its header, a "|---|:--:|" row under it is skipped.
  // The table sits in a box of its own that scrolls sideways, so a wide one does not widen the page.
  row(line) {
    const s = this.state;
    const cells = line.trim().slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
    if (!s.table) {
      const box = Object.assign(scroller("div", "Table"), { className: "table" });
      const table = document.createElement("table");
      box.append(table);
      this.add(this.container, box); s.list = s.para = s.quote = null;
      s.table = { table, body: null };
    } else if (cells.every((c) => /^:?-+:?$/.test(c))) return;
    let section = s.table.body;
    if (!section) {
      section = document.createElement(s.table.table.firstChild ? "tbody" : "thead");
      this.add(s.table.table, section);
      if (section.nodeName === "TBODY") s.table = { ...s.table, body: section };
    }
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = textBlock(section.nodeName === "THEAD" ? "th" : "td");
      renderInline(cell, td); tr.append(td);
    }
    this.add(section, tr);
  }
}

// All of `text` at once, into `container` (its children replaced).
export function renderMarkdown(text, container) {
  new MarkdownView(container).update(text);
}
