"""portable_nn: a small neural-network library written once against the Python Array API.

The same forward and hand-written backward code runs on NumPy, CuPy, PyTorch,
JAX and array-api-strict. See README.md for a tour.
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
from .io import load, save
from .layers import init
from .layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .layers.base import Layer, Seed, Variables
from .layers.batchnorm import BatchNorm
from .layers.conv import Conv2D
from .layers.dropout import Dropout
from .layers.flatten import Flatten
from .layers.layernorm import LayerNorm
from .layers.linear import Linear
from .layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from .layers.sequential import Sequential
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
    "NonFiniteError",
    "PrecisionError",
    "ReLU",
    "Seed",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Variables",
    "__version__",
    "TrainStep",
    "assert_close",
    "compile_step",
    "available_backends",
    "available_precisions",
    "evaluate",
    "fit",
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
