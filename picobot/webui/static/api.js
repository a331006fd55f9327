// picobot web chat: the HTTP API, the token, and a small event-stream reader.
// Files are stored by the server and served from GET /api/media/{id}.
export const KEYS = {
  token: "picobot.token",
  session: "picobot.session",
  run: "picobot.run",
  draft: "picobot.draft",
};

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

export function headers(extra = {}) {
  const token = localStorage.getItem(KEYS.token);
  // X-Picobot: a header no cross-site form can send (the server requires it, or JSON, on POST).
  const base = { "X-Picobot": "web" };
  return Object.assign(base, token ? { Authorization: "Bearer " + token } : {}, extra);
}

// A stored file's URL for <img>, <audio> and links, which cannot send a header.
export function mediaUrl(url) {
  const token = localStorage.getItem(KEYS.token);
  return token ? url + "?token=" + encodeURIComponent(token) : url;
}

export class Offline extends Error {}

export async function api(path, options = {}) {
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


export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function* sse(response) {
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
