"""A toy backend: NumPy under another name. The whole of what adding a backend takes is this
module (an ``ADAPTER``) plus one line in ``portable_nn.backends.ADAPTERS`` (see test_backends.py)."""

from __future__ import annotations

from portable_nn.backends.numpy import NumpyAdapter


class ToyAdapter(NumpyAdapter):
    name = "toy"
    install_hint = "nothing to install: it is NumPy"


ADAPTER = ToyAdapter()
