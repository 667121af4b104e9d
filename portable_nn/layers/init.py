"""Weight initializers, drawn on the host in float64.

Each initializer is ``f(rng, shape) -> numpy.ndarray`` (float64) with ``shape
= (fan_in, fan_out)``. Layers cast the result to their dtype *on the host*
before moving it to the device, so one seed gives bit-identical weights on
every backend and device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["Initializer", "he_normal", "glorot_uniform", "normal", "gpt2_normal", "zeros", "get_initializer"]

Initializer = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


def he_normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Normal(0, sqrt(2 / fan_in)): the default for layers followed by ReLU."""
    return rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Uniform(-a, a) with a = sqrt(6 / (fan_in + fan_out)): for tanh/sigmoid nets."""
    a = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-a, a, size=shape)


def normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Standard normal, as ``np.random.randn`` in the teaching notebook."""
    return rng.standard_normal(shape)


def gpt2_normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Normal(0, 0.02): GPT-2's initialization of its embeddings and linear weights."""
    return rng.standard_normal(shape) * 0.02


def zeros(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """All zeros (draws nothing from ``rng``)."""
    return np.zeros(shape)


_BY_NAME: dict[str, Initializer] = {
    "he": he_normal,
    "glorot": glorot_uniform,
    "normal": normal,
    "gpt2": gpt2_normal,
    "zeros": zeros,
}


def get_initializer(init: str | Initializer, where: str) -> Initializer:
    """Resolve ``"he"``, ``"glorot"``, ``"normal"``, ``"gpt2"``, ``"zeros"`` or a callable."""
    if callable(init):
        return init
    if init not in _BY_NAME:
        raise ValueError(
            f"{where}: unknown init {init!r}; use one of {', '.join(_BY_NAME)} or a callable "
            "f(rng, (fan_in, fan_out)) -> numpy array."
        )
    return _BY_NAME[init]
