"""What the client tests share: a handler on the `reelserve.client` logger that sees its retries."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest


class RetryLog(logging.Handler):
    """The SDK's "retrying" log lines, and which callers wrote them: a thread (sync) or an asyncio task.

    Metadata reads have no metrics, so their retries are proven here; a test can also wait until
    a number of concurrent calls have each retried, instead of sleeping.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.callers: set[tuple[int | None, int | None]] = set()
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying" not in message:
            return
        try:
            task = id(asyncio.current_task())
        except RuntimeError:  # no running loop: a sync call
            task = None
        with self.changed:
            self.lines.append(message)
            self.callers.add((record.thread, task))
            self.changed.notify_all()

    def wait_for_callers(self, count: int, timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.callers) >= count, timeout_s)


@pytest.fixture
def retry_log(caplog) -> Iterator[RetryLog]:
    caplog.set_level(logging.INFO, logger="reelserve.client")
    handler = RetryLog()
    logger = logging.getLogger("reelserve.client")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
