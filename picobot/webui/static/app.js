// picobot web chat: plain JS, no build step, no third-party code.
// Talks to POST /api/messages (JSON, or multipart with files), GET /api/runs/{id}/events (SSE),
// GET /api/sessions/{session}/messages and GET /api/media/{id}. Model output is escaped before
// it is formatted.
"use strict";

const KEYS = { token: "picobot.token", session: "picobot.session", run: "picobot.run" };
const $ = (id) => document.getElementById(id);
const messages = $("messages");
const input = $("input");
const stopButton = $("stop");
const statusLine = $("status");
const running = new Map(); // run id -> EventSource, for runs whose turn has started
const attachedList = $("attached");
let attached = []; // File objects chosen for the next message

// -- token: taken from #token=… or ?token=… once, then kept in localStorage ---------------------
(function takeToken() {
  const url = new URL(window.location.href);
  const fromHash = new URLSearchParams(url.hash.replace(/^#/, "")).get("token");
  const token = fromHash || url.searchParams.get("token");
  if (token) {
    localStorage.setItem(KEYS.token, token);
    url.hash = "";
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search);
  }
})();

function token() {
  return localStorage.getItem(KEYS.token) || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    throw new Error("A token is required: open this page as /#token=YOUR_TOKEN");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
  return body;
}

function showStatus(text) {
  statusLine.textContent = text || "";
}

// -- safe Markdown: escape everything, then add a few tags ----------------------------------------
function escapeHtml(text) {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function formatInline(text) {
  // Code spans first, so nothing inside them is formatted.
  return text
    .split(/(`[^`\n]+`)/)
    .map((part, i) => {
      if (i % 2 === 1) return "<code>" + escapeHtml(part.slice(1, -1)) + "</code>";
      return escapeHtml(part)
        .replace(
          /\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
          '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>',
        )
        .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
        .replace(/(^|[^*\w])\*([^*\s][^*\n]*?)\*(?!\w)/g, "$1<em>$2</em>")
        .replace(/(^|\W)_([^_\s][^_\n]*?)_(?!\w)/g, "$1<em>$2</em>");
    })
    .join("");
}

function formatBlocks(text) {
  const out = [];
  let para = [];
  let quote = [];
  let list = [];
  const flush = () => {
    if (para.length) out.push("<p>" + para.map(formatInline).join("<br>") + "</p>");
    if (quote.length) out.push("<blockquote>" + quote.map(formatInline).join("<br>") + "</blockquote>");
    if (list.length) out.push("<ul>" + list.map((l) => "<li>" + formatInline(l) + "</li>").join("") + "</ul>");
    para = [];
    quote = [];
    list = [];
  };
  for (const line of text.split("\n")) {
    const q = /^\s*>\s?(.*)$/.exec(line);
    const li = /^\s*[-*+]\s+(.*)$/.exec(line);
    const h = /^\s*#{1,6}\s+(.*)$/.exec(line);
    if (!line.trim()) {
      flush();
    } else if (q) {
      if (para.length || list.length) flush();
      quote.push(q[1]);
    } else if (li) {
      if (para.length || quote.length) flush();
      list.push(li[1]);
    } else if (h) {
      flush();
      out.push("<p><strong>" + formatInline(h[1]) + "</strong></p>");
    } else {
      if (quote.length || list.length) flush();
      para.push(line);
    }
  }
  flush();
  return out.join("");
}

function renderMarkdown(text) {
  // Fenced code blocks; an unclosed fence (mid-stream) runs to the end of the text.
  const out = [];
  let rest = text;
  for (;;) {
    const open = rest.indexOf("```");
    if (open < 0) break;
    out.push(formatBlocks(rest.slice(0, open)));
    const after = rest.slice(open + 3);
    const newline = after.indexOf("\n");
    const body = newline >= 0 && /^[\w+.-]*$/.test(after.slice(0, newline)) ? after.slice(newline + 1) : after;
    const close = body.indexOf("```");
    const code = close >= 0 ? body.slice(0, close) : body;
    out.push("<pre><code>" + escapeHtml(code.replace(/\n$/, "")) + "</code></pre>");
    if (close < 0) return out.join("");
    rest = body.slice(close + 3).replace(/^\n/, "");
  }
  out.push(formatBlocks(rest));
  return out.join("");
}

// -- the message list -----------------------------------------------------------------------------
function scrollDown() {
  messages.scrollTop = messages.scrollHeight;
}

function mediaUrl(url) {
  return token() ? url + "?token=" + encodeURIComponent(token()) : url;
}

// One attachment: images are shown, audio can be played, anything else is a download link.
function attachmentNode(a) {
  const box = document.createElement("div");
  box.className = "attachment";
  const url = a.local || mediaUrl(a.url);
  if (a.kind === "image") {
    const img = document.createElement("img");
    img.src = url;
    img.alt = a.name || "image";
    box.appendChild(img);
  } else if (a.kind === "voice" || a.kind === "audio") {
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.src = url;
    box.appendChild(audio);
  } else {
    const link = document.createElement("a");
    link.href = url;
    link.textContent = "📎 " + (a.name || "file");
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    box.appendChild(link);
  }
  if (a.caption) {
    const caption = document.createElement("div");
    caption.textContent = a.caption;
    box.appendChild(caption);
  }
  return box;
}

function addUser(text, files = []) {
  const div = document.createElement("div");
  div.className = "msg user";
  for (const a of files) div.appendChild(attachmentNode(a));
  if (text) {
    const body = document.createElement("div");
    body.textContent = text;
    div.appendChild(body);
  }
  messages.appendChild(div);
  scrollDown();
  return div;
}

function addFile(a) {
  const div = document.createElement("div");
  div.className = "msg assistant";
  div.appendChild(attachmentNode(a));
  messages.appendChild(div);
  scrollDown();
}

function addNote(text) {
  const div = document.createElement("div");
  div.className = "msg note";
  div.textContent = text;
  messages.appendChild(div);
  scrollDown();
}

function addAssistant(text, runId) {
  const div = document.createElement("div");
  div.className = "msg assistant";
  if (runId) div.dataset.run = runId;
  const tools = document.createElement("div");
  tools.className = "tools";
  const body = document.createElement("div");
  body.className = "body";
  div.append(tools, body);
  const bubble = { div, tools, body, text: text || "", reasoning: null, calls: new Map() };
  bubble.render = () => {
    bubble.body.innerHTML = renderMarkdown(bubble.text);
    scrollDown();
  };
  bubble.done = () => {
    div.dataset.done = "1";
  };
  bubble.problem = (message) => {
    const p = document.createElement("div");
    p.className = "problem";
    p.textContent = message;
    div.appendChild(p);
    scrollDown();
  };
  messages.appendChild(div);
  bubble.render();
  return bubble;
}

function updateStop() {
  stopButton.disabled = running.size === 0;
}

// -- runs -----------------------------------------------------------------------------------------
function watch(runId, { resumed = false, known = "" } = {}) {
  let url = "/api/runs/" + encodeURIComponent(runId) + "/events";
  if (token()) url += "?token=" + encodeURIComponent(token());
  const source = new EventSource(url); // reconnects by itself, sending Last-Event-ID
  let bubble = null;
  const ensure = () => (bubble = bubble || addAssistant("", runId));
  const on = (name, handler) =>
    source.addEventListener(name, (e) => {
      // "error" is also EventSource's own connection-error event, which carries no data.
      if (typeof e.data === "string") handler(JSON.parse(e.data || "{}"));
    });

  on("turn_started", () => {
    ensure();
    running.set(runId, source);
    localStorage.setItem(KEYS.run, runId);
    updateStop();
  });
  on("text_delta", (d) => {
    ensure().text += d.text;
    bubble.render();
  });
  on("reasoning_delta", (d) => {
    const b = ensure();
    if (!b.reasoning) {
      const details = document.createElement("details");
      details.innerHTML = "<summary>Thinking</summary>";
      b.reasoning = document.createElement("div");
      b.reasoning.className = "reasoning";
      details.appendChild(b.reasoning);
      b.tools.before(details);
    }
    b.reasoning.textContent += d.text;
  });
  on("tool_started", (d) => {
    const b = ensure();
    const line = document.createElement("details");
    line.className = "tool";
    const summary = document.createElement("summary");
    summary.textContent = "🔧 " + d.name + " …";
    line.appendChild(summary);
    b.tools.appendChild(line);
    b.calls.set(d.call_id, { line, summary });
    scrollDown();
  });
  on("tool_finished", (d) => {
    const call = ensure().calls.get(d.call_id);
    if (!call) return;
    call.summary.textContent = (d.error ? "✗ " : "✓ ") + d.name;
    if (d.error) call.line.classList.add("error");
    const pre = document.createElement("pre");
    pre.textContent = d.result;
    call.line.appendChild(pre);
  });
  on("steering", () => {});
  on("notice", (d) => addNote(d.text));
  on("attachment", (d) => addFile(d));
  on("turn_finished", (d) => {
    const b = ensure();
    if (resumed && known && d.text.trim() === known.trim()) {
      b.div.remove(); // the history already shows this reply
      return;
    }
    b.text = d.text;
    b.render();
  });
  on("turn_aborted", (d) => ensure().problem(d.reason === "stopped" ? "(stopped)" : "(" + d.reason + ")"));
  on("error", (d) => ensure().problem(d.message || "Something went wrong."));
  on("done", () => {
    source.close();
    if (bubble) bubble.done();
    running.delete(runId);
    if (localStorage.getItem(KEYS.run) === runId) localStorage.removeItem(KEYS.run);
    updateStop();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (unknown or expired run, bad token): nothing more will come.
      if (bubble) bubble.done();
      running.delete(runId);
      if (localStorage.getItem(KEYS.run) === runId) localStorage.removeItem(KEYS.run);
      updateStop();
    }
  };
  return source;
}

async function post(text, files = []) {
  const session = localStorage.getItem(KEYS.session) || undefined;
  let options;
  if (files.length) {
    const form = new FormData();
    form.append("text", text);
    if (session) form.append("session", session);
    for (const file of files) form.append("files", file, file.name);
    options = { method: "POST", body: form };
  } else {
    options = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, session }),
    };
  }
  const result = await api("/api/messages", options);
  localStorage.setItem(KEYS.session, result.session);
  for (const r of result.rejected || []) addNote("⚠️ " + r.name + ": " + r.reason);
  watch(result.run_id);
}

