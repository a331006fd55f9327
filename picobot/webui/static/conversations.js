// The conversation list: newest first, open, rename (inline), delete.
import { api } from "./api.js";

const list = document.getElementById("conversations");
let hooks = { current: () => undefined, open: () => {}, deleted: () => {}, problem: () => {} };

// current() -> the open conversation's id; open(id); deleted() when the open one was deleted;
// problem(message) to show an error.
export function initConversations(given) {
  hooks = given;
}

export async function loadConversations() {
  let found;
  try {
    found = await api("/api/sessions");
  } catch (err) {
    return; // the chat still works; the list comes back with the connection
  }
  list.replaceChildren();
  for (const s of found) {
    const li = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = s.title || "New chat";
    if (s.id === hooks.current()) open.setAttribute("aria-current", "true");
    open.addEventListener("click", () => hooks.open(s.id));
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
    list.appendChild(li);
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
      }).catch((err) => hooks.problem(err.message));
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
    hooks.problem(err.message);
    return;
  }
  if (s.id === hooks.current()) hooks.deleted();
  loadConversations();
}
