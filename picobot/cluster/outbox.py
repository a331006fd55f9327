"""The outbox in Redis (cluster mode): any node can finish any delivery.

    picobot:out:m:<id>               hash: data (JSON), p, seq, state, created, c:<chunk> ids
    picobot:out:q:<channel>:<chat>   sorted set: the chat's undelivered ids, by seq
    picobot:out:chats                sorted set: chats with undelivered, by their oldest
    picobot:out:seq, :pending        counters (accept order; undelivered messages)
    picobot:out:dead                 list: the newest dead letters (JSON), capped
    picobot:out:re:<inbound id>      a reply to that message was recorded (expires in 7 days)
    picobot:out:ph                   hash: inbound id -> its "Thinking…" placeholder (JSON)

Same meaning as the SQLite `Outbox`. Each change is one Lua script, so a record and its
queues never disagree. A chat's replies are delivered by the owner of the chat's inbound
partition: progress writes (`chunk_sent`, `delivered`, `dead`) are fenced by that partition's
lease token, so a node that lost the partition cannot write after the new owner took over —
it gets `Superseded` and stops; a kill or a pause duplicates at most the chunk in flight.
A turn's replies are recorded fenced by the lease the turn started under: a turn that
outlived its partition cannot add a second answer to the new owner's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from picobot.cluster import cancellable, key
from picobot.cluster.lease import Fence
from picobot.cluster.partitions import partition_of
from picobot.core.errors import StorageError, Superseded
from picobot.core.messages import OutboundMessage
from picobot.storage.codec import dump, load_outbound
from picobot.storage.records import DeadLetter, Pending, Placeholder

KEEP_MS = 7 * 24 * 3600 * 1000  # dead letters' records and "answered" marks live this long
DEAD_LETTERS = 1000  # the newest dead letters kept
PLACEHOLDER_SECONDS = 24 * 3600  # a placeholder record no turn cleared is dropped after this

SEQ, PENDING, CHATS, DEAD, PLACEHOLDERS = (
    key("out", name) for name in ("seq", "pending", "chats", "dead", "ph")
)

# Prologue of the fenced writes: KEYS[1] the fence counter, ARGV[1] the token ('' unfenced).
_FENCED = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED')
end
"""
# KEYS: fence, record, queue, chats, seq, pending[, answered]
# ARGV: token, data, created, member, id, keep
_ADD = (
    _FENCED
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[2], 'data', ARGV[2], 'seq', seq, 'state', 'pending', 'created', ARGV[3])
redis.call('ZADD', KEYS[3], seq, ARGV[5])
redis.call('ZADD', KEYS[4], 'NX', seq, ARGV[4])
redis.call('INCR', KEYS[6])
if KEYS[7] then redis.call('SET', KEYS[7], ARGV[5], 'PX', ARGV[6]) end
return seq
"""
)
# KEYS: fence, record  ARGV: token, field, platform id
_CHUNK = (
    _FENCED
    + """
if redis.call('HGET', KEYS[2], 'state') ~= 'pending' then return 0 end
return redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
)
# Leaves the chat's queue; the chat is ranked by its oldest reply (gone once none is left).
_UNQUEUE = """
local function unqueue(queue, chats, id, member)
  redis.call('ZREM', queue, id)
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if head[2] then redis.call('ZADD', chats, head[2], member)
  else redis.call('ZREM', chats, member) end
end
"""
# KEYS: fence, record, queue, chats, pending, placeholders  ARGV: token, id, member, inbound
_DELIVERED = (
    _FENCED
    + _UNQUEUE
    + """
if redis.call('HGET', KEYS[2], 'state') == 'pending' then redis.call('DECR', KEYS[5]) end
redis.call('DEL', KEYS[2])
unqueue(KEYS[3], KEYS[4], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('HDEL', KEYS[6], ARGV[4]) end
return 1
"""
)
# KEYS: fence, record, queue, chats, pending, dead  ARGV: token, id, member, letter, keep, cap
_DEAD = (
    _FENCED
    + _UNQUEUE
    + """
if redis.call('HGET', KEYS[2], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[2], 'state', 'dead')
redis.call('PEXPIRE', KEYS[2], ARGV[5])
unqueue(KEYS[3], KEYS[4], ARGV[2], ARGV[3])
redis.call('DECR', KEYS[5])
redis.call('LPUSH', KEYS[6], ARGV[4])
redis.call('LTRIM', KEYS[6], 0, ARGV[6] - 1)
return 1
"""
)

