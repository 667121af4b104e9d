"""Ctrl-C during training, honoured between steps so params are never left half updated."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Interrupts", "interrupts_between_steps"]


class Interrupts:
    """The Ctrl-C state of one :func:`fit` call.

    Attributes:
        pending: Ctrl-C was pressed; the loop stops at the next point between steps.
        immediate: inside :meth:`at_once`: Ctrl-C raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self) -> None:
        self.pending = False
        self.immediate = False

    def __bool__(self) -> bool:
        return self.pending

    def raise_if_pending(self) -> None:
        """Raise ``KeyboardInterrupt`` when Ctrl-C was pressed since the block began."""
        if self.pending:
            raise KeyboardInterrupt

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Work that can be abandoned half way (validation: it changes no params): Ctrl-C raises at once.

        A Ctrl-C that is already pending raises on entry.
        """
        self.raise_if_pending()
        self.immediate = True
        try:
            yield
        finally:
            self.immediate = False


@contextmanager
def interrupts_between_steps() -> Iterator[Interrupts]:
    """Record Ctrl-C (SIGINT) inside the block instead of raising at once.

    Yields an :class:`Interrupts` whose ``pending`` becomes True when Ctrl-C
    was pressed; the training loop checks it between steps and stops there. A
    second Ctrl-C raises ``KeyboardInterrupt`` at once (for a step that hangs;
    a compiled call runs to its end first, since Python handles signals between
    bytecodes). Python's handler is restored on exit. Acts only in the main
    thread with Python's default handler installed (the only place Ctrl-C
    raises); elsewhere nothing is recorded and nothing changes.
    """
    state = Interrupts()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield state
        return

    def record(signum: int, frame: Any) -> None:
        if state.pending or state.immediate:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        state.pending = True

    signal.signal(signal.SIGINT, record)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
