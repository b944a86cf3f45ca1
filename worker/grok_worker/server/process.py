"""Process-level helpers shared by the leader and follower paths of `grok-worker serve`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

#: Seconds to wait for every host of the group to join the step broadcast.
JOIN_TIMEOUT_SECONDS = 600.0


def exit_now(code: int) -> None:
    """Exit without waiting for worker threads (a load or a device step that cannot be stopped)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def install_signals(stop: asyncio.Event) -> None:
    """SIGTERM (Kubernetes) and SIGINT (Ctrl-C) set `stop` on the running loop (a drain); a second
    one while draining exits at once with 128 + the signal number, as a shell reports it."""
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        if stop.is_set():
            logging.getLogger(__name__).warning("second %s while stopping: exiting now", sig.name)
            exit_now(128 + int(sig))
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle, sig)
