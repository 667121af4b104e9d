"""portable_nn: a small neural-network library written once against the Python Array API.

The same forward and hand-written backward code runs on NumPy, CuPy, PyTorch,
JAX and array-api-strict. The documentation (docs/, built with ``nox -s docs``) has a
user guide, this API reference and an executed gallery of examples.
"""

from __future__ import annotations

from . import layers, losses, optim, schedules
from ._errors import (
    BackendError,
    CheckpointError,
    ClusterError,
    GradientCheckError,
    NonFiniteError,
    PrecisionError,
)
from ._rng import host_rng
from ._tree import tree_leaves, tree_map, tree_paths
from ._version import __version__
from .backends import (
    Backend,
    available_backends,
    available_precisions,
    get_backend,
    namespace,
    set_backend,
    to_backend,
    to_numpy,
    use_backend,
)
from .generation import generate
from .io import load, save
from .layers import init
from .layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .layers.attention import MultiHeadAttention
from .layers.base import Layer, Seed, Variables
from .layers.batchnorm import BatchNorm
from .layers.conv import Conv2D
from .layers.dropout import Dropout
from .layers.embedding import Embedding, PositionalEmbedding
from .layers.flatten import Flatten
from .layers.layernorm import LayerNorm
from .layers.linear import Linear
from .layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .layers.residual import Residual
from .layers.sequential import Sequential
from .layers.transformer import TransformerBlock
from .testing import assert_close, gradcheck
from .training import DataParallel, FitInterrupted, TrainStep, compile_step, evaluate, fit, predict

__all__ = [
    "AvgPool2D",
    "Backend",
    "BackendError",
    "BatchNorm",
    "CheckpointError",
    "ClusterError",
    "Conv2D",
    "DataParallel",
    "Dropout",
    "Embedding",
    "FitInterrupted",
    "Flatten",
    "GELU",
    "GlobalAvgPool2D",
    "GradientCheckError",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2D",
    "MultiHeadAttention",
    "NonFiniteError",
    "PositionalEmbedding",
    "PrecisionError",
    "ReLU",
    "Residual",
    "Seed",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TransformerBlock",
    "Variables",
    "__version__",
    "TrainStep",
    "assert_close",
    "compile_step",
    "available_backends",
    "available_precisions",
    "evaluate",
    "fit",
    "generate",
    "get_backend",
    "gradcheck",
    "host_rng",
    "init",
    "layers",
    "load",
    "losses",
    "namespace",
    "optim",
    "predict",
    "save",
    "schedules",
    "set_backend",
    "to_backend",
    "to_numpy",
    "tree_leaves",
    "tree_map",
    "tree_paths",
    "use_backend",
]
