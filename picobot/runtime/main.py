"""`picobot run`: one daemon until SIGTERM/SIGINT, with SIGHUP reload and systemd's notify.

A second SIGTERM/SIGINT skips the graceful drain: the daemon closes its stores and child
processes and exits at once (130 from the CLI); what was recorded stays recoverable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from picobot.config import Config
from picobot.runtime import collector
from picobot.runtime.daemon import Daemon
from picobot.runtime.forced import exit_soon
from picobot.runtime.sdnotify import Notifier

log = logging.getLogger("picobot")

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop where it is installed (a dependency on Linux and macOS):
    its event loop costs less CPU per message than asyncio's own (benchmarks/realpath.py)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def run(
    config: Config,
    *,
    config_path: str | Path | None = None,
    on_ready: Callable[[Daemon], None] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; a second signal skips the graceful drain. Returns 0.

    SIGHUP re-reads `config_path` (see `Daemon.reload`). Under systemd (``Type=notify``) it
    reports READY/RELOADING/STOPPING and a STATUS line, and pings the watchdog from the loop.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    daemon = Daemon(config)
    notifier = Notifier()
    signals = 0
    ready = False
    reloads: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        forcing = signals > 1
        name = signal.Signals(signum).name
        turns = daemon.agent_loop.running()
        if forcing:
            log.info("received %s again: forcing exit", name)
        elif turns:
            # Otherwise the wait for running turns looks like a hang.
            log.info(
                "received %s: finishing %d turn(s) (up to %.0f s); Ctrl-C again to force",
                name,
                turns,
                daemon.config.dispatch.drain_timeout,
            )
        else:
            log.info("received %s: stopping", name)
        if not forcing:
            daemon.stopped.set()
        elif main is not None and signals == 2:
            exit_soon()  # should closing hang (a thread, a child): the process goes anyway
            main.cancel()

    async def reload_config(path: str | Path) -> None:
        notifier.reloading()
        try:
            await daemon.reload_file(path)
        except Exception:
            log.exception("reload failed")
        finally:
            notifier.ready(f"ready: {daemon.summary_line()}")

    def on_hangup() -> None:
        if config_path is None:
            log.warning("received SIGHUP: nothing to reload (started without a config file)")
        elif not ready:
            log.warning("received SIGHUP while starting or stopping: ignored")
        else:
            log.info("received SIGHUP: reloading %s", config_path)
            task = loop.create_task(reload_config(config_path), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    # Before startup: a signal during startup must stop us gracefully, not kill us.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    # Pinged from the loop itself, through startup and shutdown: a wedged loop stops pinging.
    watchdog = loop.create_task(notifier.watchdog(), name="watchdog")
    try:
        async with daemon:
            ready = True
            collector.tune()
            notifier.ready(f"ready: {daemon.summary_line()}")
            if on_ready is not None:
                on_ready(daemon)
            await daemon.stopped.wait()
            ready = False
            notifier.stopping()
            # A reload half-way through starting a channel finishes before teardown.
            await asyncio.gather(*reloads, return_exceptions=True)
    except asyncio.CancelledError:
        # Forced exit (a second signal) cut the shutdown short: still end the MCP servers and
        # close the databases, whose worker threads would otherwise keep the process alive.
        if main is not None:
            # Handled here: the closing must not look cancelled itself (`cancel_and_wait`
            # re-raises while the caller is being cancelled, which cut force_close short).
            main.uncancel()
        await daemon.force_close()
        raise
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        notifier.close()
    return 0
