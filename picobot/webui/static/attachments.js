// Files chosen for the next message: the 📎 button, drag-and-drop anywhere on the page, and the
// chips that list them (click one to remove it).
const list = document.getElementById("attached");
const picker = document.getElementById("file");
let chosen = []; // File objects

function show() {
  list.replaceChildren(
    ...chosen.map((file, i) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.title = "Remove";
      chip.setAttribute("aria-label", "Remove " + file.name);
      chip.textContent = "📎 " + file.name + " ✕";
      chip.addEventListener("click", () => {
        chosen.splice(i, 1);
        show();
      });
      return chip;
    }),
  );
}

export function attach(files) {
  chosen = chosen.concat(Array.from(files));
  show();
}

// The chosen files, and the list emptied (they go with the message being sent).
export function takeAttached() {
  const files = chosen;
  chosen = [];
  show();
  return files;
}

// What the page shows for files not uploaded yet: images from the browser's own copy.
export function previews(files) {
  return files.map((f) =>
    f.type.startsWith("image/")
      ? { kind: "image", name: f.name, local: URL.createObjectURL(f) }
      : { kind: "file", name: f.name, local: "" },
  );
}

export function initAttachments() {
  document.getElementById("attach").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    attach(picker.files);
    picker.value = "";
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
}
