"""Reconcile slots: at most N passes at once, an object's first pass ahead of every re-pass.

Data flow: each GrokDeployment's daemon (handlers.py) holds a slot for one pass. While a fleet
comes up, every object's pods and StatefulSet wake its daemon again and again; with plain FIFO
slots those re-passes queue between the first passes of objects created later, and the last
objects get their children only when every earlier object has been passed many times. A first
pass creates the children that the StatefulSet controller, the scheduler and the nodes then work
on in parallel, so it goes first; re-passes take the slots that first passes leave free.

Event-loop only: no locks, the loop is the single owner.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PrioritySlots:
    """A semaphore of `size` slots whose waiters for a first pass are served before the rest."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"reconcile slots must be at least 1, got {size}")
        self._free = size
        #: (first passes, re-passes): futures resolved when a slot is handed over.
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    @property
    def waiting(self) -> int:
        return sum(1 for queue in self._waiting for fut in queue if not fut.done())

    @asynccontextmanager
    async def hold(self, *, first: bool) -> AsyncIterator[None]:
        """Hold one slot for the body of the `async with`."""
        await self._acquire(first)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if first else 1]
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                if fut in queue:
                    queue.remove(fut)
            else:
                self._release()  # handed a slot, then cancelled before using it: pass it on
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._free += 1
