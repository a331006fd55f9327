// picobot web chat: plain JS, no build step. Markdown by marked, sanitised by DOMPurify,
// code highlighted by highlight.js (all vendored under /static/vendor/, see its README).
// API: see picobot/webui/api.py. Event streams are read with fetch (not EventSource), so a
// lost run (404) and a lost server (network error) can be told apart and handled.
"use strict";

const KEYS = { token: "picobot.token", session: "picobot.session", run: "picobot.run", draft: "picobot.draft" };
const $ = (id) => document.getElementById(id);
const messages = $("messages");
const input = $("input");
const stopButton = $("stop");
const statusLine = $("status");
const connection = $("connection");
const runs = new Map(); // run id -> run, for runs that have not ended
const RESTART_TRIES = 5; // after a restart, how often to look for a replayed run
let boot = null; // the server's boot id: a new one means the run logs are gone
let serverBack = null; // one shared "wait until the server answers" promise

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

function headers(extra = {}) {
  const token = localStorage.getItem(KEYS.token);
  return Object.assign(token ? { Authorization: "Bearer " + token } : {}, extra);
}

class Offline extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers: headers(options.headers) }));
  } catch (err) {
    throw new Offline("picobot is unreachable");
  }
  if (response.status === 401) throw new Error("A token is required: open this page as /#token=YOUR_TOKEN");
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
  return body;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function showStatus(text) {
  statusLine.textContent = text || "";
}

// -- connection: "reconnecting…" until /api/info answers again ------------------------------------
function waitForServer() {
  if (!serverBack) {
    document.body.classList.add("offline");
    connection.textContent = "reconnecting…";
    serverBack = (async () => {
      for (let delay = 500; ; delay = Math.min(delay * 2, 4000)) {
        await sleep(delay);
        try {
          const info = await api("/api/info");
          document.body.classList.remove("offline");
          connection.textContent = "";
          serverBack = null;
          showInfo(info);
          loadConversations();
          return info;
        } catch (err) {
          if (!(err instanceof Offline)) showStatus(err.message);
        }
      }
    })();
  }
  return serverBack;
}

function showInfo(info) {
  $("model").textContent = info.model;
  const restarted = boot !== null && info.boot !== boot;
  boot = info.boot;
  return restarted;
}

// -- Markdown --------------------------------------------------------------------------------------
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
// HTML written by the model is shown as text, not rendered (DOMPurify stays as a second guard).
marked.use({ gfm: true, breaks: true, renderer: { html: (token) => escapeHtml(token.text) } });

function renderInto(element, text) {
  element.innerHTML = DOMPurify.sanitize(marked.parse(text));
  for (const code of element.querySelectorAll("pre > code")) {
    const lang = /language-([\w+-]+)/.exec(code.className);
    if (lang && hljs.getLanguage(lang[1])) hljs.highlightElement(code);
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy code");
    copy.addEventListener("click", () => {
      navigator.clipboard.writeText(code.textContent).then(
        () => (copy.textContent = "Copied"),
        () => (copy.textContent = "Copy failed"),
      );
    });
    code.parentElement.prepend(copy);
  }
}

// -- the message list -----------------------------------------------------------------------------
function scrollDown() {
  messages.scrollTop = messages.scrollHeight;
}

function addUser(text, { note = false } = {}) {
  const div = document.createElement("div");
  div.className = "msg user" + (note ? " command" : "");
  div.textContent = text;
  messages.appendChild(div);
  scrollDown();
  return div;
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
  const bubble = { div, tools, body, text: text || "", reasoning: null, calls: new Map(), frame: 0 };
  bubble.render = () => {
    // One render per frame: a fast stream does not re-parse on every delta.
    if (bubble.frame) return;
    bubble.frame = requestAnimationFrame(() => {
      bubble.frame = 0;
      renderInto(bubble.body, bubble.text);
      scrollDown();
    });
  };
  bubble.done = () => {
    div.dataset.done = "1";
  };
  bubble.problem = (message, kind = "problem") => {
    const p = document.createElement("div");
    p.className = kind;
    p.textContent = message;
    div.appendChild(p);
    scrollDown();
  };
  bubble.reset = () => {
    bubble.text = "";
    tools.replaceChildren();
    bubble.calls.clear();
    for (const p of div.querySelectorAll(".problem, .stopped")) p.remove();
    bubble.render();
  };
  messages.appendChild(div);
  renderInto(body, bubble.text);
  return bubble;
}

function addToolCall(bubble, callId, name, args) {
  const line = document.createElement("details");
  line.className = "tool";
  const summary = document.createElement("summary");
  summary.textContent = "🔧 " + name + " …";
  line.appendChild(summary);
  if (args && Object.keys(args).length) {
    const pre = document.createElement("pre");
    pre.className = "arguments";
    pre.textContent = JSON.stringify(args);
    line.appendChild(pre);
  }
  bubble.tools.appendChild(line);
  const call = { line, summary, name };
  bubble.calls.set(callId, call);
  scrollDown();
  return call;
}

