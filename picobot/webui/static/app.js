// picobot web chat, as ES modules with no build step: this one holds the runs (their event
// streams, resumed after a lost connection), sending (JSON, or multipart with files), history
// and the wiring. Event streams are read with fetch (not EventSource), so a lost run (404) and
// a lost server (a network error) can be told apart.
import { KEYS, Offline, api, headers, sleep, sse } from "./api.js";
import { attach, initAttachments, previews, takeAttached } from "./attachments.js";
import {
  addAssistant,
  addFile,
  addNote,
  addToolCall,
  addUser,
  fillUser,
  finishToolCall,
  scrollDown,
} from "./bubbles.js";
import { initConversations, loadConversations } from "./conversations.js";
import { renderInto } from "./markdown.js";
import { watchSession } from "./stream.js";

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

// The conversation's messages outside a reply (a reminder): see stream.js.
function watchStray() {
  watchSession(
    currentSession(),
    (name, d) => (name === "notice" ? addNote(d.text) : name === "attachment" && addFile(d)),
    async () => {
      const before = boot;
      const info = await waitForServer();
      return before !== null && info.boot !== before;
    },
  );
}

function updateStop() {
  stopButton.disabled = ![...runs.values()].some((r) => r.started);
}


// -- runs: one event stream each, resumed after a lost connection --------------------------------
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
    case "attachment": // a file sent to the chat (a generated image, a tool's document)
      addFile(d);
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

async function post(text, files = []) {
  let options = {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text, session: currentSession() }),
  };
  if (files.length) {
    const form = new FormData(); // the browser sets the multipart Content-Type
    form.append("text", text);
    if (currentSession()) form.append("session", currentSession());
    for (const file of files) form.append("files", file, file.name);
    options = { method: "POST", body: form };
  }
  const result = await api("/api/messages", options);
  localStorage.setItem(KEYS.session, result.session);
  watchStray(); // a new conversation has its own stream from now on
  return result;
}

async function send(text) {
  const files = takeAttached();
  if (!text.trim() && !files.length) return;
  if (text.trim() === "/stop" && !files.length) return stop(); // one "Stopped" marker
  showStatus("");
  const shown = previews(files);
  const bubble = addUser(text, { files: shown });
  setDraft("");
  try {
    const result = await post(text, files);
    if (files.length) fillUser(bubble, text, result.attachments || []); // links to the store
    for (const p of shown) if (p.local) URL.revokeObjectURL(p.local);
    for (const r of result.rejected || []) addNote("⚠️ " + r.name + ": " + r.reason);
    watch(result.run_id);
    loadConversations();
  } catch (err) {
    // Not sent: the text goes back into the box (and, when offline, the files to their list).
    bubble.remove();
    for (const p of shown) if (p.local) URL.revokeObjectURL(p.local);
    if (err instanceof Offline) attach(files);
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

function forgetRuns() {
  for (const run of runs.values()) run.ended = true;
  runs.clear();
  localStorage.removeItem(KEYS.run);
  updateStop();
}

function newChat() {
  forgetRuns();
  takeAttached(); // files chosen for the old conversation are dropped
  localStorage.removeItem(KEYS.session);
  messages.replaceChildren();
  watchStray(); // none until the first message
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
  loadHistory().then(() => {
    watchStray();
    loadConversations();
  });
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
      addUser(m.text, { note: m.note, files: m.attachments || [] });
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
initAttachments();
initConversations({
  current: currentSession,
  open: openConversation,
  deleted: newChat,
  problem: showStatus,
});

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
  await loadHistory();
  watchStray(); // after the history: what comes from now on is new
})();