function showAttached() {
  attachedList.replaceChildren(
    ...attached.map((file, i) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.title = "Remove";
      chip.textContent = "📎 " + file.name + " ✕";
      chip.addEventListener("click", () => {
        attached.splice(i, 1);
        showAttached();
      });
      return chip;
    }),
  );
}

function attach(files) {
  attached = attached.concat(Array.from(files));
  showAttached();
}

async function send(text) {
  const files = attached;
  if (!text.trim() && !files.length) return;
  attached = [];
  showAttached();
  showStatus("");
  const previews = files.map((f) => ({
    kind: f.type.startsWith("image/") ? "image" : "file",
    name: f.name,
    local: f.type.startsWith("image/") ? URL.createObjectURL(f) : "",
  }));
  addUser(text, previews);
  try {
    await post(text, files);
  } catch (err) {
    showStatus(err.message);
  }
}

async function loadHistory() {
  const session = localStorage.getItem(KEYS.session);
  if (!session) return;
  let past = [];
  try {
    past = await api("/api/sessions/" + encodeURIComponent(session) + "/messages");
  } catch (err) {
    showStatus(err.message);
    return;
  }
  for (const m of past) {
    if (m.role === "user") addUser(m.text, m.attachments || []);
    else addAssistant(m.text).done();
  }
  const runId = localStorage.getItem(KEYS.run);
  if (runId) {
    // A reply was streaming when the page was left: pick it up from the run's log.
    const last = past.length ? past[past.length - 1] : null;
    watch(runId, { resumed: true, known: last && last.role === "assistant" ? last.text : "" });
  }
}

// -- wiring ---------------------------------------------------------------------------------------
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value;
  input.value = "";
  send(text);
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

$("attach").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (e) => {
  attach(e.target.files);
  e.target.value = "";
});
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  document.body.classList.add("dropping");
});
document.addEventListener("dragleave", (e) => {
  if (!e.relatedTarget) document.body.classList.remove("dropping");
});
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dropping");
  if (e.dataTransfer && e.dataTransfer.files.length) attach(e.dataTransfer.files);
});

stopButton.addEventListener("click", () => {
  showStatus("");
  post("/stop").catch((err) => showStatus(err.message));
});

$("new-chat").addEventListener("click", () => {
  for (const source of running.values()) source.close();
  running.clear();
  updateStop();
  localStorage.removeItem(KEYS.session);
  localStorage.removeItem(KEYS.run);
  attached = [];
  showAttached();
  messages.replaceChildren();
  showStatus("");
  input.focus();
});

loadHistory();
