"""SIGINT and SIGTERM for the `reelserve serve` loops: a stop request, or an interrupted start."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["stop_signals"]


@contextmanager
def stop_signals(interrupt: Callable[[], bool] = lambda: False) -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set the yielded event; while `interrupt()` is true they also raise
    KeyboardInterrupt in the main thread, so a start that can take minutes (model loads) is
    abandoned rather than finished first (a Kubernetes pod's grace period is shorter). The
    previous handlers come back on exit. Main thread only (Python's signal handlers)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if interrupt():
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
