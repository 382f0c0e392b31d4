"""SIGINT/SIGTERM around `reelserve serve`: a stop request, an interrupted start, the old handlers back."""

from __future__ import annotations

import os
import signal
import time

import pytest

from reelserve.triton.signals import stop_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_the_stop_event_and_the_old_handler_comes_back(sig):
    before = signal.getsignal(sig)
    with stop_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), sig)
        assert stop.wait(5)
    assert signal.getsignal(sig) is before


def test_while_starting_a_signal_interrupts():
    starting = [True]
    with pytest.raises(KeyboardInterrupt), stop_signals(interrupt=lambda: starting[0]) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # a long start: the handler's KeyboardInterrupt ends it
    assert stop.is_set()
