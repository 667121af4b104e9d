"""A character-level GPT
=======================

Train a character-level GPT on Python's own help texts (pydoc_data.topics: no download) and sample from it.

Prints the validation loss in bits per character after each epoch, the
unigram model's (each character's frequency in the training text, no context)
for comparison, the time, and a sample generated from the trained model. ::

    python examples/char_lm.py                               # NumPy, 1-2 minutes on 2 CPU cores
    python examples/char_lm.py --backend torch               # or jax, array_api_strict, cupy, torch:cuda, auto
    python examples/char_lm.py --precision bfloat16 --backend jax   # mixed precision
    python examples/char_lm.py --steps 5 --epochs 1 --dim 16 --layers 1 --context 16   # a few seconds

Measured with the defaults on NumPy (2 epochs, 818 steps, 117,479 params):
validation 2.22 bits/char against the unigram model's 4.67, in 61 s with
OPENBLAS_NUM_THREADS=1 on a busy 2-core machine (347 s with OpenBLAS's
default 2 threads there, which then wait on each other: on a shared machine,
try OPENBLAS_NUM_THREADS=1). On the same machine at rest, default threads:
NumPy 77 s, torch 40 s, JAX 36 s, array_api_strict 92 s, all to 2.218
bits/char with the same sample.
"""

from __future__ import annotations

import argparse
import math
import pydoc_data.topics
import time
from typing import Any

import numpy as np

import portable_nn as pnn
from portable_nn.tools.arguments import backend_arg, positive_int

# gallery-args: --steps 20 --epochs 1 --dim 32 --layers 1 --context 32 --sample 120


def corpus() -> str:
    """About 465,000 characters of Python's documentation (the topics behind ``help('if')``)."""
    return "".join(pydoc_data.topics.topics.values())


def gpt(vocab: int, dim: int, layers: int, heads: int, context: int, dropout: float = 0.0) -> pnn.Sequential:
    """Token and position embeddings, ``layers`` GPT-2 blocks, a final LayerNorm, and the logits."""
    return pnn.Sequential(
        pnn.Embedding(vocab, dim, init="gpt2"),
        pnn.PositionalEmbedding(context, dim),
        *(pnn.TransformerBlock(dim, heads, dropout=dropout) for _ in range(layers)),
        pnn.LayerNorm(dim),
        pnn.Linear(dim, vocab, init="gpt2"),
    )


def windows(ids: np.ndarray, context: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, context)`` and their next characters (the targets, shifted by one), every ``stride``."""
    starts = np.arange(0, len(ids) - context - 1, stride)
    X = np.stack([ids[s : s + context] for s in starts])
    return X, np.stack([ids[s + 1 : s + context + 1] for s in starts])


def unigram_bits(train: np.ndarray, val: np.ndarray, vocab: int) -> float:
    """Bits per character of the validation text under the training text's character frequencies (add-one)."""
    counts = np.bincount(train, minlength=vocab) + 1.0
    return float(-np.mean(np.log2(counts[val] / counts.sum())))


