"""Layers: each a pair of pure functions with its backprop beside its forward.

``base`` is the public API for layer authors (``Layer``, ``check_array``,
``check_params``, the ``Array``/``Params``/``Backprop`` types); ``init`` holds
the weight initializers.
"""

from __future__ import annotations

from . import base, init
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid
from .base import Layer, check_array, check_params
from .dropout import Dropout
from .layernorm import LayerNorm
from .linear import Linear
from .sequential import Sequential

__all__ = [
    "GELU",
    "Dropout",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "base",
    "check_array",
    "check_params",
    "init",
    "sigmoid",
]
