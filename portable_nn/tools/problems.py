"""Standard training problems, built identically on any backend: ``seed``, ``digits``, ``mlp``, ``cnn``, ``gpt``.

Each problem fixes a model, its initial params, the data batches, a loss and
an optimizer. Everything random is drawn on the host, so the same problem on
two backends starts from bit-identical arrays; that is what makes step-by-step
comparisons (``python -m portable_nn compare``) meaningful.

- ``seed``: the teaching notebook. ``Linear(3, 2) -> ReLU -> Linear(2, 1)``
  without biases, its 4 x 3 data, weights from the legacy NumPy RNG seeded
  83832, SGD lr 0.01 on the sum of squared errors; float64 by default.
- ``digits``: scikit-learn's bundled 8 x 8 digits (no download), standardized,
  75/25 split (random_state=0); MLP 64-128-10, Adam lr 3e-3, softmax
  cross-entropy, the 42 whole batches of 32 in order; float32 by default.
- ``mlp``: synthetic inputs from a seeded host RNG, labels from a random
  linear teacher; MLP 784-H-H-10, SGD lr 0.01, softmax cross-entropy; float32.
- ``cnn``: synthetic 1 x 12 x 12 images from a seeded host RNG, labels from a
  random linear teacher; Conv2D(1, 8, 3, padding=1) -> ReLU -> MaxPool2D(2) ->
  Conv2D(8, 16, 3, padding=1) -> ReLU -> GlobalAvgPool2D -> Linear(16, 3),
  SGD lr 0.05 with momentum 0.9, softmax cross-entropy, 4 batches of 16; float32.
- ``gpt``: a character-level GPT on windows of Python's own documentation
  (``pydoc_data.topics``, no download): Embedding -> PositionalEmbedding ->
  2 TransformerBlocks (dim 32, 4 heads, causal) -> LayerNorm -> Linear, context
  32, SGD lr 0.1 with momentum 0.9 (Adam would turn the exactly-zero gradient
  of attention's key bias into rounding-sized steps that differ per backend),
  softmax cross-entropy over every token, 4 batches of 16; float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..layers.activations import ReLU
from ..layers.base import Array, Layer, Params, check_int, dtype_name
from ..layers.conv import Conv2D
from ..layers.embedding import Embedding, PositionalEmbedding
from ..layers.layernorm import LayerNorm
from ..layers.linear import Linear
from ..layers.pooling import GlobalAvgPool2D, MaxPool2D
from ..layers.sequential import Sequential
from ..layers.transformer import TransformerBlock
from ..losses import softmax_cross_entropy, sum_squared_error
from ..optim import SGD, Adam

__all__ = [
    "DEFAULT_STEPS",
    "PROBLEMS",
    "SUMMARIES",
    "LossFn",
    "Problem",
    "default_dtype",
    "make_problem",
    "notebook_data",
    "notebook_weights",
    "load_digits_data",
]

# one line per problem (``compare --help`` lists them); PROBLEMS are its names
SUMMARIES = {
    "seed": "the teaching notebook's 3-2-1 net, its 4 x 3 data, SGD on the sum of squared errors",
    "digits": "64-128-10 MLP on scikit-learn's digits, Adam, softmax cross-entropy",
    "mlp": "synthetic 784-H-H-10 MLP (hidden width H, batch size B), SGD, softmax cross-entropy",
    "cnn": "small CNN (2 convs, max and global average pooling) on synthetic 1x12x12 images, SGD with momentum",
    "gpt": "2-block character-level GPT (dim 32, context 32) on Python's documentation text, SGD with momentum",
}
"""Problem name -> what it trains, in one line (``compare --help`` shows these)."""
PROBLEMS = tuple(SUMMARIES)
"""The problems :func:`make_problem` builds, by name: ``("seed", "digits", "mlp", "cnn", "gpt")``."""
DEFAULT_STEPS = {"seed": 500, "digits": 100, "mlp": 50, "cnn": 40, "gpt": 30}
"""Training steps of each problem when ``steps`` is not given."""

LossFn = Callable[[Array, Array], tuple[Array, Array]]
"""A loss: ``loss(Y, T) -> (value, dY)``, as the functions of :mod:`portable_nn.losses`."""

_NOTEBOOK_X = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]
_NOTEBOOK_Y = [[0], [1], [1], [0]]
_NOTEBOOK_SEED = 83832


@dataclass(frozen=True)
class Problem:
    """A training problem placed on one backend.

    Attributes:
        name: one of :data:`PROBLEMS`.
        description: one line: model, optimizer, loss, data.
        model: the model (a :class:`~portable_nn.Sequential`).
        params: initial params on the backend, of ``dtype``.
        batches: ``(X, T)`` pairs on the backend; step ``i`` trains on
            ``batches[i % len(batches)]``. X is ``(batch, features)`` of
            ``dtype`` (int64 character ids ``(batch, seq)`` for ``gpt``); T is float
            targets (``seed``) or int64 labels ``(batch,)`` (``(batch, seq)`` for ``gpt``).
        loss: ``loss(Y, T) -> (value, dY)``.
        optimizer: an object with ``init(params)`` and ``step(params, grads, state)``.
        dtype: ``"float32"`` or ``"float64"``.
    """

    name: str
    description: str
    model: Layer
    params: Params
    batches: tuple[tuple[Array, Array], ...]
    loss: LossFn
    optimizer: Any
    dtype: str

    @property
    def steps_per_epoch(self) -> int:
        """Steps that visit every batch once."""
        return len(self.batches)


def notebook_weights() -> tuple[np.ndarray, np.ndarray]:
    """The notebook's initial ``w1`` (3, 2) and ``w2`` (2, 1), float64.

    Identical to the notebook's ``np.random.seed(83832); randn(3, 2); randn(2, 1)``
    but drawn from a private ``RandomState``, so NumPy's global RNG is untouched.
    """
    rng = np.random.RandomState(_NOTEBOOK_SEED)
    w1 = rng.randn(3, 2)
    w2 = rng.randn(2, 1)
    return w1, w2


def notebook_data() -> tuple[np.ndarray, np.ndarray]:
    """The notebook's inputs ``x`` (4, 3) and targets ``y`` (4, 1), as float64 host arrays.

    The notebook uses integers; they are converted explicitly because ``int @
    float`` is not defined by the Array API standard.
    """
    return np.asarray(_NOTEBOOK_X, dtype=np.float64), np.asarray(_NOTEBOOK_Y, dtype=np.float64)


def load_digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits, standardized on the training part, split 75/25 with random_state=0.

    Returns:
        ``(X_train (1347, 64), X_test (450, 64), y_train (1347,), y_test (450,))``:
        float64 features and int64 labels 0..9, on the host.

    Raises:
        ModuleNotFoundError: scikit-learn is not installed (the message says how to install it).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError as e:
        raise ModuleNotFoundError(
            f"the digits problem needs scikit-learn ({e}). Install it with: pip install scikit-learn "
            "(or pip install 'portable_nn[test]')."
        ) from e
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return (
        scaler.transform(X_train),
        scaler.transform(X_test),
        np.asarray(y_train, dtype=np.int64),
        np.asarray(y_test, dtype=np.int64),
    )


def default_dtype(name: str) -> str:
    """The problem's default dtype: ``"float64"`` for ``seed`` (the notebook's), ``"float32"`` otherwise."""
    return "float64" if name == "seed" else "float32"


def make_problem(
    name: str,
    backend: str | Backend | None = None,
    *,
    dtype: str | None = None,
    hidden: int = 512,
    batch: int = 256,
    seed: int = 0,
) -> Problem:
    """Build problem ``name`` on ``backend``.

    Args:
        name: ``"seed"``, ``"digits"``, ``"mlp"``, ``"cnn"`` or ``"gpt"`` (see the module docstring).
        backend: a Backend or spec such as ``"torch:cuda"``; ``None`` is the default backend.
        dtype: ``"float32"`` or ``"float64"``; ``None`` is the problem's default
            (float64 for ``seed``, float32 otherwise).
        hidden: hidden width H of ``mlp`` (ignored by the others).
        batch: batch size of ``mlp`` (ignored by the others).
        seed: host RNG seed of ``digits``/``mlp`` weights and ``mlp`` data
            (``seed`` always uses the notebook's weights).

    Raises:
        ValueError: unknown problem name, or hidden/batch < 1.
        TypeError: the backend's device does not support ``dtype``.
        BackendError: the backend is not installed or has no such device.
    """
    if name not in PROBLEMS:
        raise ValueError(f"make_problem: unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}.")
    for arg, value in (("hidden", hidden), ("batch", batch)):
        check_int("make_problem", arg, value, 1)
    be = get_backend(backend)
    dt = dtype_name(be.dtype(dtype or default_dtype(name)))
    if name == "seed":
        return _seed_problem(be, dt)
    if name == "digits":
        return _digits_problem(be, dt, seed)
    if name == "cnn":
        return _cnn_problem(be, dt, seed)
    if name == "gpt":
        return _gpt_problem(be, dt, seed)
    return _mlp_problem(be, dt, int(hidden), int(batch), seed)


def _seed_problem(be: Backend, dtype: str) -> Problem:
    x, y = notebook_data()
    w1, w2 = notebook_weights()
    model = Sequential(Linear(3, 2, bias=False), ReLU(), Linear(2, 1, bias=False))
    params = [{"W": be.asarray(w1.astype(dtype))}, {}, {"W": be.asarray(w2.astype(dtype))}]
    batches = ((be.asarray(x.astype(dtype)), be.asarray(y.astype(dtype))),)
    opt = SGD(lr=0.01)
    desc = f"the notebook's {model!r}, SGD(lr={opt.lr}), sum_squared_error, its 4 x 3 data"
    return Problem("seed", desc, model, params, batches, sum_squared_error, opt, dtype)


def _digits_problem(be: Backend, dtype: str, seed: int) -> Problem:
    X_train, _, y_train, _ = load_digits_data()
    model = Sequential(Linear(64, 128), ReLU(), Linear(128, 10))
    params = model.init(seed=seed, backend=be, dtype=dtype)
    n = X_train.shape[0] // 32 * 32  # whole batches only: every step does the same work
    batches = _batches(be, X_train[:n].astype(dtype), y_train[:n], 32)
    opt = Adam(lr=3e-3)
    desc = (
        f"{model!r}, Adam(lr={opt.lr}), softmax_cross_entropy, scikit-learn digits: "
        f"{len(batches)} batches of 32 in order (the last {X_train.shape[0] - n} of {X_train.shape[0]} rows unused)"
    )
    return Problem("digits", desc, model, params, batches, softmax_cross_entropy, opt, dtype)


def _mlp_problem(be: Backend, dtype: str, hidden: int, batch: int, seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    n_batches = 4
    X = rng.standard_normal((n_batches * batch, 784))
    teacher = rng.standard_normal((784, 10))
    labels = np.argmax(X @ teacher, axis=1).astype(np.int64)
    model = Sequential(Linear(784, hidden), ReLU(), Linear(hidden, hidden), ReLU(), Linear(hidden, 10))
    params = model.init(seed=seed, backend=be, dtype=dtype)
    batches = _batches(be, X.astype(dtype), labels, batch)
    opt = SGD(lr=0.01)
    desc = (
        f"{model!r}, SGD(lr={opt.lr}), softmax_cross_entropy, synthetic data: {n_batches} batches of {batch}"
    )
    return Problem("mlp", desc, model, params, batches, softmax_cross_entropy, opt, dtype)


def _cnn_problem(be: Backend, dtype: str, seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    n_batches, batch = 4, 16
    X = rng.standard_normal((n_batches * batch, 1, 12, 12))
    labels = np.argmax(X.reshape(X.shape[0], -1) @ rng.standard_normal((144, 3)), axis=1).astype(np.int64)
    model = Sequential(
        Conv2D(1, 8, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(8, 16, 3, padding=1), ReLU(),
        GlobalAvgPool2D(), Linear(16, 3),
    )
    params = model.init(seed=seed, backend=be, dtype=dtype)
    batches = _batches(be, X.astype(dtype), labels, batch)
    opt = SGD(lr=0.05, momentum=0.9)
    desc = f"{model!r}, {opt!r}, softmax_cross_entropy, synthetic 1x12x12 images: {n_batches} batches of {batch}"
    return Problem("cnn", desc, model, params, batches, softmax_cross_entropy, opt, dtype)


def _gpt_problem(be: Backend, dtype: str, seed: int) -> Problem:
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    chars = sorted(set(text))
    code = {c: i for i, c in enumerate(chars)}
    n_batches, batch, context = 4, 16, 32
    starts = np.random.default_rng(seed).integers(0, len(text) - context - 1, n_batches * batch)
    windows = np.array([[code[c] for c in text[s : s + context + 1]] for s in starts], dtype=np.int64)
    model = Sequential(
        Embedding(len(chars), 32), PositionalEmbedding(context, 32),
        TransformerBlock(32, 4), TransformerBlock(32, 4), LayerNorm(32), Linear(32, len(chars)),
    )
    params = model.init(seed=seed, backend=be, dtype=dtype)
    batches = _batches(be, windows[:, :-1], windows[:, 1:], batch)  # int64 character ids, next-character labels
    opt = SGD(lr=0.1, momentum=0.9)
    desc = (f"{model!r}, {opt!r}, softmax_cross_entropy over tokens, {n_batches} batches of {batch} windows of "
            f"{context} characters of Python's documentation")
    return Problem("gpt", desc, model, params, batches, softmax_cross_entropy, opt, dtype)


def _batches(be: Backend, X: np.ndarray, y: np.ndarray, size: int) -> tuple[tuple[Array, Array], ...]:
    """Host data split into consecutive batches, each moved to the backend once."""
    return tuple(
        (be.asarray(X[i : i + size]), be.asarray(y[i : i + size])) for i in range(0, X.shape[0], size)
    )
