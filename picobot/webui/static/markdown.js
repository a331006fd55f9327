// Markdown for model output: marked renders, DOMPurify sanitises, highlight.js colours code.
// All three are vendored (see vendor/README.md) and loaded as classic scripts before this one.
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

export function renderInto(element, text) {
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
