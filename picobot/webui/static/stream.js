// picobot web chat: the open conversation's own event stream (GET /api/sessions/{id}/events),
// messages outside a reply, e.g. a reminder, shown as they come. Resumed by Last-Event-ID after
// a lost connection; a new page (or a restarted server) starts from now: the history has the rest.
import { headers, sleep, sse } from "./api.js";

let current = null; // the stream being followed: {session, lastId, abort}

// Follow `session`'s stream (none: stop). `show(name, data)` gets each event; `reconnect()`
// waits for the server and answers whether it restarted.
export function watchSession(session, show, reconnect) {
  if (current && current.session === session) return;
  if (current) current.abort.abort();
  current = null;
  if (!session) return;
  const stream = { session, lastId: null, abort: new AbortController() };
  current = stream;
  follow(stream, show, reconnect);
}

async function follow(stream, show, reconnect) {
  const url = "/api/sessions/" + encodeURIComponent(stream.session) + "/events";
  while (current === stream) {
    let lost = true; // the server went away (else it answered, or the stream was replaced)
    try {
      const extra = { Accept: "text/event-stream" };
      if (stream.lastId !== null) extra["Last-Event-ID"] = String(stream.lastId);
      const response = await fetch(url, { headers: headers(extra), signal: stream.abort.signal });
      if (response.status === 503) {
        lost = false;
        await sleep(5000); // too many streams open: try again later
      } else if (!response.ok) {
        return; // refused (a bad session id, a token needed): the history still shows all
      } else {
        for await (const event of sse(response)) {
          stream.lastId = Number(event.id) || stream.lastId;
          show(event.event, JSON.parse(event.data || "{}"));
        }
      }
    } catch (err) {
      // Replaced by another conversation (aborted), or the connection broke.
    }
    if (current !== stream) return;
    if (lost && (await reconnect())) stream.lastId = null; // restarted: its old stream is gone
  }
}
