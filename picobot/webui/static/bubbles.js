// The message list: user and assistant bubbles, tool calls, notes, files.
import { mediaUrl } from "./api.js";
import { renderInto } from "./markdown.js";

const messages = document.getElementById("messages");

export function scrollDown() {
  messages.scrollTop = messages.scrollHeight;
}

// One file: an image is shown, audio can be played, anything else is a link. `a` is as the
// API describes it ({url, name, kind, ...}), or {local} for a file not uploaded yet.
export function attachmentNode(a) {
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
    audio.setAttribute("aria-label", a.name || a.kind);
    box.appendChild(audio);
  } else if (a.local === "") {
    box.textContent = "📎 " + (a.name || "file"); // not uploaded yet: nothing to link to
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

export function addUser(text, { note = false, files = [] } = {}) {
  const div = document.createElement("div");
  div.className = "msg user" + (note ? " command" : "");
  fillUser(div, text, files);
  messages.appendChild(div);
  scrollDown();
  return div;
}

// A user bubble's content: its files, then its text.
export function fillUser(div, text, files = []) {
  div.replaceChildren(...files.map(attachmentNode));
  if (!files.length) div.textContent = text;
  else if (text) div.appendChild(Object.assign(document.createElement("div"), { textContent: text }));
}

// A file the bot sent (a generated image, a tool's document): its own bubble.
export function addFile(a) {
  const div = document.createElement("div");
  div.className = "msg assistant file"; // not a reply: no data-done, it does not end a run
  div.appendChild(attachmentNode(a));
  messages.appendChild(div);
  scrollDown();
}

export function addNote(text) {
  const div = document.createElement("div");
  div.className = "msg note";
  div.textContent = text;
  messages.appendChild(div);
  scrollDown();
}

export function addAssistant(text, runId) {
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

export function addToolCall(bubble, callId, name, args) {
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

export function finishToolCall(call, result, error) {
  call.summary.textContent = (error ? "✗ " : "✓ ") + call.name;
  if (error) call.line.classList.add("error");
  const pre = document.createElement("pre");
  pre.textContent = result;
  call.line.appendChild(pre);
}
