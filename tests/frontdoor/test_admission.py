"""Front-door admission: slots per serving replica, a short FIFO wait, shedding past it, nothing leaked."""

from __future__ import annotations

import asyncio
import time

import pytest

from reelserve.frontdoor.admission import Admission, ServiceTime, Shed


def _admission(slots: int = 2, waiting: int = 2, service_s: float = 0.0) -> Admission:
    return Admission(lambda: slots, max_waiting=lambda: waiting, service_s=lambda: service_s)


def test_calls_within_the_slots_enter_at_once():
    async def go():
        a = _admission()
        await a.enter()
        await a.enter()
        return a.in_flight

    assert asyncio.run(go()) == 2


def test_a_waiter_gets_the_slot_a_call_leaves():
    async def go():
        a = _admission(slots=1)
        await a.enter()
        waiter = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.01)
        assert a.waiting == 1 and not waiter.done()
        a.leave()
        await waiter
        return a.in_flight, a.waiting

    assert asyncio.run(go()) == (1, 0)


def test_too_many_waiting_is_shed_at_once():
    async def go():
        a = _admission(slots=1, waiting=1)
        await a.enter()
        first = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0)
        with pytest.raises(Shed, match="front door full"):
            await a.enter()
        a.leave()
        await first

    asyncio.run(go())


def test_a_caller_waits_only_while_its_deadline_covers_a_typical_call():
    async def go():
        a = _admission(slots=1, service_s=0.5)
        await a.enter()
        began = time.monotonic()
        with pytest.raises(Shed, match="waiting longer would miss the deadline") as e:
            await a.enter(deadline=time.monotonic() + 0.6)  # may wait 0.1 s, then 0.5 s are left
        waited = time.monotonic() - began
        assert e.value.status == "UNAVAILABLE" and 0.05 < waited < 0.4, waited
        with pytest.raises(Shed, match="leaves no time to wait"):
            await a.enter(deadline=time.monotonic() + 0.4)  # shorter than a typical call: at once
        return a.in_flight, a.waiting

    assert asyncio.run(go()) == (1, 0)


def test_a_caller_without_a_deadline_waits_as_long_as_it_takes():
    """It said it would wait: only the bound on waiters sheds it."""

    async def go():
        a = _admission(slots=1, service_s=0.01)
        await a.enter()
        waiter = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.1)
        assert not waiter.done()
        a.leave()
        await waiter
        return a.in_flight

    assert asyncio.run(go()) == 1


def test_an_idle_front_door_admits_even_a_short_deadline():
    async def go():
        a = _admission(slots=1, service_s=5.0)
        await a.enter(deadline=time.monotonic() + 0.1)
        return a.in_flight

    assert asyncio.run(go()) == 1


def test_service_time_is_a_moving_average():
    t = ServiceTime(weight=0.5)
    assert t() == 0.0
    t.observe(1.0)
    assert t() == 1.0
    t.observe(2.0)
    assert t() == 1.5


def test_a_waiter_whose_caller_leaves_takes_no_slot():
    async def go():
        a = _admission(slots=1)
        await a.enter()
        waiter = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        a.leave()
        return a.in_flight, a.waiting

    assert asyncio.run(go()) == (0, 0)


def test_slots_follow_the_serving_replicas():
    async def go():
        serving = [1]
        a = Admission(lambda: 2 * serving[0], max_waiting=lambda: 4, service_s=lambda: 0.0)
        for _ in range(2):
            await a.enter()
        waiter = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        serving[0] = 2  # a replica came back: wake() hands out the new slots
        a.wake()
        await waiter
        return a.in_flight

    assert asyncio.run(go()) == 3
