"""Backends: one adapter module per array library, and one table of them.

- ``numpy.py``, ``cupy.py``, ``torch.py``, ``jax.py``, ``array_api_strict.py``:
  each holds everything specific to its library (namespace, device parsing and
  listing, ``synchronize``, ``to_numpy``, "is this traced", the compiler, the
  parity settings, the install hint) as an ``ADAPTER``.
- ``_table.py``: ``ADAPTERS``, backend name -> adapter module. Adding a backend
  is one new module plus one line there (see CONTRIBUTING.md).
- :class:`~portable_nn.Backend` (a library, its namespace and a device),
  :func:`~portable_nn.get_backend`, :func:`~portable_nn.set_backend`,
  :func:`~portable_nn.use_backend`, :func:`~portable_nn.available_backends`.
- :func:`~portable_nn.available_precisions`: the floating precisions a backend's device
  computes in, probed once per device (``_precision.py``, kept by each adapter).
"""

from __future__ import annotations

from ._adapter import Adapter, adapter, available_backends
from ._backend import NUMPY_NS, Backend, adapter_of, namespace, to_numpy, widest_float_dtype
from ._move import to_backend
from ._select import available_precisions, backend_name, get_backend, set_backend, use_backend
from ._table import ADAPTERS

__all__ = [
    "ADAPTERS",
    "NUMPY_NS",
    "Adapter",
    "Backend",
    "adapter",
    "adapter_of",
    "available_backends",
    "available_precisions",
    "backend_name",
    "get_backend",
    "namespace",
    "set_backend",
    "to_backend",
    "to_numpy",
    "use_backend",
    "widest_float_dtype",
]
