// The message list: user and assistant bubbles, tool calls, notes.
import { renderInto } from "./markdown.js";

const messages = document.getElementById("messages");

export function scrollDown() {
  messages.scrollTop = messages.scrollHeight;
}

export function addUser(text, { note = false } = {}) {
  const div = document.createElement("div");
  div.className = "msg user" + (note ? " command" : "");
  div.textContent = text;
  messages.appendChild(div);
  scrollDown();
  return div;
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
