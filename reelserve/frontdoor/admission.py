"""Admission at the front door: a bound on inference calls in Triton, a short wait, and shedding past it.

Measured (docs/benchmarks.md, "Overload"): a server-side timeout alone does not save goodput. The
queue that grows under overload is in the middle of the ensemble (the encoders), where Triton
2.51 cannot bound it (a rejection after the first step breaks the ensemble call), so every call
waits there until its deadline is spent and then fails. The front door therefore keeps at most
`capacity()` calls in Triton (a few per serving replica) and at most `max_waiting()` more in a
FIFO line. A caller with a deadline waits only while what would be left of it still covers a
typical call (`service_s()`, measured); past that, or with the line full, it is answered at once
with UNAVAILABLE, which callers back off on. A caller without a deadline said it would wait: only
the full line sheds it. A waiting call whose caller leaves is dropped before it reaches Triton.

Two priorities (`contract.PRIORITIES`): a free slot goes to the oldest online waiter before any
backfill one; backfill never holds the last `reserved_online` slots, so an online call arriving
while backfill saturates the replicas starts at once instead of after a backfill call ends; and an
online caller that finds the line full takes the place of the newest backfill waiter (shed).
Measured (docs/benchmarks.md, "Priority"): Triton's own `priority_levels` do not do this on CPU,
where one dynamic batch takes every queued request whatever its priority.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from reelserve.spec.contract import PRIORITIES

__all__ = ["ONLINE", "Admission", "ServiceTime", "Shed"]

ONLINE = PRIORITIES.index("online")


class Shed(Exception):
    """The call was not admitted; the message says why (for the caller), `status` which gRPC status."""

    def __init__(self, message: str, status: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.status = status  # UNAVAILABLE: retry with backoff; DEADLINE_EXCEEDED: the caller's time ran out


class ServiceTime:
    """A moving average of how long admitted calls take in Triton (seconds): what a waiter must keep."""

    def __init__(self, weight: float = 0.1) -> None:
        self.weight = weight
        self.seconds = 0.0  # nothing measured yet: no call is held back for it

    def observe(self, seconds: float) -> None:
        self.seconds = seconds if self.seconds == 0.0 else (1 - self.weight) * self.seconds + self.weight * seconds

    def __call__(self) -> float:
        return self.seconds


class Admission:
    """Slots for calls in flight; `capacity()` (e.g. per serving replica) may change any time."""

    def __init__(
        self,
        capacity: Callable[[], int],
        *,
        max_waiting: Callable[[], int],
        service_s: Callable[[], float],
        reserved_online: int = 0,
    ) -> None:
        self.capacity = capacity
        self.reserved_online = reserved_online
        self.max_waiting = max_waiting
        self.service_s = service_s
        self.in_flight = 0
        self._lines: tuple[deque[asyncio.Future], ...] = tuple(deque() for _ in PRIORITIES)  # online first

    def _has_room(self, priority: int = ONLINE) -> bool:
        slots = max(1, self.capacity())
        if priority != ONLINE:  # backfill leaves the reserved slots to online calls (but always gets one)
            slots = max(1, slots - self.reserved_online)
        return self.in_flight < slots

    async def enter(self, deadline: float | None = None, priority: int = ONLINE) -> None:
        """Take a slot, or raise Shed. `deadline`: time.monotonic() by which the caller gives up;
        `priority`: an index into `contract.PRIORITIES` (0, online, first)."""
        if not any(self._lines[: priority + 1]) and self._has_room(priority):
            self.in_flight += 1
            return
        limit = None if deadline is None else deadline - time.monotonic() - self.service_s()
        if limit is not None and limit <= 0:
            raise Shed(f"front door busy: the deadline leaves no time to wait ({self.in_flight} calls in progress)")
        if self.waiting >= self.max_waiting() and not self._make_room(priority):
            raise Shed(f"front door full: {self.in_flight} calls in progress and {self.waiting} waiting")
        waiter = asyncio.get_running_loop().create_future()
        line = self._lines[priority]
        line.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), limit)
        except asyncio.TimeoutError:
            if not _granted(waiter):
                raise Shed(
                    f"front door busy: waiting longer would miss the deadline ({self.in_flight} calls in progress)"
                ) from None
        except asyncio.CancelledError:  # the caller left while waiting: nothing reached Triton
            if _granted(waiter):
                self.leave()
            raise
        finally:
            if waiter in line:
                line.remove(waiter)
            if not waiter.done():
                waiter.cancel()

    def _make_room(self, priority: int) -> bool:
        """Shed the newest waiter of a lower priority than `priority`, if there is one."""
        for line in reversed(self._lines[priority + 1 :]):
            while line:
                bumped = line.pop()
                if not bumped.done():
                    bumped.set_exception(Shed("front door full: a call of a higher priority took this one's place"))
                    return True
        return False

    def leave(self) -> None:
        """A call ended: hand its slot to the oldest waiter, or free it."""
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Hand free slots to waiters, online first (also after capacity grew: a replica came back)."""
        for priority, line in enumerate(self._lines):
            while line and self._has_room(priority):
                waiter = line.popleft()
                if not waiter.done():
                    self.in_flight += 1
                    waiter.set_result(None)

    @property
    def waiting(self) -> int:
        return sum(len(line) for line in self._lines)


def _granted(waiter: asyncio.Future) -> bool:
    """`leave`/`wake` handed this waiter a slot (it now counts in `in_flight`)."""
    return waiter.done() and not waiter.cancelled() and waiter.exception() is None
