"""Multi-head scaled dot-product self-attention, with its backward beside its forward."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .._rng import Seed
from ..backends import Backend
from .base import Array, Backprop, Layer, Params, check_array, check_int, check_params, is_half, upcast
from .init import Initializer, get_initializer

__all__ = ["MultiHeadAttention", "causal_mask"]


def causal_mask(xp: Any, seq: int, device: Any) -> Array:
    """A ``(seq, seq)`` boolean array, True where query i may attend to key j (j <= i); no in-place writes."""
    i = xp.arange(seq, device=device)
    return i[:, None] >= i[None, :]


class MultiHeadAttention(Layer):
    """Self-attention with ``heads`` heads, as ``torch.nn.MultiheadAttention`` with one input.

    Args:
        dim: the feature size D (>= 1), a multiple of ``heads``.
        heads: the number of heads H (>= 1); each has ``d = D // H`` features.
        causal: mask future positions (query i sees keys j <= i), as a GPT does.
        bias: learn the biases ``b_qkv`` and ``b_o``.
        init: the initializer of ``W_qkv`` and ``W_o``: ``"glorot"`` (default,
            as torch's ``in_proj_weight``), any name of :mod:`portable_nn.layers.init`
            (``"gpt2"``: N(0, 0.02)) or ``f(rng, (in, out)) -> numpy array``. Biases start at 0.

    Params (stored (in, out), like :class:`Linear`)::

        {"W_qkv": (D, 3D), "b_qkv": (3D,), "W_o": (D, D), "b_o": (D,)}   # no biases when bias=False

    The math, for X ``(batch, seq, D)``: ``Q, K, V`` are the three
    consecutive D-wide column blocks of ``X @ W_qkv + b_qkv``, and head h uses
    the columns ``[h*d, (h+1)*d)`` of each; per head ``A = softmax(Q K^T /
    sqrt(d) + mask) V``; ``Y = concat(heads) @ W_o + b_o``. This is
    ``torch.nn.MultiheadAttention`` with ``in_proj_weight = W_qkv.T``,
    ``in_proj_bias = b_qkv``, ``out_proj.weight = W_o.T`` (tested to 1e-10).

    Shapes: X ``(batch, seq, D)`` -> Y ``(batch, seq, D)``, X's dtype. The
    forward keeps the attention weights ``(batch, H, seq, seq)`` for the
    backward: ``batch * H * seq**2`` values per layer, which dominates the
    memory for long sequences. The masked scores are -inf, so their weights
    are exactly 0 (no NaN: every query sees at least itself).

    Note: ``b_qkv``'s key part ``b_qkv[D:2D]`` has an exactly zero gradient in
    exact arithmetic (softmax is shift-invariant per query); it is kept for
    torch's layout.

    Raises:
        ValueError: sizes < 1, ``dim`` not a multiple of ``heads`` (the message
            suggests a fit); X not ``(batch, seq, dim)``; params of another shape.
        TypeError: X not a real floating array of the params' dtype and namespace.

    >>> import numpy as np, portable_nn as pnn
    >>> attn = pnn.MultiHeadAttention(8, 2, causal=True)
    >>> params = attn.init(seed=0, backend="numpy")
    >>> {name: W.shape for name, W in params.items()}
    {'W_qkv': (8, 24), 'b_qkv': (24,), 'W_o': (8, 8), 'b_o': (8,)}
    >>> X = np.random.default_rng(0).standard_normal((2, 5, 8)).astype("float32")
    >>> Y = attn(params, X)                                         # (batch, seq, dim)
    >>> Y.shape, Y.dtype
    ((2, 5, 8), dtype('float32'))
    >>> later = X.copy(); later[:, 3:] = 0                          # change positions 3 and 4 only
    >>> bool(np.allclose(attn(params, later)[:, :3], Y[:, :3]))     # causal: positions 0-2 do not see them
    True
    """

    float32_ops = ("softmax and its backward",)

    def __init__(
        self, dim: int, heads: int, *, causal: bool = False, bias: bool = True, init: str | Initializer = "glorot"
    ) -> None:
        self.dim = check_int("MultiHeadAttention", "dim", dim, 1)
        self.heads = check_int("MultiHeadAttention", "heads", heads, 1)
        if dim % heads:
            raise ValueError(
                f"MultiHeadAttention: dim ({dim}) must be divisible by heads ({heads}): each head takes "
                f"dim // heads features. Choose e.g. heads={_divisor_near(dim, heads)} or dim={heads * -(-dim // heads)}."
            )
        self.causal = bool(causal)
        self.bias = bool(bias)
        self.initializer = get_initializer(init, repr(self))

    def __repr__(self) -> str:
        extra = ", causal=True" if self.causal else ""
        extra += "" if self.bias else ", bias=False"
        return f"MultiHeadAttention({self.dim}, {self.heads}{extra})"

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        D = self.dim
        params = {"W_qkv": be.asarray(np.asarray(self.initializer(rng, (D, 3 * D)), dtype=dtype))}
        if self.bias:
            params["b_qkv"] = be.asarray(np.zeros(3 * D, dtype=dtype))
        params["W_o"] = be.asarray(np.asarray(self.initializer(rng, (D, D)), dtype=dtype))
        if self.bias:
            params["b_o"] = be.asarray(np.zeros(D, dtype=dtype))
        return params

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The params' keys and shapes (the layout above)."""
        D = self.dim
        if not self.bias:
            return {"W_qkv": (D, 3 * D), "W_o": (D, D)}
        return {"W_qkv": (D, 3 * D), "b_qkv": (3 * D,), "W_o": (D, D), "b_o": (D,)}

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        arrays = check_params(self, params, self.param_shapes())
        W_qkv, W_o = arrays[0], arrays[-2 if self.bias else -1]
        b_qkv, b_o = (arrays[1], arrays[3]) if self.bias else (None, None)
        xp = check_array(self, X, like=W_qkv, ndim=3, features=self.dim, axes="(batch, seq, dim)")
        B, T, D = X.shape
        if T == 0:  # the softmax's max over no keys has no value (NumPy raised 'zero-size array to reduction')
            raise ValueError(
                f"{self!r}: X has no positions (shape {tuple(X.shape)}); attention needs a sequence of at "
                "least one position. Drop empty sequences before the model."
            )
        H = self.heads
        d = D // H
        scale = 1.0 / math.sqrt(d)
        X2 = xp.reshape(X, (B * T, D))
        QKV = X2 @ W_qkv
        if b_qkv is not None:
            QKV = QKV + b_qkv
        # (B*T, 3D) -> (B, T, 3, H, d) -> (3, B, H, T, d): Q, K, V of every head, batched
        QKV = xp.permute_dims(xp.reshape(QKV, (B, T, 3, H, d)), (2, 0, 3, 1, 4))
        Qs, K, V = QKV[0, ...] * scale, QKV[1, ...], QKV[2, ...]
        S = Qs @ xp.matrix_transpose(K)  # (B, H, T, T) scores
        low = S.dtype if is_half(S.dtype) else None
        S = upcast(xp, S)  # the softmax in float32 under mixed precision (float32_ops)
        if self.causal:
            neg_inf = xp.asarray(-math.inf, dtype=S.dtype, device=array_api_compat.device(S))
            S = xp.where(causal_mask(xp, T, array_api_compat.device(S)), S, neg_inf)
        E = xp.exp(S - xp.max(S, axis=-1, keepdims=True))
        P32 = E / xp.sum(E, axis=-1, keepdims=True)  # attention weights, rows sum to 1
        P = P32 if low is None else xp.astype(P32, low)
        A = xp.reshape(xp.permute_dims(P @ V, (0, 2, 1, 3)), (B * T, D))  # heads side by side
        Y = A @ W_o
        if b_o is not None:
            Y = Y + b_o

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            dY2 = xp.reshape(dY, (B * T, D))
            dA = xp.permute_dims(xp.reshape(dY2 @ W_o.T, (B, T, H, d)), (0, 2, 1, 3))  # (B, H, T, d)
            dP = dA @ xp.matrix_transpose(V)
            dV = xp.matrix_transpose(P) @ dA
            dP = upcast(xp, dP)
            dS = P32 * (dP - xp.sum(dP * P32, axis=-1, keepdims=True))  # softmax's Jacobian; 0 where masked
            if low is not None:
                dS = xp.astype(dS, low)
            dQ = (dS @ K) * scale
            dK = xp.matrix_transpose(dS) @ Qs
            # (3, B, H, T, d) -> (B, T, 3, H, d) -> (B*T, 3D): the columns of QKV
            dQKV = xp.reshape(xp.permute_dims(xp.stack([dQ, dK, dV]), (1, 3, 0, 2, 4)), (B * T, 3 * D))
            grads = {"W_qkv": X2.T @ dQKV}
            if b_qkv is not None:
                grads["b_qkv"] = xp.sum(dQKV, axis=0)
            grads["W_o"] = A.T @ dY2
            if b_o is not None:
                grads["b_o"] = xp.sum(dY2, axis=0)
            dX = xp.reshape(dQKV @ W_qkv.T, (B, T, D)) if need_dX else None
            return dX, grads

        return xp.reshape(Y, (B, T, D)), backprop


def _divisor_near(dim: int, heads: int) -> int:
    """The divisor of ``dim`` closest to ``heads`` (for the error message)."""
    return min((h for h in range(1, dim + 1) if dim % h == 0), key=lambda h: (abs(h - heads), h))