class Report:
    """fit's callback: the validation loss in bits per character after each epoch."""

    def __init__(self, model: pnn.Layer, val: tuple[np.ndarray, np.ndarray], start: float,
                 precision: str | None = None) -> None:
        self.model, self.val, self.start, self.precision = model, val, start, precision
        self.bits: list[float] = []

    def on_epoch_end(self, epoch: int, history: dict[str, list[float]], params: Any) -> None:
        loss, _ = pnn.evaluate(self.model, params, *self.val, loss=pnn.losses.softmax_cross_entropy, batch_size=64,
                               precision=self.precision)
        self.bits.append(loss / math.log(2))
        print(
            f"epoch {epoch + 1}: train {history['loss'][-1] / math.log(2):.3f} bits/char, "
            f"validation {self.bits[-1]:.3f} bits/char ({time.perf_counter() - self.start:.0f} s)",
            flush=True,
        )


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train on ``args.backend``; print and return the numbers."""
    be = pnn.get_backend(args.backend)
    text = corpus()
    chars = sorted(set(text))
    code = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((code[c] for c in text), dtype=np.int64, count=len(text))
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    X, Y = windows(train_ids, args.context, max(1, args.context // 2))
    rng = np.random.default_rng(args.seed)
    if args.steps is not None:  # a random subset of the windows: steps batches per epoch
        keep = rng.permutation(len(X))[: args.steps * args.batch_size]
        X, Y = X[keep], Y[keep]
    val = windows(val_ids, args.context, args.context)
    if args.steps is not None:
        val = (val[0][: 4 * args.batch_size], val[1][: 4 * args.batch_size])
    model = gpt(len(chars), args.dim, args.layers, args.heads, args.context, args.dropout)
    params = model.init(seed=args.seed, backend=be, dtype=args.dtype)
    n_params = sum(math.prod(p.shape) for p in pnn.tree_leaves(params))
    steps = args.epochs * -(-len(X) // args.batch_size)
    unigram = unigram_bits(train_ids, val[1].reshape(-1), len(chars))  # on the text the model is scored on
    print(
        f"{be}: {len(text):,} characters, vocabulary {len(chars)}, {len(X):,} training windows of "
        f"{args.context}; {args.layers} block(s) of dim {args.dim}, {args.heads} heads: {n_params:,} params; "
        f"{steps} steps of {args.batch_size}",
        flush=True,
    )
    print(f"unigram model: {unigram:.3f} bits/char on the validation text", flush=True)
    start = time.perf_counter()
    report = Report(model, val, start, args.precision)
    schedule = pnn.schedules.cosine(args.lr, total_steps=steps, warmup=min(100, steps // 10), end=args.lr / 10)
    params, history = pnn.fit(
        model, params, X, Y, loss=pnn.losses.softmax_cross_entropy, optimizer=pnn.optim.Adam(lr=schedule),
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, callbacks=[report], progress=args.progress,
        precision=args.precision,
    )
    seconds = time.perf_counter() - start
    prompt = np.array([code[c] for c in "The "], dtype=np.int64)
    sample = pnn.generate(model, params, prompt, args.sample, temperature=0.8, seed=args.seed)
    text_out = "".join(chars[i] for i in pnn.to_numpy(sample))
    print(f"validation {report.bits[-1]:.3f} bits/char vs unigram {unigram:.3f}; training took {seconds:.1f} s")
    print(f"sample (temperature 0.8):\n{text_out}")
    return {"val_bits": report.bits[-1], "unigram_bits": unigram, "seconds": seconds, "sample": text_out}


def arguments() -> argparse.ArgumentParser:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])  # the line under the title
    parser.add_argument("--backend", type=backend_arg, default="numpy", help="numpy, torch, jax, ... (default numpy)")
    parser.add_argument("--epochs", type=positive_int, default=2, help="passes over the training windows (default 2)")
    parser.add_argument("--steps", type=positive_int, default=None, help="steps per epoch (a random subset of the "
                        "windows; also cuts the validation text to 4 batches); default: every window")
    parser.add_argument("--dim", type=positive_int, default=64)
    parser.add_argument("--layers", type=positive_int, default=2)
    parser.add_argument("--heads", type=positive_int, default=4)
    parser.add_argument("--context", type=positive_int, default=64, help="characters per window (the model's max_len)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's peak learning rate (cosine schedule)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--precision", default=None, choices=["bfloat16", "float16"],
                        help="mixed precision: float32 params, forward and backward in this dtype (torch, JAX; "
                        "float16 on NumPy too)")
    parser.add_argument("--sample", type=int, default=300, help="characters to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show fit's progress bar")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.dim % args.heads:
        parser.error(f"--dim ({args.dim}) must be a multiple of --heads ({args.heads})")
    if args.precision is not None and args.precision not in pnn.available_precisions(args.backend):
        parser.error(f"--precision {args.precision}: {args.backend} has {', '.join(pnn.available_precisions(args.backend))}")
    return train(args)


if __name__ == "__main__":
    main()
