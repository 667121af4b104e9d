"""Host-side random numbers, so one seed gives the same values on every backend.

The Array API standard has no RNG. Weights, dropout masks and shuffles are
drawn on the host with ``numpy.random.Generator(PCG64(seed))`` and then moved
to the backend's device.
"""

from __future__ import annotations

import numpy as np

__all__ = ["host_rng", "Seed"]

Seed = int | np.random.Generator | None
"""A seed: an int (a ``PCG64`` generator seeded with it), a ``numpy.random.Generator`` used as it is, or
None (a freshly seeded, non-reproducible generator)."""


def host_rng(seed: Seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int seed (PCG64), or the Generator itself.

    ``None`` gives a freshly seeded, non-reproducible generator. The same int
    gives the same numbers on every machine: the library draws weights, dropout
    masks and shuffles from it on the host.

    Raises:
        TypeError: ``seed`` is not an int, a Generator or None (a bool or float, say).

    >>> import portable_nn as pnn
    >>> pnn.host_rng(0).integers(0, 100, 3)
    array([85, 63, 51])
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}.")
    return np.random.Generator(np.random.PCG64(seed))
