"""Front-door admission: slots per serving replica, a short wait (online first), shedding past it, nothing leaked."""

from __future__ import annotations

import asyncio
import time

import pytest

from reelserve.frontdoor.admission import Admission, ServiceTime, Shed
from reelserve.spec.contract import PRIORITIES


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


BACKFILL = PRIORITIES.index("backfill")


def test_a_free_slot_goes_to_an_online_waiter_before_an_older_backfill_one():
    async def go():
        a = _admission(slots=1, waiting=4)
        await a.enter()
        order: list[str] = []

        async def wait(name: str, priority: int) -> None:
            await a.enter(priority=priority)
            order.append(name)

        backfill = asyncio.ensure_future(wait("backfill", BACKFILL))
        await asyncio.sleep(0.01)
        online = asyncio.ensure_future(wait("online", 0))
        await asyncio.sleep(0.01)
        a.leave()  # one slot: the online waiter's, though it came second
        await online
        assert order == ["online"] and not backfill.done()
        a.leave()
        await backfill
        return order, a.in_flight, a.waiting

    assert asyncio.run(go()) == (["online", "backfill"], 1, 0)


def test_an_online_caller_at_a_full_line_takes_the_newest_backfill_waiters_place():
    async def go():
        a = _admission(slots=1, waiting=2)
        await a.enter()
        older = asyncio.ensure_future(a.enter(priority=BACKFILL))
        newer = asyncio.ensure_future(a.enter(priority=BACKFILL))
        await asyncio.sleep(0.01)
        online = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.01)
        with pytest.raises(Shed, match="higher priority took this one's place"):
            await newer
        assert a.waiting == 2 and not older.done()
        a.leave()
        await online
        a.leave()
        await older
        return a.in_flight, a.waiting

    assert asyncio.run(go()) == (1, 0)


def test_a_backfill_caller_at_a_full_line_is_shed_itself():
    async def go():
        a = _admission(slots=1, waiting=1)
        await a.enter()
        online = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.01)
        with pytest.raises(Shed, match="front door full"):
            await a.enter(priority=BACKFILL)
        a.leave()
        await online
        return a.in_flight

    assert asyncio.run(go()) == 1


def test_a_shed_backfill_waiter_leaves_no_slot_taken():
    async def go():
        a = _admission(slots=1, waiting=1)
        await a.enter()
        bumped = asyncio.ensure_future(a.enter(priority=BACKFILL))
        await asyncio.sleep(0.01)
        online = asyncio.ensure_future(a.enter())
        await asyncio.sleep(0.01)
        with pytest.raises(Shed):
            await bumped
        a.leave()
        await online
        a.leave()
        return a.in_flight, a.waiting

    assert asyncio.run(go()) == (0, 0)


def test_backfill_leaves_the_reserved_slot_to_online_calls():
    async def go():
        a = Admission(lambda: 3, max_waiting=lambda: 4, service_s=lambda: 0.0, reserved_online=1)
        await a.enter(priority=BACKFILL)
        await a.enter(priority=BACKFILL)
        third = asyncio.ensure_future(a.enter(priority=BACKFILL))  # would take the reserved slot
        await asyncio.sleep(0.01)
        assert not third.done() and a.in_flight == 2
        await asyncio.wait_for(a.enter(), 1)  # online: starts at once
        assert a.in_flight == 3
        a.leave()  # the online call ends: its slot stays reserved
        await asyncio.sleep(0.01)
        assert not third.done()
        a.leave()  # a backfill call ends: the waiting backfill call takes its place
        await asyncio.wait_for(third, 1)
        return a.in_flight

    assert asyncio.run(go()) == 2


def test_backfill_always_gets_one_slot():
    async def go():
        a = Admission(lambda: 1, max_waiting=lambda: 1, service_s=lambda: 0.0, reserved_online=1)
        await asyncio.wait_for(a.enter(priority=BACKFILL), 1)
        return a.in_flight

    assert asyncio.run(go()) == 1
