"""Layers: each a pair of pure functions with its backprop beside its forward.

``base`` is the public API for layer authors (``Layer``, ``check_array``,
``check_params``, the ``Array``/``Params``/``Backprop`` types); ``init`` holds
the weight initializers.
"""

from __future__ import annotations

from . import base, init
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid
from .base import Layer, Variables, check_array, check_params
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dropout import Dropout
from .flatten import Flatten
from .layernorm import LayerNorm
from .linear import Linear
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .sequential import Sequential

__all__ = [
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "GELU",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2D",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Variables",
    "base",
    "check_array",
    "check_params",
    "init",
    "sigmoid",
]
