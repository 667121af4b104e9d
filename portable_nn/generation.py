"""generate: sample token ids from a language model, one at a time, reproducibly on every backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from ._check import check_int, dtype_name, is_float, real_number
from ._rng import host_rng
from ._tree import tree_leaves
from .backends import namespace, to_numpy
from .layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .layers.attention import MultiHeadAttention
from .layers.base import Array, Layer, Params, trainable
from .layers.dropout import Dropout
from .layers.embedding import Embedding, PositionalEmbedding
from .layers.layernorm import LayerNorm
from .layers.linear import Linear
from .layers.residual import Residual
from .layers.sequential import Sequential
from .layers.transformer import TransformerBlock

__all__ = ["generate", "context_length", "is_causal"]

# Layers whose output at a position depends on that position's input only.
_POSITIONWISE = (Embedding, PositionalEmbedding, LayerNorm, Linear, GELU, LeakyReLU, ReLU, Sigmoid, Tanh, Dropout)


def context_length(model: Layer) -> int | None:
    """The longest context ``model`` takes: the smallest ``max_len`` of it and its sub-layers.

    Found by walking ``model`` and its :meth:`~portable_nn.Layer.children`
    for an int attribute ``max_len`` (a :class:`~portable_nn.PositionalEmbedding`
    has one; a layer of yours may declare one too). None when no layer has
    one: the model takes any length. :func:`~portable_nn.generate` crops its
    context to it.

    >>> import portable_nn as pnn
    >>> from portable_nn.generation import context_length
    >>> context_length(pnn.Sequential(pnn.Embedding(10, 8), pnn.PositionalEmbedding(6, 8), pnn.Linear(8, 10)))
    6
    >>> context_length(pnn.Linear(8, 10)) is None
    True
    """
    found = [m for m in (getattr(layer, "max_len", None) for layer in _walk(model)) if isinstance(m, int)]
    return min(found) if found else None


def is_causal(model: Layer) -> bool:
    """True when ``model``'s output at position i is known to depend on positions <= i only.

    That is, it is built (with :class:`~portable_nn.Sequential`,
    :class:`~portable_nn.Residual` and :class:`~portable_nn.TransformerBlock`)
    from causal attention and layers that act on each position alone:
    :class:`~portable_nn.Embedding`, :class:`~portable_nn.PositionalEmbedding`,
    :class:`~portable_nn.LayerNorm`, :class:`~portable_nn.Linear`, the
    elementwise activations and :class:`~portable_nn.Dropout`. Any other layer
    (yours included) makes it False: its effect on positions is not known.
    :func:`~portable_nn.generate` then runs each step on exactly the ids so far
    instead of a fixed, padded window.

    >>> import portable_nn as pnn
    >>> from portable_nn.generation import is_causal
    >>> is_causal(pnn.Sequential(pnn.Embedding(10, 8), pnn.TransformerBlock(8, heads=2), pnn.Linear(8, 10)))
    True
    >>> is_causal(pnn.MultiHeadAttention(8, 2))                     # causal=False by default
    False
    """
    if isinstance(model, MultiHeadAttention):
        return model.causal
    if isinstance(model, (Sequential, Residual, TransformerBlock)):
        return all(is_causal(child) for child in model.children())
    return type(model) in _POSITIONWISE


def _walk(layer: Layer) -> list[Layer]:
    out = [layer]
    for child in layer.children():
        out.extend(_walk(child))
    return out


def generate(
    model: Layer,
    params: Params,
    prompt_ids: Any,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | np.random.Generator = 0,
) -> Array:
    """Extend ``prompt_ids`` by ``max_new_tokens`` ids sampled from ``model``, one at a time.

    Each step runs the model (inference mode) on the ids so far, cropped to
    their last :func:`~portable_nn.generation.context_length` ids, takes the logits of the last
    position, divides them by ``temperature``, computes the probabilities on
    the device, copies that ``(batch, vocab)`` row to the host and samples
    there with ``numpy.random.Generator(PCG64(seed))``: one seed gives the same
    ids on every backend and device (up to ties in the probabilities at
    rounding level). The ids so far are kept on the host too; each step sends
    the device one window of ids. Each step recomputes the whole context (no KV cache).

    A model that :func:`~portable_nn.generation.is_causal`, with a context length, runs every step on
    a fixed window of ``context_length`` ids, right-padded with id 0 until the
    ids fill it: causal masking keeps the padding out of the last real
    position's logits (up to rounding), and one shape lets JAX reuse its
    compiled operations (each new length would compile them anew: seconds per
    step on a CPU). Any other model runs on exactly the ids so far.

    Args:
        model: a language model mapping ids ``(batch, seq)`` to logits
            ``(batch, seq, vocab)`` (the last position is used), or to
            ``(batch, vocab)`` (next-token logits), e.g. ``Sequential(Embedding,
            PositionalEmbedding, TransformerBlock, ..., LayerNorm, Linear)``.
        params: its params (or Variables).
        prompt_ids: integer ids, ``(batch, seq)`` or ``(seq,)`` (one prompt),
            host data or arrays of the params' backend; ``seq >= 1``.
        max_new_tokens: how many ids to add (>= 0).
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: sample only among the ``top_k`` most likely ids (ids tied with
            the k-th are kept too); ``top_k=1`` is greedy (the first argmax,
            no draw). None: the whole vocabulary.
        seed: int seed or ``numpy.random.Generator`` of the draws.

    Returns:
        The prompt followed by the new ids: ``(batch, seq + max_new_tokens)``
        (or ``(seq + max_new_tokens,)`` for a 1-D prompt), an integer array
        (the prompt's integer dtype; int64 for host data) on the params'
        backend and device.

    Raises:
        TypeError: a float prompt, or non-integer max_new_tokens / top_k.
        ValueError: an empty prompt, ``temperature <= 0``, ``top_k`` outside
            ``[1, vocab]``, a prompt's integer dtype too narrow for the
            vocabulary's ids (``uint8`` for 300 ids), a model output of another shape, or
            next-token logits that are NaN or inf (a diverged model).

    >>> import numpy as np, portable_nn as pnn
    >>> model = pnn.Sequential(pnn.Embedding(10, 8), pnn.PositionalEmbedding(6, 8),
    ...                        pnn.TransformerBlock(8, heads=2), pnn.LayerNorm(8), pnn.Linear(8, 10))
    >>> params = model.init(seed=0, backend="numpy")
    >>> out = pnn.generate(model, params, np.array([[1, 2, 3]]), 5, top_k=3, seed=0)
    >>> out.shape, out.dtype, out[0, :3].tolist()                   # the prompt, then 5 new ids
    ((1, 8), dtype('int64'), [1, 2, 3])
    """
    where = "generate"
    max_new_tokens = check_int(where, "max_new_tokens", max_new_tokens, 0)
    temperature = real_number(where, "temperature", temperature, lo=0, lo_open=True)
    if top_k is not None:
        top_k = check_int(where, "top_k", top_k, 1)
    rng = host_rng(seed)
    leaves = tree_leaves(trainable(params))
    if not leaves:
        raise ValueError(f"{where}: the model has no params; pass the params from model.init().")
    xp, device = namespace(leaves[0]), array_api_compat.device(leaves[0])
    ids = _prompt(prompt_ids, xp, device)
    one = ids.ndim == 1
    if one:
        ids = ids[None, :]
    if ids.shape[1] == 0 or ids.shape[0] == 0:
        raise ValueError(
            f"{where}: the prompt is empty (shape {tuple(ids.shape[1:] if one else ids.shape)}); "
            "give at least one id per row to start from."
        )
    limit = context_length(model)
    pad = limit is not None and is_causal(model)
    # the ids so far live on the host, beside the sampler: each step sends the device one window of ids and
    # grows nothing there (a device array growing by one id a step gives JAX a new shape to compile each step)
    dtype, host_ids = ids.dtype, to_numpy(ids)
    for _ in range(max_new_tokens):
        logits = _next_logits(model, params, host_ids, limit, pad, lambda a: xp.asarray(a, dtype=dtype, device=device))
        vocab = logits.shape[1]
        if top_k is not None and top_k > vocab:
            raise ValueError(f"{where}: top_k must be in [1, {vocab}] for a vocabulary of {vocab}, got {top_k}.")
        if vocab - 1 > int(xp.iinfo(dtype).max):
            raise ValueError(
                f"{where}: the prompt's dtype {dtype} holds ids up to {int(xp.iinfo(dtype).max)}, but the "
                f"model's vocabulary has {vocab} ids: new ids would wrap around. Pass the prompt as int64, "
                "e.g. be.asarray(ids, dtype='int64')."
            )
        # shifted before dividing: a tiny temperature sends the others to -inf (never inf - inf = NaN), and
        # the largest logit stays 0 even where temperature is 0 in the logits' dtype (0 / 0 would be NaN)
        Z = logits - xp.max(logits, axis=1, keepdims=True)
        with warnings.catch_warnings():  # NumPy's about the overflow to -inf, which is meant
            warnings.simplefilter("ignore", RuntimeWarning)
            Z = xp.where(Z == 0, xp.zeros_like(Z), Z / temperature)
        E = xp.exp(Z)
        probs = to_numpy(E / xp.sum(E, axis=1, keepdims=True)).astype(np.float64)
        if not np.all(np.isfinite(probs)):  # NaN probabilities would sample id 0 every step, silently
            raise ValueError(
                f"{where}: the model's next-token logits (dtype {logits.dtype}) at new token "
                f"{host_ids.shape[1] - ids.shape[1]} are not finite (NaN, or +inf / all -inf in a row), so no "
                "probabilities follow from them. Check the params for NaN/inf (a diverged training run), or "
                "run in float32 where half-precision logits overflow."
            )
        new = _sample(probs, top_k, rng)
        host_ids = np.concatenate([host_ids, new[:, None].astype(host_ids.dtype)], axis=1)
    if max_new_tokens:
        ids = xp.asarray(host_ids, dtype=dtype, device=device)
    return ids[0, :] if one else ids


def _prompt(prompt_ids: Any, xp: Any, device: Any) -> Array:
    """The prompt as an integer array of ``xp`` on ``device`` (host data: int64)."""
    where = "generate"
    host = to_numpy(prompt_ids)  # a few ids: one host copy, for the checks
    if host.dtype.kind not in "iu":
        what = "floats" if host.dtype.kind == "f" else f"dtype {host.dtype}"
        raise TypeError(
            f"{where}: prompt_ids must be integer token ids, got {what}. Pass them as integers, "
            "e.g. np.asarray(ids, dtype='int64')."
        )
    if host.ndim not in (1, 2):
        raise ValueError(f"{where}: prompt_ids must be (batch, seq) or (seq,), got shape {host.shape}.")
    try:
        if namespace(prompt_ids) is xp and array_api_compat.device(prompt_ids) == device:
            return prompt_ids
    except TypeError:
        pass
    dtype = dtype_name(host.dtype) if host.dtype.kind == "i" else "int64"
    return xp.asarray(host.astype(dtype), device=device)


def _next_logits(
    model: Layer, params: Params, ids: np.ndarray, limit: int | None, pad: bool, to_device: Callable[[Any], Array]
) -> Array:
    """The model's logits ``(batch, vocab)`` for the id after the host ``ids`` (batch, n): on the last
    ``limit`` ids, right-padded with id 0 to ``limit`` when ``pad`` (see :func:`generate`), sent to the
    params' device by ``to_device``."""
    n = ids.shape[1]
    context = ids if limit is None or n <= limit else ids[:, -limit:]
    last = context.shape[1] - 1
    if pad and limit is not None and n < limit:  # the fixed window; the logits are read at position last
        context = np.concatenate([context, np.zeros((ids.shape[0], limit - n), dtype=ids.dtype)], axis=1)
    return _last_logits(model(params, to_device(context)), ids.shape[0], last)


def _last_logits(Y: Array, batch: int, last: int) -> Array:
    """The next-token logits ``(batch, vocab)`` from a model output ``(batch, seq, vocab)`` (at position
    ``last``) or ``(batch, vocab)``."""
    xp = namespace(Y)
    if not is_float(xp, Y.dtype) or Y.ndim not in (2, 3) or Y.shape[0] != batch:
        raise ValueError(
            f"generate: the model must map ids (batch, seq) to float logits (batch, seq, vocab) or "
            f"(batch, vocab); it gave shape {tuple(Y.shape)} and dtype {Y.dtype} for a batch of {batch}."
        )
    return Y[:, last, :] if Y.ndim == 3 else Y


def _sample(probs: np.ndarray, top_k: int | None, rng: np.random.Generator) -> np.ndarray:
    """One id per row of the host ``probs`` (batch, vocab): greedy for top_k=1, else a draw."""
    if top_k == 1:
        return np.argmax(probs, axis=1)
    if top_k is not None:  # keep the top_k largest (and ties with the k-th)
        kth = -np.partition(-probs, top_k - 1, axis=1)[:, top_k - 1 : top_k]
        probs = np.where(probs >= kth, probs, 0.0)
    cdf = np.cumsum(probs, axis=1)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return np.minimum(np.sum(cdf <= u, axis=1), probs.shape[1] - 1)
