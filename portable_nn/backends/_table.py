"""The one table of backends: name -> the module that holds its adapter (``ADAPTER``).

Adding a backend is one new module with an ``ADAPTER`` (see ``_adapter.Adapter``)
and one line here. The order is the order ``available_backends()`` lists them in.
"""

from __future__ import annotations

ADAPTERS: dict[str, str] = {
    "numpy": "portable_nn.backends.numpy",
    "cupy": "portable_nn.backends.cupy",
    "torch": "portable_nn.backends.torch",
    "jax": "portable_nn.backends.jax",
    "array_api_strict": "portable_nn.backends.array_api_strict",
}
"""Backend name -> the module holding its adapter, in the order ``available_backends()`` lists them."""
