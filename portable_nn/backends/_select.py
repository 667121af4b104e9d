"""Choosing a backend: get_backend, set_backend, use_backend (the default backend), backend_name;
available_precisions (what a chosen backend computes in).

The default backend is the only global state in the library, in two layers:

- the process-wide default, set by :func:`set_backend` and seen by every
  thread (threads started later included). At import it is read from the
  environment variable ``PORTABLE_NN_BACKEND`` (e.g. ``torch`` or
  ``torch:cuda``); otherwise it is ``numpy``;
- a per-context override, set by :func:`use_backend` for the duration of a
  ``with`` block. It lives in a ``ContextVar``, so it applies only to the
  thread (or async task) that entered the block, and wins over the
  process-wide default there, even over a :func:`set_backend` call made
  inside the block.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from .._errors import BackendError
from ._adapter import adapter
from ._backend import Backend
from ._table import ADAPTERS

__all__ = ["available_precisions", "backend_name", "get_backend", "set_backend", "use_backend"]



# The process-wide default: a plain module global (one assignment is atomic), so all threads see it.
_PROCESS_DEFAULT: Backend | str = os.environ.get("PORTABLE_NN_BACKEND", "numpy") or "numpy"
# The use_backend override of the current context; None: no block is active here.
_OVERRIDE: ContextVar[Backend | None] = ContextVar("portable_nn_backend_override", default=None)


def get_backend(name: str | Backend | None = None, device: Any = None) -> Backend:
    """Return a :class:`Backend`.

    Args:
        name: ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``,
            ``"array_api_strict"``, ``"auto"`` (CuPy when a CUDA device is
            usable, else NumPy), a ``"name:device"`` string such as
            ``"torch:cuda"`` or ``"array_api_strict:device1"``, a Backend
            (returned as is), or ``None`` for the current default: the
            innermost :func:`use_backend` block of this thread or task, else
            the process-wide default (:func:`set_backend`).
        device: a device name or object of that library (``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, ``"gpu"``, ``"device1"``...). ``None``
            means the library's default device.

    Raises:
        BackendError: unknown name, library not installed (the message says
            what to install) or device missing (the message lists the devices).
        TypeError: ``name`` is neither a str, a Backend nor None.

    >>> import portable_nn as pnn
    >>> pnn.get_backend("array_api_strict:device1")
    Backend('array_api_strict', device=array_api_strict.Device('device1'))
    >>> try:
    ...     pnn.get_backend("nmupy")
    ... except pnn.BackendError as e:
    ...     print(e)
    unknown backend 'nmupy'; choose one of numpy, cupy, torch, jax, array_api_strict or 'auto'.
    """
    if name is None:
        override = _OVERRIDE.get()
        name = _PROCESS_DEFAULT if override is None else override
    if isinstance(name, Backend):
        if device is None:
            return name
        name = name.name
    if not isinstance(name, str):
        raise TypeError(f"get_backend: name must be a str or Backend, got {type(name).__name__}.")
    if ":" in name and device is None:
        name, device = name.split(":", 1)
    name = backend_name(name)
    if name == "auto":
        name = "cupy" if adapter("cupy").available() else "numpy"
    return _make(name, None if device is None else str(device))


def available_precisions(backend: str | Backend | None = None) -> tuple[str, ...]:
    """The floating precisions ``backend``'s device computes in, of float32, float64, bfloat16, float16.

    Args:
        backend: a name, a ``"name:device"`` spec or a :class:`Backend`;
            None: the default backend (see :func:`get_backend`).

    Each is probed once per device, not assumed: a tiny array of it is made
    on the device, multiplied (the product must keep the dtype and be right)
    and cast back to float32. E.g. ``("float32", "float64", "bfloat16",
    "float16")`` on torch and JAX; ``("float32", "float64", "float16")`` on
    NumPy; ``("float32", "float64")`` on array_api_strict. ``be.dtype(name)``
    resolves each of them, and raises :class:`~portable_nn.PrecisionError`,
    saying why, for the others.

    Raises:
        BackendError: as :func:`get_backend` does for ``backend``.

    >>> import portable_nn as pnn
    >>> pnn.available_precisions("array_api_strict:no_float64")
    ('float32',)
    """
    be = get_backend(backend)
    return tuple(name for name, why in be.adapter.precisions(be.xp, be.device).items() if why is None)


def backend_name(spec: str) -> str:
    """The library part of a backend spec (``"torch"`` for ``"torch:cuda"``), checked to be a known name.

    Known: the names in the backend table and ``"auto"``, installed or not;
    nothing is imported. For checking specs (e.g. command-line arguments)
    before any work, so a typo fails at once instead of reading as "not installed".

    Raises:
        BackendError: an unknown name; the message lists the known ones.
    """
    name = spec.split(":", 1)[0]
    if name != "auto" and name not in ADAPTERS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(ADAPTERS)} or 'auto'.")
    return name


def set_backend(name: str | Backend, device: Any = None) -> Backend:
    """Set the process-wide default backend (used by ``init`` and data conversion); return it.

    Every thread sees it, including threads already running and ones started
    later. Inside a :func:`use_backend` block the block's backend still wins
    for that thread or task until the block ends. Its initial value is
    ``PORTABLE_NN_BACKEND`` from the environment, else ``"numpy"``.

    Args:
        name: as for :func:`get_backend` (``"torch:cuda"``, a Backend...).
        device: as for :func:`get_backend`.

    Raises:
        BackendError: as :func:`get_backend` does; the default is then unchanged.
    """
    global _PROCESS_DEFAULT
    be = get_backend(name, device)
    _PROCESS_DEFAULT = be
    return be


@contextlib.contextmanager
def use_backend(name: str | Backend, device: Any = None) -> Iterator[Backend]:
    """Context manager: make a backend the default inside a ``with`` block, for this context only.

    The override lives in a ``ContextVar``: it applies to the thread (or async
    task) that entered the block, wins over :func:`set_backend`'s process-wide
    default there, and is undone on exit. Other threads, including threads
    started inside the block, keep the process-wide default.

    Raises:
        BackendError: as :func:`get_backend` does, before the block runs.

    >>> import portable_nn as pnn
    >>> with pnn.use_backend("array_api_strict") as be:
    ...     params = pnn.Linear(3, 2).init(seed=0)      # arrays of be
    >>> type(params["W"]).__module__.split(".")[0]
    'array_api_strict'
    """
    be = get_backend(name, device)
    token = _OVERRIDE.set(be)
    try:
        yield be
    finally:
        _OVERRIDE.reset(token)


@functools.cache
def _make(name: str, device: str | None) -> Backend:
    xp, dev = adapter(name).resolve(device)
    return Backend(name, xp, dev)
