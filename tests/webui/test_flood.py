"""The web chat's flood limits: per session and per client address, answered 429."""

from __future__ import annotations

from pathlib import Path

from picobot.config import parse_config
from tests.webui.conftest import StartDaemon


async def test_a_flooding_session_gets_429_and_other_sessions_go_on(
    start_daemon: StartDaemon,
) -> None:
    async with start_daemon() as d:  # defaults: 10 per session, 30 per address, a minute
        url = d.base + "/api/messages"
        for i in range(10):
            await d.post(f"flood {i}", session="flooder")
        async with d.http.post(url, json={"text": "one more", "session": "flooder"}) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "60"
            assert "10 messages a minute in this session" in (await r.json())["error"]
        accepted = await d.post("hello", session="another-tab")
        events = await d.events(accepted["run_id"])
        assert events[-1].event == "done"


async def test_new_sessions_from_one_address_are_limited_too(start_daemon: StartDaemon) -> None:
    async with start_daemon({"inbound_rate": 100, "address_rate": 3}) as d:
        for i in range(3):
            await d.post("hi", session=f"s{i}")
        body = {"text": "hi", "session": "s-new"}
        async with d.http.post(d.base + "/api/messages", json=body) as r:
            assert r.status == 429
            assert "from this address" in (await r.json())["error"]


async def test_a_reload_applies_new_web_rates(start_daemon: StartDaemon, tmp_path: Path) -> None:
    async with start_daemon() as d:
        data = {"http": {"port": 0}, "data_dir": str(tmp_path), "channels": {"web": {}}}
        data["channels"]["web"] = {"inbound_rate": 2}
        await d.daemon.reload(parse_config(data, env={}))
        for _ in range(2):
            await d.post("hi", session="s")
        async with d.http.post(d.base + "/api/messages", json={"text": "x", "session": "s"}) as r:
            assert r.status == 429
