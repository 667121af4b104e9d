"""Integer (index) inputs in the layer-author API: a layer declares takes_indices, check_array has an
index mode, fit/predict/evaluate pass integer X through uncast, gradcheck skips dX."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.layers.base import Array, Backprop, Layer, Params, check_array, check_params


class Lookup(Layer):
    """A test embedding: integer ids (batch,) -> rows of W (batch, dim), by a one-hot matmul."""

    def __init__(self, vocab: int, dim: int) -> None:
        self.vocab, self.dim = vocab, dim

    @property
    def takes_indices(self) -> bool:
        return True

    def init_params(self, rng: np.random.Generator, be: pnn.Backend, dtype: str) -> Params:
        return {"W": be.asarray(rng.standard_normal((self.vocab, self.dim)).astype(dtype))}

    def apply(self, params: Params, X: Array, *, train: bool = False, rng: pnn.Seed = None) -> tuple[Array, Backprop]:
        (W,) = check_params(self, params, {"W": (self.vocab, self.dim)})
        xp = check_array(self, X, like=W, ndim=1, kind="index")
        ids = xp.arange(self.vocab, dtype=X.dtype, device=array_api_compat.device(X))
        onehot = xp.astype(X[:, None] == ids[None, :], W.dtype)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            return None, {"W": onehot.T @ dY}

        return onehot @ W, backprop


def _model() -> pnn.Sequential:
    return pnn.Sequential(Lookup(5, 3), pnn.Tanh(), pnn.Linear(3, 2))


def test_sequential_takes_what_its_first_layer_takes() -> None:
    assert _model().takes_indices
    assert not pnn.Sequential(pnn.Linear(2, 2), Lookup(3, 2)).takes_indices
    assert not pnn.Sequential().takes_indices
    assert not pnn.Linear(2, 2).takes_indices


def test_check_array_index_mode(tb: Any) -> None:
    W = tb.asarray(np.zeros((5, 3)), dtype=tb.float)
    ids = tb.be.asarray(np.array([0, 4, 2]), dtype="int64")
    assert check_array("layer", ids, like=W, kind="index") is not None
    with pytest.raises(TypeError, match="integer indices.*do not cast them to float"):
        check_array("Embedding(5, 3)", tb.asarray(np.array([0.0, 1.0]), dtype=tb.float), like=W, kind="index")
    with pytest.raises(TypeError, match="real floating dtype"):
        check_array("Linear(3, 2)", ids, like=W)  # the float mode still refuses integers
    with pytest.raises(ValueError, match="kind must be 'float' or 'index'"):
        check_array("layer", ids, kind="int")


def test_fit_predict_evaluate_keep_integer_X_for_an_index_model(tb: Any) -> None:
    model = _model()
    params = tb.init(model)
    X = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4], dtype=np.int64)
    Y = (X % 2).astype(np.int64)
    trained, history = pnn.fit(model, params, X, Y, loss=pnn.losses.softmax_cross_entropy,
                               optimizer=pnn.optim.Adam(lr=0.05), epochs=30, batch_size=4, seed=0, progress=False,
                               validation_data=(X, Y))
    assert history["accuracy"][-1] == 1.0 and history["val_accuracy"][-1] == 1.0
    out = pnn.predict(model, trained, X)
    assert tuple(out.shape) == (10, 2)
    loss, acc = pnn.evaluate(model, trained, X, Y, loss=pnn.losses.softmax_cross_entropy)
    assert acc == 1.0 and loss == pytest.approx(history["val_loss"][-1], rel=1e-5)


def test_an_index_model_refuses_float_X_naming_the_fix(tb: Any) -> None:
    model = _model()
    params = tb.init(model)
    Xf = np.array([0.0, 1.0, 2.0])
    for call in (
        lambda: pnn.fit(model, params, Xf, np.array([0, 1, 0]), loss=pnn.losses.softmax_cross_entropy,
                        optimizer=pnn.optim.SGD(lr=0.1), epochs=1, progress=False),
        lambda: pnn.predict(model, params, Xf),
        lambda: pnn.evaluate(model, params, Xf, np.array([0, 1, 0]), loss=pnn.losses.softmax_cross_entropy),
    ):
        with pytest.raises(TypeError, match="takes integer indices.*dtype='int64'"):
            call()


def test_a_float_model_still_refuses_integer_X(tb: Any) -> None:
    model = pnn.Sequential(pnn.Linear(1, 2))
    with pytest.raises(TypeError, match="floating data is needed"):
        pnn.predict(model, tb.init(model), np.array([[1], [2]]))


def test_gradcheck_checks_the_params_and_skips_dX_for_integer_X(tb: Any) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip("float64 gradcheck")
    model = _model()
    params = tb.init(model, dtype="float64")
    X = tb.be.asarray(np.array([0, 3, 3, 1]), dtype="int64")
    T = tb.be.asarray(np.array([1, 0, 0, 1]), dtype="int64")
    pnn.gradcheck(model, params, X, loss=pnn.losses.softmax_cross_entropy, T=T)

    class Wrong(Lookup):  # a backprop that forgets repeated ids: the check must catch it
        def apply(self, params: Params, X: Array, *, train: bool = False, rng: pnn.Seed = None) -> Any:
            Y, backprop = super().apply(params, X, train=train, rng=rng)
            return Y, lambda dY, need_dX=True: (None, {"W": backprop(dY)[1]["W"] * 0.5})

    bad = pnn.Sequential(Wrong(5, 3), pnn.Tanh(), pnn.Linear(3, 2))
    with pytest.raises(pnn.GradientCheckError, match="layer 0"):
        pnn.gradcheck(bad, params, X, loss=pnn.losses.softmax_cross_entropy, T=T)


def test_seed_is_exported_for_layer_authors() -> None:
    from portable_nn.layers.base import Seed

    assert pnn.Seed is Seed
