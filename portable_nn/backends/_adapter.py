"""The adapter interface: everything the library knows about one array library, in one place.

Each backend module (``numpy.py``, ``torch.py``, ...) defines ``ADAPTER``, an
instance of a subclass of :class:`Adapter`, and the table in ``_table.py``
maps the backend's name to that module; :func:`adapter` looks one up.
Adapter modules import their library only when a backend is made, so listing
them costs nothing. An adapter answers for a namespace and a device object;
it never sees a :class:`~portable_nn.Backend` (which is built from
its answers), so this module imports nothing of the package but the table.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np

from .._errors import BackendError
from ._precision import PRECISIONS, probe
from ._table import ADAPTERS

__all__ = ["Adapter", "adapter", "available_backends", "no_device"]


class Adapter:
    """Defaults for an array library; a backend module overrides what differs.

    Attributes:
        name: the backend's name, e.g. ``"torch"``.
        module: the library to import, e.g. ``"torch"``.
        install_hint: what to ``pip install``, shown when the library is missing.
        compiler: the name of the library's compiler for :func:`~portable_nn.compile_step`
            (``"jax.jit"``, ``"torch.compile"``), or None.
        jit_by_default: ``compile=None`` compiles on this library (JAX).
    """

    name = ""
    module = ""
    install_hint = ""
    compiler: str | None = None
    jit_by_default = False

    def __init__(self) -> None:
        self._probed: dict[str, dict[str, str | None]] = {}  # device label -> precision -> why not (None: works)

    def available(self) -> bool:
        """Usable here now (installed; for a GPU library, a device too). Does not import the library."""
        return importlib.util.find_spec(self.module) is not None

    def load(self) -> Any:
        """Import the library, or raise :class:`~portable_nn.BackendError` saying what to install."""
        try:
            return importlib.import_module(self.module)
        except ImportError as e:
            raise BackendError(
                f"backend {self.name!r} is not installed here ({e}). Install it with: {self.install_hint}. "
                f"Installed now: {', '.join(available_backends())}."
            ) from e

    def resolve(self, device: str | None) -> tuple[Any, Any]:
        """``(xp, device)``: the library's Array API namespace and its device object for ``device``.

        ``device``: a device name such as ``"cuda:1"``; None: the library's
        default device. :func:`~portable_nn.get_backend` makes the
        :class:`~portable_nn.Backend` from the answer.

        Raises:
            BackendError: the library is missing or has no such device (see ``no_device``).
        """
        raise NotImplementedError

    def owns(self, a: Any) -> bool:
        """True when ``a`` is an array of this library (without importing it)."""
        return False

    def to_numpy(self, a: Any) -> np.ndarray:
        """A host copy (or view, for host memory) of ``a``."""
        return np.asarray(a)

    def is_traced(self, a: Any) -> bool:
        """True while ``a``'s values are unknown (inside ``jax.jit`` or ``torch.compile``)."""
        return False

    def is_gpu(self, device: Any) -> bool:
        """True when ``device`` is a GPU."""
        return False

    def synchronize(self, device: Any, arrays: tuple[Any, ...]) -> None:
        """Block until queued work on ``device`` (or the work producing ``arrays``) has finished."""

    def device_label(self, device: Any) -> str:
        """Short device name: ``"cpu"``, ``"cuda:0"``, ``"gpu:0"``, ``"device1"``..."""
        return str(device)

    def describe_device(self, device: Any) -> str:
        """The device label with the hardware model for GPUs, e.g. ``"cuda:0 (NVIDIA H200)"``."""
        return self.device_label(device)

    @contextlib.contextmanager
    def parity_precision(self, device: Any) -> Iterator[None]:
        """Full float32 matmul precision inside the block (no TF32; JAX ``highest``)."""
        yield

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` compiled by the library's compiler (``compiler``); NotImplementedError without one."""
        raise NotImplementedError(f"backend {self.name!r} has no compiler")

    def precision_dtype(self, xp: Any, name: str) -> Any:
        """The library's dtype for precision ``name`` (``"float32"``, ``"float64"``, ``"bfloat16"``, ``"float16"``).

        Defaults to the namespace's attribute of that name (torch, JAX). NumPy
        and CuPy arrays take ml_dtypes' bfloat16. Whether a device computes in
        it is :meth:`precisions`' answer.

        Raises:
            LookupError: the library has no such dtype; the message says why and what to install, if anything.
        """
        dtype = getattr(xp, name, None)
        if dtype is None:
            raise LookupError(f"{self.name} has no {name} dtype (the Array API standard has float32 and float64 only)")
        # NumPy, JAX and CuPy expose scalar types; their arrays carry numpy.dtype objects.
        return np.dtype(dtype) if isinstance(dtype, type) else dtype

    def probe_precision(self, xp: Any, dtype: Any, device: Any) -> str | None:
        """None when ``device`` computes in ``dtype`` (see ``_precision.probe``), else why not."""
        return probe(xp, dtype, device)

    def precision_problem(self, xp: Any, device: Any, name: str) -> str | None:
        """None where ``device`` computes in precision ``name``, else why not (in words).

        Probed once per device and precision (tiny arrays: a matmul and a
        cast, see ``_precision.probe``), then kept on this adapter.
        """
        answers = self._probed.setdefault(self.device_label(device), {})
        if name not in answers:
            try:
                answers[name] = self.probe_precision(xp, self.precision_dtype(xp, name), device)
            except LookupError as e:
                answers[name] = str(e)
        return answers[name]

    def precisions(self, xp: Any, device: Any) -> dict[str, str | None]:
        """:meth:`precision_problem` for each precision: float32, float64, bfloat16, float16."""
        return {name: self.precision_problem(xp, device, name) for name in PRECISIONS}


@functools.cache
def _load_adapter(path: str) -> Adapter:
    return importlib.import_module(path).ADAPTER  # type: ignore[no-any-return]


def adapter(name: str) -> Adapter:
    """The adapter of backend ``name`` (a key of the table in ``_table.py``)."""
    return _load_adapter(ADAPTERS[name])


def available_backends() -> list[str]:
    """Names of the backends usable on this machine now, in the table's order.

    CuPy counts only when it imports and sees a CUDA device. The others count
    when installed (they are not imported, which would be slow).

    >>> import portable_nn as pnn
    >>> pnn.available_backends()[0]
    'numpy'
    """
    return [name for name in ADAPTERS if adapter(name).available()]


def no_device(name: str, device: str, devices: list[str]) -> NoReturn:
    """Raise the :class:`BackendError` for a missing device, listing the devices there are."""
    listed = ", ".join(devices) if devices else "none"
    raise BackendError(
        f"backend {name!r} has no device {device!r}; devices here: {listed}. "
        f"Pass one of those, or use get_backend('auto')."
    )