T = TypeVar("T")
FenceOf = Callable[[int], Fence | None]  # a partition's lease fence, None if not held here
TurnFence = Callable[[str], Fence | None]  # inbound id -> the lease its turn runs under


def record_key(msg_id: str) -> str:
    return key("out", "m", msg_id)


def queue_key(channel: str, chat_id: str) -> str:
    return key("out", "q", channel, chat_id)


class RedisOutbox:
    """`OutboxStore` over Redis. The client belongs to the caller.

    `fence(p)` gives the lease fence of partition `p` while this node holds it; without
    `fence` writes are not fenced (one node alone, tests). `turn_fence(inbound id)` gives the
    partition lease a turn running here started under: its replies are recorded only while
    that lease is current (a node that lost the partition meanwhile gets `Superseded`: the
    new owner runs the turn again). Messages of no turn here (reminders, notices) are not.

    Error handling: Redis errors become `StorageError` (nothing of that call was kept);
    a refused fence, or a message of a partition this node does not hold, `Superseded`.
    """

    def __init__(
        self, redis: Redis, fence: FenceOf | None = None, turn_fence: TurnFence | None = None
    ) -> None:
        self.redis = redis
        self._fence_of = fence
        self._turn_fence = turn_fence
        self._add = redis.register_script(_ADD)
        self._chunk = redis.register_script(_CHUNK)
        self._delivered = redis.register_script(_DELIVERED)
        self._dead = redis.register_script(_DEAD)

    async def _run(self, work: Awaitable[T]) -> T:
        """Await `work` (Redis calls), cancellable at once (see `cancellable`); errors mapped."""
        try:
            return await cancellable(_awaited(work))
        except ResponseError as exc:
            if "FENCED" in str(exc):
                raise Superseded("another node delivers this chat's replies now") from None
            raise StorageError(f"cluster outbox: {exc}") from None
        except RedisError as exc:
            raise StorageError(f"cluster outbox: Redis unreachable ({exc})") from None

    def _fence(self, msg: OutboundMessage) -> tuple[str, str]:
        """(fence key, token) for a progress write on `msg`; (any key, '') when not fenced."""
        if self._fence_of is None:
            return SEQ, ""
        fence = self._fence_of(partition_of(msg.channel, msg.chat_id))
        if fence is None:
            raise Superseded(f"this node does not deliver to {msg.channel}:{msg.chat_id} now")
        return fence.key, str(fence.token)

    # -- writes -----------------------------------------------------------------------------

    async def add(self, msg: OutboundMessage) -> None:
        turn = None
        if msg.in_reply_to and self._turn_fence is not None:
            turn = self._turn_fence(msg.in_reply_to)
        fence_key, token = (turn.key, str(turn.token)) if turn is not None else (SEQ, "")
        keys = [fence_key, record_key(msg.id), queue_key(*msg.lane_key), CHATS, SEQ, PENDING]
        if msg.in_reply_to:
            keys.append(key("out", "re", msg.in_reply_to))
        args: list[str | float] = [token, dump(msg), time.time(), _member(msg), msg.id, KEEP_MS]
        await self._run(self._add(keys=keys, args=args))

    async def chunk_sent(self, msg: OutboundMessage, index: int, platform_id: str) -> None:
        fence_key, token = self._fence(msg)
        keys, args = [fence_key, record_key(msg.id)], [token, f"c:{index}", platform_id]
        await self._run(self._chunk(keys=keys, args=args))

    async def delivered(self, msg: OutboundMessage) -> None:
        fence_key, token = self._fence(msg)
        keys = [fence_key, record_key(msg.id), queue_key(*msg.lane_key), CHATS, PENDING]
        args = [token, msg.id, _member(msg), msg.in_reply_to or ""]
        await self._run(self._delivered(keys=[*keys, PLACEHOLDERS], args=args))

    async def dead(self, msg: OutboundMessage, error: str) -> None:
        fence_key, token = self._fence(msg)
        letter = DeadLetter(msg.id, msg.channel, msg.chat_id, msg.text, error[:500], time.time())
        keys = [fence_key, record_key(msg.id), queue_key(*msg.lane_key), CHATS, PENDING, DEAD]
        args: list[str | int] = [token, msg.id, _member(msg)]
        args += [json.dumps(letter._asdict(), ensure_ascii=False), KEEP_MS, DEAD_LETTERS]
        await self._run(self._dead(keys=keys, args=args))

    async def placeholder(self, record: Placeholder) -> None:
        value = json.dumps([*record[1:], time.time()], ensure_ascii=False)
        await self._run(self.redis.hset(PLACEHOLDERS, record.key, value))  # type: ignore[arg-type]

    async def finished(self, inbound_id: str) -> None:
        """The turn for `inbound_id` ended: its placeholder record goes."""
        await self._run(self.redis.hdel(PLACEHOLDERS, inbound_id))  # type: ignore[arg-type]

    # -- reads ------------------------------------------------------------------------------

    async def answered(self, inbound_id: str) -> bool:
        """Whether a reply to `inbound_id` was recorded (pending, delivered or dead)."""
        return bool(await self._run(self.redis.exists(key("out", "re", inbound_id))))

    async def holds(self, msg_id: str) -> bool:
        return bool(await self._run(self.redis.exists(record_key(msg_id))))

    async def pending_chats(self) -> list[tuple[str, str, int]]:
        return await self._run(self._pending_chats())

    async def _pending_chats(self) -> list[tuple[str, str, int]]:
        members = await self.redis.zrange(CHATS, 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.zcard(queue_key(*member.split(":", 1)))
            counts = await pipe.execute()
        found = []
        for member, count in zip(members, counts, strict=True):
            channel, chat_id = member.split(":", 1)
            if count:
                found.append((channel, chat_id, int(count)))
        return found

    async def next_pending(
        self, channel: str, chat_id: str, exclude: Collection[str] = ()
    ) -> Pending | None:
        return await self._run(self._next_pending(channel, chat_id, exclude))

    async def _next_pending(
        self, channel: str, chat_id: str, exclude: Collection[str]
    ) -> Pending | None:
        for msg_id in await self.redis.zrange(queue_key(channel, chat_id), 0, len(exclude)):
            if msg_id not in exclude:
                found = await self._load(msg_id)
                if found is not None:
                    return found
        return None

    async def pending(self) -> list[Pending]:
        return await self._run(self._pending())

    async def _pending(self) -> list[Pending]:
        ids: list[tuple[float, str]] = []
        for channel, chat_id, _ in await self._pending_chats():
            queue = await self.redis.zrange(queue_key(channel, chat_id), 0, -1, withscores=True)
            ids += [(score, msg_id) for msg_id, score in queue]
        found = [await self._load(msg_id) for _, msg_id in sorted(ids)]
        return [p for p in found if p is not None]

    async def _load(self, msg_id: str) -> Pending | None:
        record: dict[str, str] = await self.redis.hgetall(record_key(msg_id))  # type: ignore[misc]
        if record.get("state") != "pending":  # delivered or dead meanwhile
            return None
        sent = {int(k[2:]): v for k, v in record.items() if k.startswith("c:")}
        return Pending(load_outbound(record["data"]), sent)

    async def placeholders(self) -> list[Placeholder]:
        return await self._run(self._placeholders())

    async def _placeholders(self) -> list[Placeholder]:
        records: dict[str, str] = await self.redis.hgetall(PLACEHOLDERS)  # type: ignore[misc]
        found, stale = [], []
        for inbound_id, value in records.items():
            channel, chat_id, thread, message_id, created = json.loads(value)
            if created < time.time() - PLACEHOLDER_SECONDS:
                stale.append(inbound_id)
            else:
                found.append(Placeholder(inbound_id, channel, chat_id, thread, message_id))
        if stale:
            await self.redis.hdel(PLACEHOLDERS, *stale)  # type: ignore[misc]
        return found

    async def counts(self) -> dict[str, int]:
        return await self._run(self._counts())

    async def _counts(self) -> dict[str, int]:
        pending = await self.redis.get(PENDING)
        dead = await self.redis.llen(DEAD)  # type: ignore[misc]
        return {"pending": int(pending or 0), "dead": int(dead)}

    async def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        items: list[str] = await self._run(self.redis.lrange(DEAD, 0, limit - 1))  # type: ignore[arg-type]
        return [DeadLetter(**json.loads(item)) for item in items]


def _member(msg: OutboundMessage) -> str:
    """The chat in the set of chats with undelivered replies."""
    return f"{msg.channel}:{msg.chat_id}"


async def _awaited(work: Awaitable[T]) -> T:
    return await work
