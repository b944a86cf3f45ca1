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
    """SIGTERM (Kubernetes) and SIGINT (Ctrl-C) set `stop` on the running loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
