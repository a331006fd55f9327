"""Where the real path's CPU goes: a sampling profile of the event loop's thread by stage,
and what a message costs (the text under the table in docs/benchmarks.md)."""

from __future__ import annotations

import collections
import signal
import time
from types import FrameType

STAGES = {  # the innermost picobot module on the stack -> its stage
    "picobot/inbound/": "intake (access, flood guard, publish)",
    "picobot/agent/": "agent (session worker, turn, model stream)",
    "picobot/outbound/streaming.py": "reply writer",
    "picobot/outbound/": "outbound door, lanes, delivery",
    "picobot/text/": "split and render",
    "picobot/storage/": "storage around SQLite (JSON, grouping, futures)",
    "picobot/runtime/": "daemon wiring (writer per turn)",
    "picobot/core/": "core (bus, messages, events, metrics)",
    "benchmarks/": "benchmark (fake model, null channel, feeding)",
}
LOOP = "event loop (scheduling, wakeups, task steps)"
SQL = "SQLite statements and commits (in the event loop)"


class Profile:
    """Samples the event loop's thread every millisecond of process CPU (SIGPROF) and counts
    each sample for the stage of the innermost picobot function on its stack."""

    def __init__(self) -> None:
        self.samples: collections.Counter[str] = collections.Counter()
        self._main_cpu = 0.0

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
        self._main_cpu = time.thread_time()

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        self._main_cpu = time.thread_time() - self._main_cpu

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        stage = None
        inner = frame
        while inner is not None:  # SQLite's own work, whoever queued it
            if (
                inner.f_code.co_name == "_transact"
                and "picobot/storage/" in inner.f_code.co_filename
            ):
                stage = SQL
            inner = inner.f_back
        while frame is not None and stage is None:
            path = frame.f_code.co_filename
            if frame.f_code.co_name == "select" and path.endswith("selectors.py"):
                stage = "idle"  # waiting: the tick was another thread's CPU
            for prefix, name in STAGES.items():
                if stage is None and prefix in path:
                    stage = name
            frame = frame.f_back
        self.samples[stage or LOOP] += 1

    def per_message(self, messages: int) -> list[tuple[str, float]]:
        """µs of the event loop thread's CPU per message, by stage."""
        busy = sum(n for stage, n in self.samples.items() if stage != "idle")
        return [
            (stage, self._main_cpu / messages * 1e6 * n / busy)
            for stage, n in self.samples.most_common()
            if stage != "idle"
        ]


ANALYSIS = (
    "The signal is handled at the next Python function, so the C parts of the event loop"
    " (task steps, future callbacks) and the garbage collector count for the function that"
    " runs next, and SQLite's for the statements' own row. What a message costs now: eight"
    " SQLite statements, about 32 µs of SQLite's own work (the message's record; the turn's"
    " attempt, queued without waiting; the history's read and write, with the session's row;"
    " the reply's record; its delivery, which deletes the record and marks the message"
    " answered, queued without waiting, after which the turn's end has nothing to record);"
    " three tasks (the session's worker, the turn, the chat's lane); the cyclic garbage"
    " collector, a few µs; for Markdown, the rendering, about 21 µs (pyromark's parse 3, the"
    " tree built from its events 7.5, the walk 7, the visible text 1; text without Markdown"
    " skips it, same output, property-tested). At log level info, each message has three"
    " event lines (its intake, its turn, its reply): measured inside the run, each takes 10"
    " to 15 µs (twice what the same call takes in a loop of its own, where the logging code"
    " stays in the CPU's caches). Changed in the last round: those lines are logged up to"
    " `log.event_lines_per_second` (200) a second, and the rest counted (the row with every"
    " line shows what they cost); the log redaction's quick test looks for the marks each"
    " token shape has (a colon, a prefix, two dots), so a message id no longer sets off the"
    " full pattern (4 µs). For a Telegram chat with its config's defaults (the row that shows"
    " them): the flood guard forgets the sender seen least recently once it holds 4,096,"
    " where each new sender made it look at every bucket for an idle one (quadratic in a"
    " burst of new senders: 738 → 279 µs a message in that row); the end of a turn whose"
    " reply took its placeholder makes no lane job; the streaming writer's timer becomes a"
    " task only at its first tick; the placeholder's record is queued, not waited for."
    " Changed before, each measured on this benchmark: the values built"
    " on every message's path (messages, run and model events, rendered text) are frozen"
    " for the type checker only, because a frozen dataclass's `__init__` calls"
    " `object.__setattr__` for each field (about 9 µs a message); a delivered reply's"
    " record is queued, not waited for, and the turn's end writes nothing more for a message"
    " a delivered reply answered (one statement less); a platform call's rate-budget slot is"
    " a plain context manager, not a generator (about 2 µs a call); the rendering finds the"
    " visible text once, not twice; the markers"
    ' (typing, "Thinking…") that would show nothing take no lane, where each cost as much'
    " as a reply; a lane ends as soon as it has delivered everything, where it used to wait a"
    " minute for more, so the garbage collector walked every chat of the last minute (about 15"
    " µs a message); the sessions beyond `agent.max_parallel_turns` wait as their first"
    " message, not as tasks waiting for a slot (the collector walked those too: about 10 µs a"
    " message in this burst); the turn journal's records are queued without waiting; JSON by"
    " orjson;"
    " the replay check by the row count, not RETURNING; the event loop is uvloop's (the"
    " asyncio row shows the difference); markdown-it-py gave way to pyromark (its parse"
    " and tree cost about 130 µs); the collector's youngest generation waits for 20 000"
    " allocations, not 5 000 (about 9 µs); and a reply without a code fence that fits skips"
    " the splitter (about 3 µs). With many messages in flight, the intake outpaces the"
    " turns, so messages queue at the agent: the latency there is that queue. Telegram's"
    " long polling hands a polled batch over at once (each chat's updates in order), so the"
    " batch's records share a commit, and confirms it once they are recorded. An earlier"
    " round handed updates over one at a time, each waiting for its own commit, because the"
    " batch at once slowed the cluster benchmark's burst (300 chats, one process: first reply"
    " after 1.9 s instead of 0.19 s, 22 msg/s instead of 30). The cause was the typing"
    " indicators: 300 started at once, outside the rate budget, and took the process's CPU"
    " before any reply went out. They now take only spare budget (a slot of the overall"
    " level while at least half of it is free), and the burst in batches keeps 30 msg/s"
    " with its first reply after 0.2 s (16 indicators instead of 480).\n"
)
