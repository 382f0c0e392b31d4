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
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Admission", "ServiceTime", "Shed"]


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
        self, capacity: Callable[[], int], *, max_waiting: Callable[[], int], service_s: Callable[[], float]
    ) -> None:
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.service_s = service_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future] = deque()

    def _has_room(self) -> bool:
        return self.in_flight < max(1, self.capacity())

    async def enter(self, deadline: float | None = None) -> None:
        """Take a slot, or raise Shed. `deadline`: time.monotonic() by which the caller gives up."""
        if not self._waiters and self._has_room():
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_waiting():
            raise Shed(f"front door full: {self.in_flight} calls in progress and {len(self._waiters)} waiting")
        limit = None if deadline is None else deadline - time.monotonic() - self.service_s()
        if limit is not None and limit <= 0:
            raise Shed(f"front door busy: the deadline leaves no time to wait ({self.in_flight} calls in progress)")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
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
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if not waiter.done():
                waiter.cancel()

    def leave(self) -> None:
        """A call ended: hand its slot to the oldest waiter, or free it."""
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Hand free slots to waiters (also after capacity grew, e.g. a replica came back)."""
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)


def _granted(waiter: asyncio.Future) -> bool:
    """`leave`/`wake` handed this waiter a slot (it now counts in `in_flight`)."""
    return waiter.done() and not waiter.cancelled()
