"""Layers: each a pair of pure functions with its backprop beside its forward.

``base`` is the public API for layer authors (``Layer``, ``check_array``,
``check_params``, the ``Array``/``Params``/``Backprop`` types); ``init`` holds
the weight initializers.
"""

from __future__ import annotations

from . import base, init
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid
from .attention import MultiHeadAttention
from .base import Layer, Variables, check_array, check_params
from .batchnorm import BatchNorm
from .conv import Conv2D
from .dropout import Dropout
from .embedding import Embedding, PositionalEmbedding
from .flatten import Flatten
from .layernorm import LayerNorm
from .linear import Linear
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .residual import Residual
from .sequential import Sequential
from .transformer import TransformerBlock

__all__ = [
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "GELU",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool2D",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2D",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TransformerBlock",
    "Variables",
    "base",
    "check_array",
    "check_params",
    "init",
    "sigmoid",
]
