"""An outbox written by picobot 0.1.0 (before the layered core) still replays after the upgrade.

`tests/fixtures/outbox-0.1.0.db` was written by 0.1.0's own `Outbox`: an accepted message with a
placeholder and a two-chunk reply of which chunk 0 was delivered, and an accepted message whose
turn never finished.
"""

import shutil
from dataclasses import replace
from pathlib import Path

from picobot.core.messages import Kind
from picobot.outbound.door import Outbound
from picobot.storage.outbox import Outbox
from tests.fakes.memory_channel import EDITABLE, MemoryChannel, Sent

FIXTURE = Path(__file__).parent.parent / "fixtures" / "outbox-0.1.0.db"


async def test_an_outbox_from_0_1_0_replays_after_the_upgrade(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "outbox.db")
    channel = MemoryChannel(capabilities=replace(EDITABLE, max_length=32))  # two chunks
    # What 0.1.0 had shown in the chat: the placeholder, and chunk 0 as a message of its own.
    channel.messages["ph-1"] = Sent("chat1", "ph-1", "Thinking…", None)
    channel.messages["p0"] = Sent("chat1", "p0", "The first part, delivered.", None)
    async with Outbox.in_dir(tmp_path) as box:
        [unfinished] = await box.unfinished()
        assert (unfinished.id, unfinished.text, unfinished.sender.username) == (
            "in-2",
            "what time is it?",
            "bob",
        )
        [pending] = await box.pending()
        assert (pending.message.id, pending.message.kind, pending.sent) == (
            "out-1",
            Kind.REPLY,
            {0: "p0"},
        )
        outbound = Outbound({"memory": channel}, outbox=box)
        assert await outbound.resume() == 1
        assert await outbound.drain(10)
        await outbound.aclose()
        assert await box.pending() == []
    # Only what was not delivered before the upgrade goes out now.
    texts = [text for op, _, text in channel.calls if op in ("send", "edit")]
    assert texts == ["The second part, still due."]
    assert channel.messages["ph-1"].deleted  # no "Thinking…" left behind
