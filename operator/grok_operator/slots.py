"""Reconcile slots: at most N passes at once, an object's first pass ahead of every re-pass.

Data flow: each GrokDeployment's daemon (handlers.py) holds a slot for one pass. While a fleet
comes up, every object's pods and StatefulSet wake its daemon again and again; with plain FIFO
slots those re-passes queue between the first passes of objects created later, and the last
objects get their children only when every earlier object has been passed many times. A first
pass creates the children that the StatefulSet controller, the scheduler and the nodes then work
on in parallel, so it goes first; re-passes take the slots that first passes leave free.

A re-pass is not starved, though: one that has waited `max_re_pass_wait` seconds (5 by default)
goes ahead of the first passes. A re-pass is what reports a group Ready; without the bound, in a
burst of a thousand new objects every status would say Loading until the last first pass was
done, minutes after the pods were Ready. Five seconds is longer than a pod takes from created to
Ready on the kwok nodes of figure 13, so the bounded re-pass usually finds its pods Ready and
writes once.

Event-loop only: no locks, the loop is the single owner.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

#: A re-pass that waited this long goes ahead of first passes.
MAX_RE_PASS_WAIT_SECONDS = 5.0


_Waiter = tuple[float, "asyncio.Future[None]"]


class PrioritySlots:
    """A semaphore of `size` slots whose waiters for a first pass are served before the rest,
    unless the oldest re-pass has waited `max_re_pass_wait` seconds."""

    def __init__(
        self,
        size: int,
        *,
        max_re_pass_wait: float = MAX_RE_PASS_WAIT_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"reconcile slots must be at least 1, got {size}")
        self._free = size
        self._max_re_pass_wait = max_re_pass_wait
        self._clock = clock
        #: (first passes, re-passes): (when queued, future resolved when a slot is handed over).
        self._waiting: tuple[deque[_Waiter], deque[_Waiter]] = (deque(), deque())

    @property
    def waiting(self) -> int:
        return sum(1 for queue in self._waiting for _, fut in queue if not fut.done())

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

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
        waiter = (self._now(), fut)
        queue.append(waiter)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                if waiter in queue:
                    queue.remove(waiter)
            else:
                self._release()  # handed a slot, then cancelled before using it: pass it on
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue and queue[0][1].done():
                queue.popleft()  # cancelled while waiting
        firsts, re_passes = self._waiting
        overdue = bool(re_passes) and self._now() - re_passes[0][0] >= self._max_re_pass_wait
        for queue in (re_passes, firsts) if overdue else (firsts, re_passes):
            if queue:
                queue.popleft()[1].set_result(None)
                return
        self._free += 1
