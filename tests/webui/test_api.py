"""The web chat's HTTP API against a real daemon on the demo model."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from picobot.core.channel import Capabilities, Channel, Rendered, State
from picobot.core.messages import OutboundMessage
from picobot.runtime.http import make_app
from tests.webui.conftest import TIMEOUT, StartDaemon, read_events


async def test_post_then_stream_a_whole_run(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        accepted = await d.post("hello **web**")
        assert set(accepted) == {"run_id", "session"} and accepted["session"]
        events = await d.events(accepted["run_id"])
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    names = [e.event for e in events]
    assert names[0] == "turn_started" and names[-2:] == ["turn_finished", "done"]
    assert set(names[1:-2]) == {"text_delta"} and len(names) > 5
    deltas = "".join(e.data["text"] for e in events if e.event == "text_delta")
    assert deltas == events[-2].data["text"]
    assert "hello **web**" in deltas


async def test_session_is_kept_and_history_is_served(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        first = await d.post("one")
        await d.events(first["run_id"])
        second = await d.post("two", session=first["session"])
        assert second["session"] == first["session"]
        final = (await d.events(second["run_id"]))[-2].data["text"]
        url = f"{d.base}/api/sessions/{first['session']}/messages"
        async with d.http.get(url) as r:
            assert r.status == 200
            history = await r.json()
        async with d.http.get(f"{d.base}/api/sessions/unknown-session/messages") as r:
            assert await r.json() == []
    assert [(m["role"], m["text"]) for m in history][:3:2] == [("user", "one"), ("user", "two")]
    assert history[-1] == {"role": "assistant", "text": final}
    assert len(history) == 4


async def test_bad_requests_are_refused(start_daemon: StartDaemon) -> None:
    async with start_daemon({"max_text": 10}) as d:
        url = d.base + "/api/messages"
        for body in ({"text": ""}, {"text": "   "}, {"text": "x" * 11}, {"text": 3}, [1]):
            async with d.http.post(url, json=body) as r:
                assert r.status == 400, body
                assert "error" in await r.json()
        async with d.http.post(url, json={"text": "ok", "session": "../etc"}) as r:
            assert r.status == 400
        json_type = {"Content-Type": "application/json"}
        async with d.http.post(url, data=b"{not json", headers=json_type) as r:
            assert r.status == 400
            assert (await r.json())["error"]
        async with d.http.post(url, json={"text": "x" * 10}) as r:
            assert r.status == 202  # exactly the limit is fine
        async with d.http.get(d.base + "/api/runs/no-such-run/events") as r:
            assert r.status == 404
            assert "error" in await r.json()


async def test_two_tabs_and_a_resume_by_last_event_id(start_daemon: StartDaemon) -> None:
    async with start_daemon(delay=0.002) as d:
        run = (await d.post("fan out"))["run_id"]
        tab1, tab2 = await asyncio.gather(d.events(run), d.events(run))
        assert tab1 == tab2 and tab1[-1].event == "done"
        resumed = await d.events(run, headers={"Last-Event-ID": "3"})
        assert [e.id for e in resumed] == [e.id for e in tab1[3:]]
        assert resumed == tab1[3:]


async def test_stop_through_the_same_post(start_daemon: StartDaemon) -> None:
    async with start_daemon(delay=0.05) as d:
        accepted = await d.post("a long answer")
        url = f"{d.base}/api/runs/{accepted['run_id']}/events"
        async with d.http.get(url) as r:
            first = await read_events(r, until="text_delta")
            assert first[-1].event == "text_delta"
            stop = await d.post("/stop", session=accepted["session"])
            rest = await read_events(r)
        stopped = await d.events(stop["run_id"])
    assert [e.event for e in rest][-2:] == ["turn_aborted", "done"]
    assert rest[-2].data["reason"] == "stopped"
    assert stopped[-2].event == "turn_finished" and stopped[-2].data["text"] == "Stopped."


async def test_a_message_during_a_run_is_a_new_run_of_the_session(
    start_daemon: StartDaemon,
) -> None:
    async with start_daemon(delay=0.01) as d:
        first = await d.post("first")
        url = f"{d.base}/api/runs/{first['run_id']}/events"
        async with d.http.get(url) as r:
            await read_events(r, until="text_delta")
            second = await d.post("and another thing", session=first["session"])
            assert second["run_id"] != first["run_id"]
            rest = await read_events(r)
        steered = await d.events(second["run_id"])
    assert [e.event for e in rest][-2:] == ["turn_finished", "done"]
    assert steered[-1].event == "done"
    # Steered into the running turn, or answered by a follow-up turn of its own:
    told = "".join(e.data.get("text", "") for e in rest + steered)
    assert "and another thing" in told


async def test_token_is_required_on_api_calls_when_set(start_daemon: StartDaemon) -> None:
    async with start_daemon({"token": "s3cret-web-token"}) as d:
        url = d.base + "/api/messages"
        async with d.http.post(url, json={"text": "hi"}) as r:
            assert r.status == 401
        bad = {"Authorization": "Bearer wrong"}
        async with d.http.post(url, json={"text": "hi"}, headers=bad) as r:
            assert r.status == 401
        async with d.http.get(d.base + "/api/status") as r:
            assert r.status == 401
        accepted = await d.post("hi", headers={"Authorization": "Bearer s3cret-web-token"})
        async with d.http.get(f"{d.base}/api/runs/{accepted['run_id']}/events") as r:
            assert r.status == 401
        events = await d.events(accepted["run_id"], params={"token": "s3cret-web-token"})
        assert events[-1].event == "done"
        async with d.http.get(d.base + "/") as r:  # the page itself loads; it sends the token
            assert r.status == 200
            assert "/static/app.js" in await r.text()
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]


async def test_page_and_static_files(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "css")):
            async with d.http.get(d.base + path) as r:
                assert r.status == 200 and kind in r.headers["Content-Type"]
        async with d.http.get(d.base + "/static/secret.py") as r:
            assert r.status == 404


async def test_readyz_and_metrics(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        await d.events((await d.post("count me"))["run_id"])
        async with d.http.get(d.base + "/readyz") as r:
            assert r.status == 200
            assert (await r.json())["channels"] == {"web": "connected"}
        async with d.http.get(d.base + "/metrics") as r:
            text = await r.text()
    for needle in (
        'picobot_inbound_messages_total{channel="web",result="accepted"}',
        'picobot_outbound_messages_total{channel="web",result="sent"}',
        'picobot_turn_seconds_count{channel="web"}',
        'picobot_queue_depth{topic="inbound"}',
        "picobot_lanes",
    ):
        assert needle in text, needle


class _Stub(Channel):
    name = "stub"
    capabilities = Capabilities(max_length=10)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        return "1"


async def test_readyz_names_failing_and_unavailable_channels() -> None:
    ok, broken = _Stub(None, _sink), _Stub(None, _sink)
    ok.set_state(State.CONNECTED)
    broken.set_state(State.FAILED, "bad token")
    app = make_app(
        {"web": ok, "slack": broken},
        dict,
        expected=lambda: ["web", "slack", "telegram"],
    )
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/readyz")
        assert r.status == 503
        body = await r.json()
    assert body["failing"] == ["slack", "telegram"]
    assert body["channels"]["telegram"] == "unavailable"


async def _sink(msg: object) -> None:
    return None


async def test_shutdown_ends_open_streams(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        web_channel = d.daemon.channels["web"]
        web_channel.broker.open("idle-run", "s")  # a run nobody will finish
        response = await d.http.get(f"{d.base}/api/runs/idle-run/events")
        assert response.status == 200
        reader = asyncio.create_task(read_events(response))  # subscribed before the 200
        async with asyncio.timeout(TIMEOUT):
            await web_channel.stop()  # what the daemon's shutdown does
            assert await reader == []
        response.release()


async def test_conversations_are_listed_renamed_and_deleted(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        first = await d.post("Plan a trip to Rome")
        await d.events(first["run_id"])
        second = await d.post("/help")  # a command only: listed, without a title yet
        await d.events(second["run_id"])
        async with d.http.get(d.base + "/api/sessions") as r:
            assert r.status == 200
            listed = await r.json()
        assert [(s["id"], s["title"]) for s in listed] == [
            (second["session"], None),
            (first["session"], "Plan a trip to Rome"),
        ]
        assert listed[0]["updated"] >= listed[1]["updated"]

        url = f"{d.base}/api/sessions/{first['session']}"
        async with d.http.patch(url, json={"title": " Rome "}) as r:
            assert r.status == 200 and await r.json() == {"id": first["session"], "title": "Rome"}
        for body in ({"title": ""}, {"title": 3}, {"title": "x" * 201}, [1]):
            async with d.http.patch(url, json=body) as r:
                assert r.status == 400, body
        async with d.http.patch(d.base + "/api/sessions/nope", json={"title": "x"}) as r:
            assert r.status == 404
        async with d.http.delete(f"{d.base}/api/sessions/{second['session']}") as r:
            assert r.status == 204
        async with d.http.delete(d.base + "/api/sessions/..") as r:
            assert r.status in (400, 404)
        async with d.http.get(d.base + "/api/sessions") as r:
            assert [(s["id"], s["title"]) for s in await r.json()] == [(first["session"], "Rome")]
        async with d.http.get(f"{d.base}/api/sessions/{second['session']}/messages") as r:
            assert await r.json() == []


async def test_history_keeps_tool_calls_and_command_replies(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        first = await d.post("what time is it?")
        events = await d.events(first["run_id"])
        assert [e.event for e in events].count("tool_started") == 1
        status = await d.post("/status", session=first["session"])
        reply = (await d.events(status["run_id"]))[-2].data["text"]
        async with d.http.get(f"{d.base}/api/sessions/{first['session']}/messages") as r:
            history = await r.json()
    assert [(m["role"], m.get("note", False)) for m in history] == [
        ("user", False),
        ("tool", False),
        ("assistant", False),
        ("user", True),
        ("assistant", True),
    ]
    tool = history[1]
    assert tool["name"] == "time" and tool["arguments"] == {} and tool["error"] is False
    assert tool["text"] in history[2]["text"]  # the demo answered from the tool's result
    assert history[3]["text"] == "/status" and history[4]["text"] == reply


async def test_info_names_the_model_and_static_files_are_served(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        async with d.http.get(d.base + "/api/info") as r:
            info = await r.json()
        assert info["model"] == "demo model" and info["boot"]
        for name, kind in (
            ("vendor/marked.min.js", "text/javascript"),
            ("vendor/purify.min.js", "text/javascript"),
            ("vendor/highlight.min.js", "text/javascript"),
            ("vendor/highlight-github-dark.min.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ):
            async with d.http.get(f"{d.base}/static/{name}") as r:
                assert r.status == 200 and r.content_type == kind, name
        for name in ("index.html", "vendor/README.md", "nope.js"):
            async with d.http.get(f"{d.base}/static/{name}") as r:
                assert r.status == 404, name


async def test_a_reminder_reaches_the_page_outside_a_reply_and_stays_in_history(
    start_daemon: StartDaemon,
) -> None:
    """No reply is streaming: a message for the chat (a reminder) arrives on the session's
    own event stream, and the next history load shows it too."""
    async with start_daemon() as d:
        first = await d.post("one")
        await d.events(first["run_id"])
        session = first["session"]
        url = f"{d.base}/api/sessions/{session}/events"
        async with d.http.get(url) as r:  # subscribed once the headers are in
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            reader = asyncio.create_task(read_events(r, until="notice"))
            await d.daemon.outbound.deliver(OutboundMessage("web", session, "⏰ tea"))
            (notice,) = await reader
        assert (notice.event, notice.data) == ("notice", {"text": "⏰ tea"})
        # No page watching: still kept for the next history load.
        await d.daemon.outbound.deliver(OutboundMessage("web", session, "⏰ later"))
        async with d.http.get(f"{d.base}/api/sessions/{session}/messages") as r:
            history = await r.json()
        async with d.http.get(f"{d.base}/api/sessions/../events") as r:
            assert r.status in (400, 404)
        async with d.http.get(url, headers={"Last-Event-ID": "x"}) as r:
            assert r.status == 400
    assert history[-2:] == [
        {"role": "assistant", "text": "⏰ tea", "note": True},
        {"role": "assistant", "text": "⏰ later", "note": True},
    ]
