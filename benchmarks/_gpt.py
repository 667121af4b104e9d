"""Case j's GPT training step, besides portable_nn: the same architecture in PyTorch eager and in JAX by hand.

``Sequential(Embedding(V, D), PositionalEmbedding(T, D), TransformerBlock(D, H) x L, LayerNorm(D),
Linear(D, V))``: pre-LayerNorm GPT-2 blocks (causal attention, a 4x GELU (tanh) MLP), softmax
cross-entropy over every token, Adam. Every candidate starts from the same host-drawn params (in
portable_nn's layout: weights ``(in, out)``, attention ``W_qkv`` ``(D, 3D)``) and trains on the same
batches of character ids taken from Python's own documentation (``pydoc_data.topics``), so their
losses after a few steps agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from portable_nn import (
    Embedding,
    LayerNorm,
    Linear,
    PositionalEmbedding,
    Sequential,
    TransformerBlock,
    to_numpy,
)
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import Adam
from portable_nn.tools.problems import Problem

from ._steps import Built, functional_step, host_batches, restartable

__all__ = ["LR", "attention_bytes", "gpt_model", "gpt_problem", "jax_step", "text_ids", "torch_step"]

LR, BATCHES, EPS = 3e-4, 4, 1e-5


def text_ids(rows: int, context: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``rows`` windows of ``context + 1`` characters of ``pydoc_data.topics`` as ids: inputs, next-token
    targets (both ``(rows, context)`` int64) and the vocabulary size."""
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    chars = sorted(set(text))
    ids = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lookup = {ord(c): i for i, c in enumerate(chars)}
    table = np.vectorize(lookup.__getitem__, otypes=[np.int64])(ids)
    starts = np.random.default_rng(seed).integers(0, table.shape[0] - context - 1, rows)
    windows = np.stack([table[s : s + context + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:], len(chars)


def gpt_model(vocab: int, context: int, dim: int, heads: int, blocks: int) -> Sequential:
    return Sequential(
        Embedding(vocab, dim), PositionalEmbedding(context, dim),
        *(TransformerBlock(dim, heads) for _ in range(blocks)), LayerNorm(dim), Linear(dim, vocab),
    )


def gpt_problem(batch: int, context: int, dim: int, heads: int, blocks: int, seed: int = 0) -> Problem:
    """The model, params drawn on the host (NumPy, float32), :data:`BATCHES` batches of text, Adam."""
    X, Y, vocab = text_ids(BATCHES * batch, context, seed)
    model = gpt_model(vocab, context, dim, heads, blocks)
    params = model.init(seed=seed, backend="numpy", dtype="float32")
    batches = tuple((X[i : i + batch], Y[i : i + batch]) for i in range(0, X.shape[0], batch))
    desc = f"{model!r}, Adam(lr={LR}), softmax_cross_entropy over tokens, {BATCHES} batches of {batch} x {context}"
    return Problem("gpt-bench", desc, model, params, batches, softmax_cross_entropy, Adam(lr=LR), "float32")


def attention_bytes(batch: int, heads: int, context: int, blocks: int, itemsize: int = 4) -> int:
    """The ``(batch, heads, seq, seq)`` attention probabilities each block keeps for its backward pass."""
    return batch * heads * context * context * itemsize * blocks


def _host(prob: Problem) -> list[Any]:
    """The params as nested host arrays, portable_nn's layout."""
    return [{k: (np.array(to_numpy(v)) if not isinstance(v, dict) else {kk: np.array(to_numpy(vv))
                                                                          for kk, vv in v.items()})
             for k, v in layer.items()} for layer in prob.params]


def _heads(prob: Problem) -> tuple[int, int]:
    """The heads of the model's blocks, and how many blocks there are."""
    assert isinstance(prob.model, Sequential)
    blocks = [layer for layer in prob.model.layers if isinstance(layer, TransformerBlock)]
    return blocks[0].attn.heads, len(blocks)


# --- PyTorch eager ---------------------------------------------------------------------------------


def torch_step(prob: Problem, torch: Any, name: str = "torch eager") -> Built:
    """The same GPT as torch tensors with autograd, ``F.scaled_dot_product_attention(is_causal=True)`` and
    ``torch.optim.Adam`` at the problem's learning rate, on the CPU."""
    F = torch.nn.functional
    heads, _ = _heads(prob)
    host = _host(prob)
    leaves = _flatten(host)
    params = [torch.from_numpy(a.copy()).requires_grad_(True) for a in leaves]
    opt = torch.optim.Adam(params, lr=LR)
    batches = [tuple(torch.from_numpy(a.copy()) for a in b) for b in host_batches(prob)]
    cur: dict[str, Any] = {}

    def forward(p: list[Any], X: Any) -> Any:
        tree = _unflatten(host, p)
        T = X.shape[1]
        x = tree[0]["W"][X] + tree[1]["W"][:T]
        for blk in tree[2:-2]:
            h = F.layer_norm(x, (x.shape[-1],), blk["ln1"]["gamma"], blk["ln1"]["beta"], EPS)
            a = blk["attn"]
            q, k, v = (h @ a["W_qkv"] + a["b_qkv"]).split(x.shape[-1], dim=-1)
            q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)
            x = x + y @ a["W_o"] + a["b_o"]
            h = F.layer_norm(x, (x.shape[-1],), blk["ln2"]["gamma"], blk["ln2"]["beta"], EPS)
            x = x + F.gelu(h @ blk["fc"]["W"] + blk["fc"]["b"], approximate="tanh") @ blk["proj"]["W"] + blk["proj"]["b"]
        x = F.layer_norm(x, (x.shape[-1],), tree[-2]["gamma"], tree[-2]["beta"], EPS)
        return x @ tree[-1]["W"] + tree[-1]["b"]

    def reset() -> None:
        with torch.no_grad():
            for p, a in zip(params, leaves, strict=True):
                p.copy_(torch.from_numpy(a))
        opt.state.clear()
        cur["i"] = 0

    def one() -> Any:
        X, y = batches[cur["i"] % len(batches)]
        opt.zero_grad(set_to_none=True)
        logits = forward(params, X)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        cur["i"] += 1
        cur["loss"] = loss.detach()
        return cur["loss"]

    return restartable(name, one, None, reset, cur)


# --- JAX, written by hand ----------------------------------------------------------------------------


def jax_step(prob: Problem, jax: Any, name: str = "jax by hand (jit)") -> Built:
    """The same GPT in ``jax.numpy``, ``jax.value_and_grad`` and Adam written out, in one ``jax.jit``."""
    import jax.numpy as jnp

    heads, _ = _heads(prob)
    host = _host(prob)
    cpu = jax.devices("cpu")[0]
    init_p = [jax.device_put(a, cpu) for a in _flatten(host)]
    batches = [(jax.device_put(X, cpu), jax.device_put(y, cpu)) for X, y in host_batches(prob)]

    def ln(x: Any, g: Any, b: Any) -> Any:
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / jnp.sqrt(v + EPS) * g + b

    def loss_fn(flat: list[Any], X: Any, y: Any) -> Any:
        tree = _unflatten(host, flat)
        B, T = X.shape
        x = tree[0]["W"][X] + tree[1]["W"][:T]
        D = x.shape[-1]
        mask = jnp.tril(jnp.ones((T, T), dtype=bool))
        for blk in tree[2:-2]:
            h = ln(x, blk["ln1"]["gamma"], blk["ln1"]["beta"])
            a = blk["attn"]
            qkv = h @ a["W_qkv"] + a["b_qkv"]
            q, k, v = (qkv[..., i * D : (i + 1) * D].reshape(B, T, heads, -1).transpose(0, 2, 1, 3) for i in range(3))
            s = jnp.where(mask, q @ k.transpose(0, 1, 3, 2) / math.sqrt(D // heads), -jnp.inf)
            y_ = (jax.nn.softmax(s, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
            x = x + y_ @ a["W_o"] + a["b_o"]
            h = ln(x, blk["ln2"]["gamma"], blk["ln2"]["beta"])
            x = x + jax.nn.gelu(h @ blk["fc"]["W"] + blk["fc"]["b"], approximate=True) @ blk["proj"]["W"] + blk["proj"]["b"]
        logits = ln(x, tree[-2]["gamma"], tree[-2]["beta"]) @ tree[-1]["W"] + tree[-1]["b"]
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))

    b1, b2, eps = 0.9, 0.999, 1e-8

    @jax.jit
    def train(state: Any, X: Any, y: Any) -> tuple[Any, Any]:
        p, m, v, t = state
        loss, g = jax.value_and_grad(loss_fn)(p, X, y)
        t = t + 1
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        c1, c2 = 1 - b1**t, 1 - b2**t
        p = [pi - LR * (mi / c1) / (jnp.sqrt(vi / c2) + eps) for pi, mi, vi in zip(p, m, v, strict=True)]
        return (p, m, v, t), loss

    zeros = [jnp.zeros_like(a) for a in init_p]
    return functional_step(name, train, (init_p, zeros, zeros, jnp.asarray(0.0)), batches, None)


def _flatten(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _flatten(tree[k])]
    if isinstance(tree, list):
        return [leaf for item in tree for leaf in _flatten(item)]
    return [tree]


def _unflatten(like: Any, leaves: list[Any]) -> Any:
    it = iter(leaves)

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: build(node[k]) for k in sorted(node)}
        if isinstance(node, list):
            return [build(item) for item in node]
        return next(it)

    return build(like)
