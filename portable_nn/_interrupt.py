"""Ctrl-C during training, honoured between steps so params are never left half updated."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["interrupts_between_steps"]


@contextmanager
def interrupts_between_steps() -> Iterator[list[int]]:
    """Record Ctrl-C (SIGINT) inside the block instead of raising at once.

    Yields a list that gets an entry when Ctrl-C was pressed; the training loop
    checks it after each complete step and stops there. A second Ctrl-C raises
    ``KeyboardInterrupt`` at once (for a step that hangs). Python's handler is
    restored on exit. Acts only in the main thread with Python's default
    handler installed (the only place Ctrl-C raises); elsewhere the list stays
    empty and nothing changes.
    """
    received: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield received
        return

    def record(signum: int, frame: Any) -> None:
        if received:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        received.append(signum)

    signal.signal(signal.SIGINT, record)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
