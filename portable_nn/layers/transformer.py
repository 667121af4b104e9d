"""TransformerBlock: GPT-2's pre-LayerNorm block, composed of two residual branches."""

from __future__ import annotations

import numpy as np

from .._check import real_number
from .._rng import Seed, host_rng
from ..backends import Backend
from .activations import GELU
from .attention import MultiHeadAttention
from .base import Array, Backprop, Layer, Params, check_array, check_int
from .dropout import Dropout
from .layernorm import LayerNorm
from .linear import Linear
from .residual import Residual
from .sequential import Sequential

__all__ = ["TransformerBlock"]

_KEYS = ("ln1", "attn", "ln2", "fc", "proj")


class TransformerBlock(Layer):
    """A GPT-2 block: ``X = X + attn(ln1(X))``, then ``X = X + proj(gelu(fc(ln2(X))))``.

    Args:
        dim: the feature size D (>= 1), a multiple of ``heads``.
        heads: attention heads (>= 1).
        mlp_ratio: the MLP's hidden size is ``mlp_ratio * dim`` (default 4).
        causal: mask future positions (default True, a language model).
        dropout: GPT-2's residual dropout rate in [0, 1), applied to each
            branch's output before it is added (0: none, and then the block
            draws no host random numbers).

    Params (the public layout)::

        {"ln1": {"gamma": (D,), "beta": (D,)},
         "attn": {"W_qkv": (D, 3D), "b_qkv": (3D,), "W_o": (D, D), "b_o": (D,)},
         "ln2": {"gamma": (D,), "beta": (D,)},
         "fc": {"W": (D, mlp_ratio*D), "b": (mlp_ratio*D,)},
         "proj": {"W": (mlp_ratio*D, D), "b": (D,)}}

    Built from the library's layers: the branches are
    ``Residual(Sequential(ln1, attn[, Dropout]))`` and
    ``Residual(Sequential(ln2, fc, GELU(), proj[, Dropout]))`` (GELU in its
    tanh form, as GPT-2), with their list params mapped to the dict above.
    Init as GPT-2: N(0, 0.02) weights, zero biases, LayerNorms at ones/zeros
    (GPT-2 also scales ``proj`` by ``1/sqrt(2 * n_layers)``, which a block
    cannot know: re-draw it if wanted).

    Shapes: X ``(batch, seq, D)`` -> Y ``(batch, seq, D)``, X's dtype.

    Raises:
        ValueError: sizes < 1, ``dim`` not a multiple of ``heads``, ``dropout``
            outside [0, 1); X not ``(batch, seq, dim)``; params without exactly
            the keys above.
        TypeError: X not a real floating array of the params' dtype and namespace.

    >>> import numpy as np, portable_nn as pnn
    >>> block = pnn.TransformerBlock(8, heads=2)                    # causal, MLP 8 -> 32 -> 8
    >>> params = block.init(seed=0, backend="numpy")
    >>> list(params), params["fc"]["W"].shape
    (['ln1', 'attn', 'ln2', 'fc', 'proj'], (8, 32))
    >>> block(params, np.zeros((2, 5, 8), dtype="float32")).shape
    (2, 5, 8)
    """

    def __init__(
        self, dim: int, heads: int, *, mlp_ratio: int = 4, causal: bool = True, dropout: float = 0.0
    ) -> None:
        self.dim = check_int("TransformerBlock", "dim", dim, 1)
        self.mlp_ratio = check_int("TransformerBlock", "mlp_ratio", mlp_ratio, 1)
        self.dropout = real_number("TransformerBlock", "dropout", dropout, lo=0, hi=1, hi_open=True)
        self.ln1 = LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, causal=causal, init="gpt2")
        self.ln2 = LayerNorm(dim)
        self.fc = Linear(dim, mlp_ratio * dim, init="gpt2")
        self.proj = Linear(mlp_ratio * dim, dim, init="gpt2")
        drop = (Dropout(self.dropout),) if self.dropout > 0 else ()
        self.attn_branch = Residual(Sequential(self.ln1, self.attn, *drop))
        self.mlp_branch = Residual(Sequential(self.ln2, self.fc, GELU(), self.proj, *drop))

    def __repr__(self) -> str:
        extra = "" if self.mlp_ratio == 4 else f", mlp_ratio={self.mlp_ratio}"
        extra += "" if self.attn.causal else ", causal=False"
        extra += "" if self.dropout == 0 else f", dropout={self.dropout}"
        return f"TransformerBlock({self.dim}, {self.attn.heads}{extra})"

    @property
    def draws_host_rng(self) -> bool:
        """True when ``dropout > 0``: the residual dropout masks are drawn on the host."""
        return self.dropout > 0

    def children(self) -> tuple[Layer, ...]:
        """The two residual branches, which hold every sub-layer."""
        return (self.attn_branch, self.mlp_branch)

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        return {key: getattr(self, key).init_params(rng, be, dtype) for key in _KEYS}

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        if type(params) is not dict or len(params) != len(_KEYS) or not all(k in params for k in _KEYS):
            got = list(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"{self!r}: params must be a dict with keys {list(_KEYS)}, got {got}. "
                "Use the params from this model's init()."
            )
        gamma = params["ln1"].get("gamma") if isinstance(params["ln1"], dict) else None  # X's dtype and device
        check_array(self, X, like=gamma, ndim=3, features=self.dim, axes="(batch, seq, dim)")
        if train and rng is not None:
            rng = host_rng(rng)  # one Generator for both branches: their dropout masks differ
        drop: list[Params] = [{}] if self.dropout > 0 else []
        p_attn = [params["ln1"], params["attn"], *drop]
        p_mlp = [params["ln2"], params["fc"], {}, params["proj"], *drop]
        try:
            H, attn_backprop = self.attn_branch.apply(p_attn, X, train=train, rng=rng)
            Y, mlp_backprop = self.mlp_branch.apply(p_mlp, H, train=train, rng=rng)
        except (TypeError, ValueError) as e:
            e.args = (f"{self!r}: {e.args[0] if e.args else ''}", *e.args[1:])
            raise

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            dH, g_mlp = mlp_backprop(dY)
            dX, g_attn = attn_backprop(dH, need_dX=need_dX)
            return dX, {"ln1": g_attn[0], "attn": g_attn[1], "ln2": g_mlp[0], "fc": g_mlp[1], "proj": g_mlp[3]}

        return Y, backprop