function finishToolCall(call, result, error) {
  call.summary.textContent = (error ? "✗ " : "✓ ") + call.name;
  if (error) call.line.classList.add("error");
  const pre = document.createElement("pre");
  pre.textContent = result;
  call.line.appendChild(pre);
}

function updateStop() {
  stopButton.disabled = ![...runs.values()].some((r) => r.started);
}

// -- runs: one event stream each, resumed after a lost connection --------------------------------
async function* sse(response) {
  // A small text/event-stream parser: yields {id, event, data} per event.
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let fields = {};
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (fields.event) yield fields;
        fields = {};
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        fields[name] = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      }
    }
  }
}

function watch(runId, { resumed = false, known = "" } = {}) {
  const run = { id: runId, lastId: 0, bubble: null, started: false, ended: false, resumed, known };
  runs.set(runId, run);
  follow(run);
  return run;
}

async function follow(run) {
  let tries = 0;
  while (!run.ended) {
    let response;
    try {
      response = await fetch("/api/runs/" + encodeURIComponent(run.id) + "/events", {
        headers: headers({ Accept: "text/event-stream", "Last-Event-ID": String(run.lastId) }),
      });
    } catch (err) {
      await reconnect(run);
      continue;
    }
    if (response.status === 404 && run.restarted && ++tries < RESTART_TRIES) {
      await sleep(1000); // a restarted daemon replays unfinished turns: give it a moment
      continue;
    }
    if (!response.ok) {
      const lost = response.status === 404 && (run.lastId > 0 || run.restarted);
      end(run, lost ? "⚠️ The connection was lost and this reply cannot be resumed." : null);
      return;
    }
    try {
      for await (const event of sse(response)) {
        run.lastId = Number(event.id) || run.lastId;
        handle(run, event.event, JSON.parse(event.data || "{}"));
        if (run.ended) return;
      }
    } catch (err) {
      // The connection broke mid-stream: resume below.
    }
    await reconnect(run);
  }
}

async function reconnect(run) {
  const before = boot;
  const info = await waitForServer();
  if (before !== null && info.boot !== before) {
    run.restarted = true; // the old run log is gone; a replayed run starts again at 1
    run.lastId = 0;
  }
}

function end(run, problem) {
  run.ended = true;
  runs.delete(run.id);
  if (problem) (run.bubble || (run.bubble = addAssistant("", run.id))).problem(problem);
  if (run.bubble) run.bubble.done();
  if (localStorage.getItem(KEYS.run) === run.id) localStorage.removeItem(KEYS.run);
  updateStop();
  loadConversations();
}

function handle(run, name, d) {
  const ensure = () => (run.bubble = run.bubble || addAssistant("", run.id));
  switch (name) {
    case "turn_started":
      run.started = true;
      if (run.restarted && run.bubble) run.bubble.reset(); // a replay starts from scratch
      ensure();
      localStorage.setItem(KEYS.run, run.id);
      updateStop();
      break;
    case "text_delta":
      ensure().text += d.text;
      run.bubble.render();
      break;
    case "reasoning_delta": {
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
      break;
    }
    case "tool_started":
      addToolCall(ensure(), d.call_id, d.name, d.arguments);
      break;
    case "tool_finished": {
      const call = ensure().calls.get(d.call_id);
      if (call) finishToolCall(call, d.result, d.error);
      break;
    }
    case "notice":
      addNote(d.text);
      break;
    case "turn_finished": {
      const b = ensure();
      if (run.resumed && run.known && d.text.trim() === run.known.trim()) {
        b.div.remove(); // the history already shows this reply
        run.bubble = null;
        break;
      }
      b.text = d.text;
      b.render();
      break;
    }
    case "turn_aborted":
      if (d.reason === "shutdown") ensure().problem("Interrupted: picobot is restarting; this reply continues when it is back.", "stopped");
      else ensure().problem(d.reason === "stopped" ? "Stopped" : "Stopped (" + d.reason + ")", "stopped");
      break;
    case "error":
      ensure().problem(d.message || "Something went wrong.");
      break;
    case "done":
      end(run, null);
      break;
  }
}

// -- sending ----------------------------------------------------------------------------------------
function currentSession() {
  return localStorage.getItem(KEYS.session) || undefined;
}

async function post(text) {
  const result = await api("/api/messages", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text, session: currentSession() }),
  });
  localStorage.setItem(KEYS.session, result.session);
  return result;
}

