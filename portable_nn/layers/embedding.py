"""Embeddings: token ids -> learned vectors (:class:`Embedding`), plus learned positions (:class:`PositionalEmbedding`).

The embedding's backward adds each position's gradient row into the row of
its token id, summing repeats. The Array API standard has no scatter-add, and
an indexed update (``array_api_extra.at(dW)[ids].add(dY)``) keeps only one
of the repeated ids on NumPy-like namespaces, so two portable methods are used
(see :class:`Embedding`).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .._check import is_traced
from .._rng import Seed
from ..backends import Backend
from .base import Array, Backprop, Layer, Params, as_indices, check_array, check_int, check_params
from .init import Initializer, get_initializer

__all__ = ["Embedding", "PositionalEmbedding", "ONEHOT_MAX"]

ONEHOT_MAX = 512
"""``backward="auto"`` uses the one-hot product up to this many embeddings, the segment sums above
(the measured crossover on NumPy and torch CPU, 2048 ids of 64 features, is a few hundred)."""


class Embedding(Layer):
    """A lookup table: integer ids -> rows of ``W``, as ``torch.nn.Embedding``.

    Args:
        num_embeddings: the vocabulary size V (>= 1): ids are in ``[0, V)``.
        dim: the size D of each vector (>= 1).
        init: ``"normal"`` (default: N(0, 1), as ``torch.nn.Embedding``), any
            name of :mod:`portable_nn.layers.init`, or ``f(rng, (V, D)) -> numpy array``.
        backward: how the gradient of ``W`` sums the rows of repeated ids:
            ``"auto"`` (default: ``"onehot"`` for V <= 512, the module's
            ``ONEHOT_MAX``, else ``"segments"``), ``"onehot"`` or ``"segments"``.

    Params: ``{"W": (num_embeddings, dim)}`` of the model's dtype.
    Shapes: X integer ids ``(batch, seq)`` -> Y ``(batch, seq, dim)``, or
    ``(batch,)`` -> ``(batch, dim)``; Y has W's dtype. X has no gradient
    (its backprop returns ``dX = None``); :attr:`takes_indices` is True, so
    ``fit``/``predict`` keep X integer.

    The backward, for N = X.size ids and dY ``(N, D)`` flattened:

    * ``"onehot"``: ``dW = onehot(ids).T @ dY`` with a ``(V, N)`` one-hot
      matrix of W's dtype: V*N extra values, 2*V*N*D flops in one matrix
      product, the fastest for a character vocabulary (V ~ 100).
    * ``"segments"``: the ids are sorted (``argsort``), dY's rows are taken in
      that order, and each run of equal ids is summed by a log-step
      (Hillis-Steele) segmented scan; ``searchsorted`` finds each id's run end.
      O(N*D) memory, O(N*D*log2 N) additions, no V*N term: for large
      vocabularies. Tree-ordered sums, so no cancellation (unlike prefix-sum
      differences) and static shapes (``jax.jit`` compiles it).

    Both give the same sums up to rounding and are tested against each other.

    Raises:
        TypeError: float X (ids must be integers), or another namespace than W;
            sizes that are not ints.
        ValueError: sizes < 1, an unknown ``backward``; X of another rank, or
            an id outside ``[0, num_embeddings)`` (checked with one host read,
            skipped while ``jax.jit`` traces).

    >>> import numpy as np, portable_nn as pnn
    >>> emb = pnn.Embedding(10, 4)
    >>> params = emb.init(seed=0, backend="numpy")                 # {"W": (10, 4)} float32
    >>> Y = emb(params, np.array([[1, 2, 2], [0, 9, 3]]))          # ids (2, 3)
    >>> Y.shape, Y.dtype
    ((2, 3, 4), dtype('float32'))
    """

    def __init__(
        self, num_embeddings: int, dim: int, *, init: str | Initializer = "normal", backward: str = "auto"
    ) -> None:
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, 1)
        self.dim = check_int("Embedding", "dim", dim, 1)
        if backward not in ("auto", "onehot", "segments"):
            raise ValueError(
                f"Embedding: backward must be 'auto', 'onehot' or 'segments', got {backward!r}."
            )
        self.backward = backward
        self.initializer = get_initializer(init, repr(self))

    def __repr__(self) -> str:
        extra = "" if self.backward == "auto" else f", backward={self.backward!r}"
        return f"Embedding({self.num_embeddings}, {self.dim}{extra})"

    @property
    def takes_indices(self) -> bool:
        """An embedding takes integer ids."""
        return True

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        W = self.initializer(rng, (self.num_embeddings, self.dim))
        return {"W": be.asarray(np.asarray(W, dtype=dtype))}

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        V, D = self.num_embeddings, self.dim
        (W,) = check_params(self, params, {"W": (V, D)})
        xp = check_array(self, X, like=W, kind="index")
        X = as_indices(xp, X)  # uint8 ids: V and the arange below may not fit their dtype
        if X.ndim not in (1, 2):
            raise ValueError(
                f"{self!r}: X must be integer ids (batch, seq) or (batch,), got shape {tuple(X.shape)}."
            )
        if not is_traced(X) and bool(xp.any((X < 0) | (X >= V))):
            lo, hi = int(xp.min(X)), int(xp.max(X))
            raise ValueError(
                f"{self!r}: ids must be in [0, {V}) for {V} embeddings, got values in [{lo}, {hi}]. "
                "Check the vocabulary size (num_embeddings) against the data's encoding."
            )
        ids = xp.reshape(X, (-1,))
        Y = xp.reshape(xp.take(W, ids, axis=0), (*X.shape, D))
        segments = self.backward == "segments" or (self.backward == "auto" and V > ONEHOT_MAX)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            dY2 = xp.reshape(dY, (-1, D))
            dW = _segment_sums(xp, ids, dY2, V) if segments else _onehot_sums(xp, ids, dY2, V)
            return None, {"W": dW}

        return Y, backprop


def _onehot_sums(xp: Any, ids: Array, dY: Array, V: int) -> Array:
    """``dW[v] = sum of dY[i] where ids[i] == v`` as one product with a (V, N) one-hot matrix."""
    rows = xp.arange(V, dtype=ids.dtype, device=array_api_compat.device(ids))
    return xp.astype(rows[:, None] == ids[None, :], dY.dtype) @ dY


def _segment_sums(xp: Any, ids: Array, dY: Array, V: int) -> Array:
    """``dW[v] = sum of dY[i] where ids[i] == v`` by sorting the ids and a segmented scan over runs."""
    N = ids.shape[0]
    order = xp.argsort(ids, stable=True)
    s = xp.take(ids, order)
    G = xp.take(dY, order, axis=0)  # rows grouped by id, each run of equal ids contiguous
    pos = xp.arange(N, dtype=ids.dtype, device=array_api_compat.device(ids))
    k = 1
    while k < N:  # G[i] becomes the sum of its run's rows from max(run start, i - 2k + 1) up to i
        src = xp.clip(pos - k, 0, N - 1)  # row i - k; a gather, not a slice: the same ops for every k
        same = xp.astype((xp.take(s, src) == s) & (pos >= k), G.dtype)[:, None]
        G = G + xp.take(G, src, axis=0) * same
        k *= 2
    rows = xp.arange(V, dtype=ids.dtype, device=array_api_compat.device(ids))
    last = xp.clip(xp.searchsorted(s, rows, side="right") - 1, 0, N - 1)  # each id's run end (or a neighbour's)
    present = xp.astype(xp.take(s, last) == rows, G.dtype)[:, None]
    return xp.take(G, last, axis=0) * present


class PositionalEmbedding(Layer):
    """Learned absolute positions, as GPT-2's ``wpe``: ``Y = X + W[:seq]``.

    Args:
        max_len: the longest sequence (>= 1); :func:`portable_nn.generate`
            crops its context to the smallest ``max_len`` in a model.
        dim: the feature size (>= 1).
        init: ``"gpt2"`` (default: N(0, 0.02), as GPT-2), any name of
            :mod:`portable_nn.layers.init`, or ``f(rng, (max_len, dim)) -> numpy array``.

    Params: ``{"W": (max_len, dim)}``.
    Shapes: X ``(batch, seq, dim)`` float (e.g. an :class:`Embedding`'s
    output) with ``seq <= max_len`` -> Y of the same shape and dtype.

    Raises:
        ValueError: sizes < 1; ``seq > max_len``, X not 3-D, or a last axis other than ``dim``.
        TypeError: X not a real floating array of W's dtype and namespace.

    >>> import numpy as np, portable_nn as pnn
    >>> pos = pnn.PositionalEmbedding(8, 4)                         # up to 8 positions
    >>> params = pos.init(seed=0, backend="numpy")                  # {"W": (8, 4)} float32
    >>> pos(params, np.zeros((2, 3, 4), dtype="float32")).shape     # 3 <= 8 positions
    (2, 3, 4)
    """

    def __init__(self, max_len: int, dim: int, *, init: str | Initializer = "gpt2") -> None:
        self.max_len = check_int("PositionalEmbedding", "max_len", max_len, 1)
        self.dim = check_int("PositionalEmbedding", "dim", dim, 1)
        self.initializer = get_initializer(init, repr(self))

    def __repr__(self) -> str:
        return f"PositionalEmbedding({self.max_len}, {self.dim})"

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        W = self.initializer(rng, (self.max_len, self.dim))
        return {"W": be.asarray(np.asarray(W, dtype=dtype))}

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        (W,) = check_params(self, params, {"W": (self.max_len, self.dim)})
        xp = check_array(self, X, like=W, ndim=3, features=self.dim, axes="(batch, seq, dim)")
        T = X.shape[1]
        if T > self.max_len:
            raise ValueError(
                f"{self!r}: the sequence has {T} positions (X of shape {tuple(X.shape)}) but max_len is "
                f"{self.max_len}. Crop the input to its last {self.max_len} positions, or build the model "
                "with a larger max_len."
            )
        Y = X + W[:T, :]

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            dW = xp.sum(dY, axis=0)
            if T < self.max_len:
                rest = xp.zeros((self.max_len - T, self.dim), dtype=dW.dtype, device=array_api_compat.device(dW))
                dW = xp.concat([dW, rest], axis=0)
            return dY, {"W": dW}

        return Y, backprop
