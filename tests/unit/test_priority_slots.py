"""Reconcile slots (slots.py): bounded, first passes served before re-passes unless a re-pass has
waited too long, no slot lost to a cancelled waiter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from grok_operator.slots import PrioritySlots


async def _order_of_service(
    slots: PrioritySlots, waiters: list[tuple[str, bool]], before_release: Callable[[], None] = lambda: None
) -> list[str]:
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with slots.hold(first=False):
            await release.wait()

    async def waiter(name: str, first: bool) -> None:
        async with slots.hold(first=first):
            order.append(name)
            await asyncio.sleep(0)

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    tasks = []
    for name, first in waiters:
        tasks.append(asyncio.create_task(waiter(name, first)))
        await asyncio.sleep(0)
    before_release()
    release.set()
    await asyncio.gather(held, *tasks)
    return order


def test_first_passes_are_served_before_re_passes_queued_earlier() -> None:
    waiters = [("re-a", False), ("re-b", False), ("first-c", True), ("re-d", False), ("first-e", True)]
    order = asyncio.run(_order_of_service(PrioritySlots(1), waiters))
    assert order == ["first-c", "first-e", "re-a", "re-b", "re-d"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("waited", "expected"),
    [
        (4.9, ["first-b", "first-c", "re-a"]),  # not yet overdue: first passes go first
        (5.0, ["re-a", "first-b", "first-c"]),  # overdue: the re-pass goes ahead
    ],
)
def test_a_re_pass_that_waited_max_re_pass_wait_goes_ahead_of_first_passes(
    waited: float, expected: list[str]
) -> None:
    clock = FakeClock()

    def later() -> None:
        clock.now = waited

    slots = PrioritySlots(1, max_re_pass_wait=5.0, clock=clock)
    waiters = [("re-a", False), ("first-b", True), ("first-c", True)]
    assert asyncio.run(_order_of_service(slots, waiters, later)) == expected


def test_no_more_than_size_hold_at_once() -> None:
    async def main() -> int:
        slots, busy, peak = PrioritySlots(3), 0, 0

        async def one(i: int) -> None:
            nonlocal busy, peak
            async with slots.hold(first=i % 2 == 0):
                busy += 1
                peak = max(peak, busy)
                await asyncio.sleep(0.001)
                busy -= 1

        await asyncio.gather(*(one(i) for i in range(40)))
        return peak

    assert asyncio.run(main()) == 3


async def _cancel_one_of_two_waiters(*, handed_over: bool) -> list[str]:
    """One slot, held; two waiters queue; one is cancelled either while still waiting or after
    the holder handed it the slot (before it resumed). Which names got the slot, then whether a
    fresh holder still gets one."""
    slots, order = PrioritySlots(1), []
    release = asyncio.Event()

    async def holder() -> None:
        async with slots.hold(first=True):
            await release.wait()

    async def waiter(name: str) -> None:
        async with slots.hold(first=False):
            order.append(name)

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    doomed = asyncio.create_task(waiter("cancelled"))
    kept = asyncio.create_task(waiter("kept"))
    await asyncio.sleep(0)
    if handed_over:
        release.set()
        await asyncio.sleep(0)  # the holder leaves and hands the slot to "cancelled", not yet resumed
        assert held.done()
    doomed.cancel()
    release.set()
    await asyncio.gather(held, kept)
    await asyncio.gather(doomed, return_exceptions=True)
    async with slots.hold(first=False):  # the slot came back
        order.append("after")
    return order


def test_a_cancelled_waiter_gives_up_its_place_and_loses_no_slot() -> None:
    assert asyncio.run(_cancel_one_of_two_waiters(handed_over=False)) == ["kept", "after"]


def test_a_waiter_cancelled_after_it_was_handed_the_slot_passes_it_on() -> None:
    assert asyncio.run(_cancel_one_of_two_waiters(handed_over=True)) == ["kept", "after"]


def test_slots_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PrioritySlots(0)
