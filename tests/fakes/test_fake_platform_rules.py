"""Platform rules the fakes model for issue 14: Discord's nonce de-duplication, Slack's 4 000
character guidance, usernames and random faults."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_slack import FakeSlack

DM, ALICE = 30, 3000


async def test_discord_returns_the_message_a_nonce_already_created() -> None:
    async with FakeDiscord() as fake, aiohttp.ClientSession() as http:
        fake.add_dm(DM, ALICE, "alice")
        url = f"{fake.http_url}/api/v10/channels/{DM}/messages"
        headers = {"Authorization": f"Bot {fake.token}"}

        async def create(**body: Any) -> str:
            async with http.post(url, json={"content": "hi", **body}, headers=headers) as r:
                assert r.status == 200
                return str((await r.json())["id"])

        first = await create(nonce="42", enforce_nonce=True)
        assert await create(nonce="42", enforce_nonce=True) == first  # de-duplicated
        assert await create(nonce="42") != first  # without enforce_nonce: a new message
        assert await create(nonce="43", enforce_nonce=True) != first
        assert len(fake.channel_log(DM)) == 3


@pytest.fixture
async def slack() -> Any:
    async with FakeSlack() as fake:
        async with aiohttp.ClientSession() as session:
            client = AsyncWebClient(
                token=fake.bot_token, base_url=fake.base_url, session=session, retry_handlers=[]
            )
            yield fake, client


async def test_slack_lists_messages_over_4000_characters(slack: Any) -> None:
    fake, client = slack
    fake.enforce_limits = False
    ok = await client.chat_postMessage(channel="D1", text="x" * 4_000)
    await client.chat_postMessage(channel="D1", text="x" * 4_001)
    await client.chat_update(channel="D1", ts=ok["ts"], text="y" * 5_000)
    assert [(c.method, len(c.params["text"])) for c in fake.oversized] == [
        ("chat.postMessage", 4_001),
        ("chat.update", 5_000),
    ]


async def test_slack_users_info_names_and_seeded_chaos(slack: Any) -> None:
    fake, client = slack
    fake.usernames["U0ALICE"] = "alice"
    assert (await client.users_info(user="U0ALICE"))["user"]["name"] == "alice"
    assert (await client.users_info(user="U0BOB"))["user"]["name"] == "user-u0bob"

    async def outcomes(seed: int) -> list[str]:
        fake.chaos(error_rate=0.3, drop_rate=0.2, seed=seed)
        result = []
        for _ in range(30):
            try:
                await client.auth_test()
                result.append("ok")
            except SlackApiError:
                result.append("500")
            except aiohttp.ClientError:
                result.append("dropped")
        return result

    first = await outcomes(1)
    assert {"ok", "500", "dropped"} <= set(first)
    assert await outcomes(1) == first  # the same seed, the same faults
