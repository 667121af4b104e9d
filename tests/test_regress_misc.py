"""Regression tests, one (or one group) per fixed defect, named after the defect.

Each runs on the backend chosen in conftest.py (``tb``) where it applies.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import portable_nn as pnn

# --------------------------------------------------------------------------- helpers


def other_backend(tb: Any) -> pnn.Backend:
    """An installed backend of another array library than tb's: NumPy, or for NumPy torch/jax/array_api_strict."""
    if tb.be.name != "numpy":
        return pnn.get_backend("numpy")
    for name in ("torch", "array_api_strict", "jax"):
        if name in pnn.available_backends():
            return pnn.get_backend(name)
    pytest.skip("no backend other than NumPy is installed")


# --------------------------------------------------------------------------- 1. set_backend process-wide


def test_set_backend_is_process_wide_and_seen_by_new_threads(tb: Any) -> None:
    target = tb.be if tb.be.name != "numpy" else other_backend(tb)
    before = pnn.get_backend()
    seen: dict[str, Any] = {}
    go = threading.Event()

    def read_later() -> None:  # a thread started before set_backend, reading after it
        go.wait(10)
        seen["running thread"] = pnn.get_backend()

    running = threading.Thread(target=read_later)
    running.start()
    try:
        pnn.set_backend(target)
        go.set()
        running.join()
        fresh = threading.Thread(target=lambda: seen.update({"new thread": pnn.get_backend()}))
        fresh.start()
        fresh.join()
        other = pnn.get_backend("numpy") if target.name != "numpy" else tb.be
        with pnn.use_backend(other):  # the per-context override wins inside its block...
            seen["use_backend block"] = pnn.get_backend()
            pnn.set_backend(target)  # ...even over a set_backend made inside it
            seen["block after set_backend"] = pnn.get_backend()
            inner = threading.Thread(target=lambda: seen.update({"thread in block": pnn.get_backend()}))
            inner.start()
            inner.join()
        seen["after block"] = pnn.get_backend()
    finally:
        go.set()
        pnn.set_backend(before)
    assert pnn.get_backend() == before
    assert seen == {
        "running thread": target,
        "new thread": target,
        "use_backend block": other,
        "block after set_backend": other,
        "thread in block": target,
        "after block": target,
    }
