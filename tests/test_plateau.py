"""ReduceOnPlateau's two rules against the libraries they name: torch's scheduler step for step, and
Keras's callback as a reference function; and the rule through fit's checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn.schedules import ReduceOnPlateau

NAN, INF = math.nan, math.inf

# monitored losses, one per epoch: plateaus, ties at exactly best - min_delta (0.25 is exact in binary),
# NaN and inf epochs, an improvement after a reduction, and seeded random walks
SEQUENCES = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    [1.0, 0.75, 0.75, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25],
    [2.0, 1.0, NAN, NAN, 0.5, NAN, INF, 0.5, 0.4, 0.4, 0.4, 0.4],
    [NAN, INF, 3.0, 3.0, 2.0, 2.5, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    *[list(np.random.default_rng(seed).standard_normal(40).cumsum() * 0.1 + 5.0) for seed in range(4)],
    *[list(np.round(np.random.default_rng(seed).uniform(0, 1, 30), 1)) for seed in range(4, 8)],
]
SETTINGS = [  # factor, patience, min_delta, min_scale
    (0.1, 1, 0.0, 0.0),
    (0.5, 2, 0.25, 0.0),
    (0.5, 3, 0.0, 0.1),
    (0.3, 2, 0.05, 0.002),
    (0.5, 5, 0.0, 0.0),
]


def _ours(plateau: ReduceOnPlateau, losses: list[float]) -> list[float]:
    """The scale after each epoch, as fit keeps it (best starts at inf, wait at 0)."""
    best, wait, scale, out = INF, 0, 1.0, []
    for loss in losses:
        best, wait, scale = plateau.update(best, wait, scale, loss)
        out.append(scale)
    return out


def _torch(losses: list[float], lr: float, *, factor: float, patience: int, min_delta: float,
           min_lr: float, eps: float = 0.0) -> list[float]:
    """torch.optim.lr_scheduler.ReduceLROnPlateau's lr after each step(loss).

    ``eps=0``: torch skips a reduction of at most ``eps`` (default 1e-8) in lr units; ReduceOnPlateau,
    which sees only the scale, does not (see its docstring and the eps test below).
    """
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=factor, patience=patience, threshold=min_delta, threshold_mode="abs",
        cooldown=0, min_lr=min_lr, eps=eps)
    out = []
    for loss in losses:
        scheduler.step(loss)
        out.append(opt.param_groups[0]["lr"])
    return out


def _keras(losses: list[float], lr: float, *, factor: float, patience: int, min_delta: float,
           min_lr: float) -> list[float]:
    """Keras 3's ``keras.callbacks.ReduceLROnPlateau.on_epoch_end`` with mode "min" (monitor "val_loss"),
    cooldown=0: its lr after each epoch.

    Transcribed from keras-team/keras, keras/src/callbacks/reduce_lr_on_plateau.py (commit 040582f):
    ``_reset`` sets ``best = np.inf``, ``wait = 0`` and ``monitor_op = np.less(a, b - min_delta)``;
    ``on_epoch_end`` improves (``best = current; wait = 0``) when ``monitor_op(current, best)``, else
    ``wait += 1`` and when ``wait >= patience`` and ``old_lr > np.float32(min_lr)`` it sets
    ``lr = max(old_lr * factor, min_lr)`` and ``wait = 0``. (Keras holds the lr in a float32
    variable; this reference, like ReduceOnPlateau, keeps Python floats.)
    """
    best, wait, out = np.inf, 0, []
    for current in losses:
        if np.less(current, best - min_delta):
            best, wait = current, 0
        else:
            wait += 1
            if wait >= patience and lr > np.float32(min_lr):
                lr, wait = max(lr * factor, min_lr), 0
        out.append(lr)
    return out


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_rule_torch_is_torchs_reduce_lr_on_plateau_step_for_step(setting):
    """rule="torch" with lr * scale equals torch's lr after every step (abs threshold, min_lr = lr * min_scale)."""
    factor, patience, min_delta, min_scale = setting
    lr = 0.8
    for p in (patience, patience - 1):  # torch's patience=0 included
        plateau = ReduceOnPlateau(factor, p, min_delta, min_scale, rule="torch")
        for losses in SEQUENCES:
            expected = _torch(losses, lr, factor=factor, patience=p, min_delta=min_delta, min_lr=lr * min_scale)
            got = [lr * s for s in _ours(plateau, losses)]
            np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0, err_msg=f"{plateau!r} on {losses}")