async function send(text) {
  if (!text.trim()) return;
  if (text.trim() === "/stop") return stop(); // one "Stopped" marker, on the reply it stopped
  showStatus("");
  const bubble = addUser(text);
  setDraft("");
  try {
    const result = await post(text);
    watch(result.run_id);
    loadConversations();
  } catch (err) {
    // Not sent: the text goes back into the box, nothing is lost.
    bubble.remove();
    setDraft(input.value ? text + "\n" + input.value : text);
    if (err instanceof Offline) {
      showStatus("Not sent: picobot is unreachable. Your message is back in the box.");
      waitForServer().then(() => showStatus("Reconnected: press Enter to send your message."));
    } else {
      showStatus(err.message);
    }
  }
}

function stop() {
  showStatus("");
  if (![...runs.values()].some((r) => r.started)) return;
  post("/stop").catch((err) => showStatus(err.message)); // its own reply is not shown
}

function setDraft(text) {
  input.value = text;
  localStorage.setItem(KEYS.draft, text);
}

// -- conversations ------------------------------------------------------------------------------------
async function loadConversations() {
  let list;
  try {
    list = await api("/api/sessions");
  } catch (err) {
    return; // the chat still works; the list comes back with the connection
  }
  const ul = $("conversations");
  ul.replaceChildren();
  for (const s of list) {
    const li = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = s.title || "New chat";
    if (s.id === currentSession()) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => openConversation(s.id));
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "rename";
    rename.textContent = "✎";
    rename.setAttribute("aria-label", "Rename “" + open.textContent + "”");
    rename.addEventListener("click", () => startRename(li, open, s));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", "Delete “" + open.textContent + "”");
    remove.addEventListener("click", () => deleteConversation(s));
    li.append(open, rename, remove);
    ul.appendChild(li);
  }
}

function startRename(li, open, s) {
  const field = document.createElement("input");
  field.value = s.title || "";
  field.setAttribute("aria-label", "New title");
  open.replaceWith(field);
  field.focus();
  field.select();
  let finished = false;
  const finish = async (save) => {
    if (finished) return;
    finished = true;
    const title = field.value.trim();
    if (save && title && title !== s.title) {
      await api("/api/sessions/" + encodeURIComponent(s.id), {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ title }),
      }).catch((err) => showStatus(err.message));
    }
    loadConversations();
  };
  field.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    if (e.key === "Escape") {
      e.stopPropagation();
      finish(false);
    }
  });
  field.addEventListener("blur", () => finish(true));
}

async function deleteConversation(s) {
  if (!confirm("Delete “" + (s.title || "New chat") + "”?")) return;
  try {
    await api("/api/sessions/" + encodeURIComponent(s.id), { method: "DELETE" });
  } catch (err) {
    showStatus(err.message);
    return;
  }
  if (s.id === currentSession()) newChat();
  loadConversations();
}

function forgetRuns() {
  for (const run of runs.values()) run.ended = true;
  runs.clear();
  localStorage.removeItem(KEYS.run);
  updateStop();
}

function newChat() {
  forgetRuns();
  localStorage.removeItem(KEYS.session);
  messages.replaceChildren();
  showStatus("");
  loadConversations();
  input.focus();
}

function openConversation(id) {
  forgetRuns();
  localStorage.setItem(KEYS.session, id);
  messages.replaceChildren();
  document.body.classList.remove("show-sidebar");
  $("menu").setAttribute("aria-expanded", "false");
  loadHistory().then(loadConversations);
  input.focus();
}

async function loadHistory() {
  const session = currentSession();
  if (!session) return;
  let past = [];
  try {
    past = await api("/api/sessions/" + encodeURIComponent(session) + "/messages");
  } catch (err) {
    showStatus(err.message);
    return;
  }
  let pending = null; // tool calls wait for the reply they belong to
  for (const m of past) {
    if (m.role === "user") {
      addUser(m.text, { note: m.note });
      pending = null;
    } else if (m.role === "tool") {
      pending = pending || addAssistant("");
      finishToolCall(addToolCall(pending, "", m.name, m.arguments), m.text, m.error);
    } else {
      const bubble = pending || addAssistant("");
      bubble.text = m.text;
      renderInto(bubble.body, m.text);
      bubble.done();
      pending = null;
    }
  }
  if (pending) pending.done();
  scrollDown();
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
  send(input.value);
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

input.addEventListener("input", () => localStorage.setItem(KEYS.draft, input.value));

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !stopButton.disabled) {
    e.preventDefault();
    stop();
  }
});

stopButton.addEventListener("click", stop);
$("new-chat").addEventListener("click", newChat);
$("menu").addEventListener("click", () => {
  const open = document.body.classList.toggle("show-sidebar");
  $("menu").setAttribute("aria-expanded", String(open));
});

(async function start() {
  input.value = localStorage.getItem(KEYS.draft) || "";
  try {
    showInfo(await api("/api/info"));
  } catch (err) {
    if (err instanceof Offline) waitForServer();
    else showStatus(err.message);
  }
  loadConversations();
  loadHistory();
})();