def test_torchs_default_eps_is_the_only_difference_and_at_most_1e_8_in_lr():
    """With torch's default eps=1e-8 its lr stops falling below about 1e-8 / (1 - factor); ours goes on."""
    lr, losses = 0.8, [1.0] * 40
    plateau = ReduceOnPlateau(0.1, 1, rule="torch")
    expected = _torch(losses, lr, factor=0.1, patience=1, min_delta=0.0, min_lr=0.0, eps=1e-8)
    got = [lr * s for s in _ours(plateau, losses)]
    assert got != expected
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_rule_keras_is_keras_reduce_lr_on_plateau_step_for_step(setting):
    """The default rule equals Keras's callback after every epoch (min_lr = lr * min_scale)."""
    factor, patience, min_delta, min_scale = setting
    lr = 0.8
    plateau = ReduceOnPlateau(factor, patience, min_delta, min_scale)
    assert plateau.rule == "keras"  # the default: the rule ReduceOnPlateau always had
    for losses in SEQUENCES:
        expected = _keras(losses, lr, factor=factor, patience=patience, min_delta=min_delta, min_lr=lr * min_scale)
        got = [lr * s for s in _ours(plateau, losses)]
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0, err_msg=f"{plateau!r} on {losses}")


def test_the_rules_differ_by_one_epoch_of_patience():
    """A loss that never improves after epoch 0: Keras drops after `patience` bad epochs, torch after one more."""
    losses = [1.0] * 7
    assert _ours(ReduceOnPlateau(0.5, 2), losses) == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert _ours(ReduceOnPlateau(0.5, 2, rule="torch"), losses) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert _ours(ReduceOnPlateau(0.5, 0, rule="torch"), losses) == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]


def test_rule_and_patience_are_checked_and_the_rule_is_in_the_repr():
    assert "rule='torch'" in repr(ReduceOnPlateau(rule="torch"))  # what fit's checkpoint fingerprint holds
    assert ReduceOnPlateau(rule="torch") != ReduceOnPlateau()
    with pytest.raises(ValueError, match=r"ReduceOnPlateau: rule must be 'keras' .* or 'torch' .*got 'tf'"):
        ReduceOnPlateau(rule="tf")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ReduceOnPlateau: rule must be 'keras' or 'torch', got int"):
        ReduceOnPlateau(rule=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"patience must be >= 1 with rule='keras', got 0.*rule='torch' with"):
        ReduceOnPlateau(patience=0)
    with pytest.raises(ValueError, match="ReduceOnPlateau: patience must be >= 0, got -1"):
        ReduceOnPlateau(patience=-1, rule="torch")


def _problem(n=32):
    X = np.random.default_rng(0).standard_normal((n, 3))
    return X, X @ np.array([[1.0], [-2.0], [0.5]])


@pytest.mark.parametrize("rule, lrs", [("keras", [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]),
                                       ("torch", [0.1, 0.1, 0.1, 0.1, 0.05, 0.05])])
def test_fit_applies_the_rule(tb, rule, lrs):
    X, Y = _problem()
    model = pnn.Sequential(pnn.Linear(3, 1))
    _, history = pnn.fit(model, tb.init(model), X, Y, epochs=6, **_plateau_fit(X, Y, rule))
    assert history["lr"] == pytest.approx(lrs, rel=1e-12)  # the lr each epoch trained with


def _plateau_fit(X, Y, rule):
    # validation targets of the opposite sign: the validation loss only gets worse after epoch 0
    return dict(loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(0.1), batch_size=8, shuffle=False,
                progress=False, validation_data=(X, -Y), reduce_lr=ReduceOnPlateau(0.5, 2, rule=rule))


def test_a_resumed_run_keeps_the_torch_rule_and_another_rule_cannot_resume_it(tb, tmp_path):
    """3 epochs checkpointed then resumed to 6 give the 6-epoch run's lrs (test_fit_applies_the_rule)."""
    X, Y = _problem()
    model = pnn.Sequential(pnn.Linear(3, 1))
    params, path = tb.init(model), tmp_path / "run.safetensors"
    pnn.fit(model, params, X, Y, epochs=3, checkpoint=path, **_plateau_fit(X, Y, "torch"))
    with pytest.raises(pnn.CheckpointError, match=r"other settings: reduce_lr=.*rule=\W*torch.*in the file.*rule=\W*keras.*in this run"):
        pnn.fit(model, params, X, Y, epochs=6, checkpoint=path, resume=True, **_plateau_fit(X, Y, "keras"))
    _, history = pnn.fit(model, params, X, Y, epochs=6, checkpoint=path, resume=True, **_plateau_fit(X, Y, "torch"))
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05], rel=1e-12)
    assert len(history["val_loss"]) == 6
