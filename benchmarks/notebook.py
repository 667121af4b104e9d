"""Case b: the teaching notebook's tiny problem, where per-step overhead is everything.

3-2-1 ReLU net without biases, the notebook's 4 x 3 data and seeded weights,
float64, sum of squared errors, SGD lr 0.01: microseconds per step of

- portable_nn through the public API loop (``model.apply``, the loss,
  ``backprop``, ``opt.step``), and through ``pnn.compile_step``;
- the notebook's own NumPy loop (``x.dot``, ``np.maximum``, in-place ``w1 -= lr*grad_w1``);
- PyTorch eager autograd (the same loop with tensors, ``loss.backward()``);
- a ``jax.jit`` step, and the whole 500-step run compiled as one ``lax.fori_loop``;
- with ``--device-backend SPEC``: ``compile_step`` on that backend ("portable_nn on SPEC"), and
  PyTorch eager on CUDA when torch sees a GPU. Target: each >= 2x faster than PyTorch eager CUDA.

Each candidate's loss after the notebook's 500 steps is compared with portable_nn's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from portable_nn import Backend, compile_step, fit, get_backend, to_backend
from portable_nn.losses import sum_squared_error
from portable_nn.tools.problems import make_problem, notebook_data, notebook_weights

from ._common import Config, device_speedup_goals, ratio, relative_dev, rivals, speed_target, timing_row
from ._interleaved import Candidate
from ._result import CaseResult, Column
from ._steps import Built, restartable, time_checked

__all__ = ["KEY", "run"]

KEY = "b"
LR = 0.01
STEPS = 500  # the notebook's run; also the length of the compiled fori_loop

FIT_JAX = f"portable_nn on jax (pnn.fit: {STEPS} steps/call)"
API, COMPILED, RAW, TORCH, JAX, JAX_LOOP, TORCH_CUDA = (
    "portable_nn (apply/loss/backprop/step)",
    "portable_nn (compile_step)",
    "numpy, the notebook's loop",
    "torch eager autograd",
    "jax jit step",
    f"jax fori_loop ({STEPS} steps/call)",
    "torch eager autograd (cuda)",
)


def _pnn_api() -> Built:
    prob = make_problem("seed", "numpy")
    model, opt = prob.model, prob.optimizer
    x, y = prob.batches[0]
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=prob.params, state=opt.init(prob.params))

    def one() -> Any:
        Y, backprop = model.apply(cur["params"], x, train=True)
        loss, dY = sum_squared_error(Y, y)
        _, grads = backprop(dY)
        cur["params"], cur["state"] = opt.step(cur["params"], grads, cur["state"])
        cur["loss"] = loss
        return loss

    return restartable(API, one, get_backend("numpy"), reset, cur)


def _pnn_compiled(name: str = COMPILED, backend: Backend | None = None) -> Built:
    """``compile_step`` on NumPy, or with the params and data moved to ``backend``."""
    prob = make_problem("seed", "numpy")
    step = compile_step(prob.model, prob.loss, prob.optimizer)
    be = backend or get_backend("numpy")
    params, (x, y) = to_backend((prob.params, prob.batches[0]), be)
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur.update(params=params, state=prob.optimizer.init(params))

    def one() -> Any:
        cur["params"], cur["state"], cur["loss"] = step(cur["params"], cur["state"], x, y)
        return cur["params"], cur["loss"]  # the params too, so a timer can wait on them (JAX)

    return restartable(name, one, be, reset, cur)


def _numpy_notebook() -> Built:
    x, y = notebook_data()
    w1_0, w2_0 = notebook_weights()
    w1, w2 = w1_0.copy(), w2_0.copy()
    learning_rate = LR
    cur: dict[str, Any] = {}

    def reset() -> None:
        w1[...] = w1_0
        w2[...] = w2_0

    def one() -> Any:  # the notebook's loop body, verbatim but for the print
        nonlocal w1, w2  # `w1 -= ...` writes in place (and rebinds to the same array)
        h = x.dot(w1)
        h_relu = np.maximum(h, 0)
        y_pred = h_relu.dot(w2)
        loss = np.square(y_pred - y).sum()
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.T.dot(grad_y_pred)
        grad_h_relu = grad_y_pred.dot(w2.T)
        grad_h = grad_h_relu.copy()
        grad_h[h < 0] = 0
        grad_w1 = x.T.dot(grad_h)
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
        cur["loss"] = loss
        return loss

    return restartable(RAW, one, get_backend("numpy"), reset, cur)


def _torch(torch: Any, name: str = TORCH, backend: Backend | None = None) -> Built:
    """The notebook's loop with torch tensors and autograd, on the CPU or ``backend``'s device."""
    device = "cpu" if backend is None else backend.device
    xh, yh = notebook_data()
    w1_0, w2_0 = notebook_weights()
    x, y = torch.from_numpy(xh).to(device), torch.from_numpy(yh).to(device)
    w1 = torch.tensor(w1_0, requires_grad=True, device=device)
    w2 = torch.tensor(w2_0, requires_grad=True, device=device)
    cur: dict[str, Any] = {}

    def reset() -> None:
        with torch.no_grad():
            w1.copy_(torch.from_numpy(w1_0))
            w2.copy_(torch.from_numpy(w2_0))

    def one() -> Any:  # clamp(min=0) passes the gradient at 0, like the notebook's grad_h[h < 0] = 0
        nonlocal w1, w2
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with torch.no_grad():
            w1 -= LR * w1.grad
            w2 -= LR * w2.grad
        w1.grad = None
        w2.grad = None
        cur["loss"] = loss.detach()
        return cur["loss"]

    return restartable(name, one, backend, reset, cur)


def _jax_parts(jax: Any) -> tuple[Any, Any, list[Any], Callable[..., Any]]:
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # the notebook is float64
    cpu = jax.devices("cpu")[0]
    xh, yh = notebook_data()
    x, y = jax.device_put(xh, cpu), jax.device_put(yh, cpu)
    w0 = [jax.device_put(w, cpu) for w in notebook_weights()]

    def loss_fn(w: list[Any], x: Any, y: Any) -> Any:
        h = x @ w[0]
        # where, not maximum: the gradient passes at h == 0 as in the notebook (maximum would halve it)
        h_relu = jnp.where(h < 0, 0.0, h)
        d = h_relu @ w[1] - y
        return jnp.sum(d * d)

    def train(w: list[Any]) -> tuple[list[Any], Any]:
        loss, g = jax.value_and_grad(loss_fn)(w, x, y)
        return [w[0] - LR * g[0], w[1] - LR * g[1]], loss

    return x, y, w0, train


def _jax_step(jax: Any) -> Built:
    _, _, w0, train = _jax_parts(jax)
    jitted = jax.jit(train)
    cur: dict[str, Any] = {}

    def reset() -> None:
        cur["w"] = w0

    def one() -> Any:
        cur["w"], cur["loss"] = jitted(cur["w"])
        return cur["w"], cur["loss"]

    return restartable(JAX, one, None, reset, cur)


def _jax_loop(jax: Any) -> Built:
    _, _, w0, train = _jax_parts(jax)

    @jax.jit
    def run_all(w: list[Any]) -> tuple[list[Any], Any]:
        def body(i: Any, carry: tuple[list[Any], Any]) -> tuple[list[Any], Any]:
            return train(carry[0])

        return jax.lax.fori_loop(0, STEPS, body, (w, jax.numpy.zeros((), w[0].dtype)))  # type: ignore[no-any-return]

    cur: dict[str, Any] = {}

    def reset() -> None:
        cur["w"] = w0

    def one() -> Any:  # always from the notebook's weights: every call is the same 500-step run
        w, cur["loss"] = run_all(w0)
        return w, cur["loss"]

    return _whole_run(Candidate(JAX_LOOP, one, None, reset, units=STEPS), cur)


def _pnn_fit_jax() -> Built:
    """``pnn.fit`` on JAX, 500 full-batch epochs without shuffling: the notebook's run as one compiled loop."""
    be = get_backend("jax")
    prob = make_problem("seed", "numpy")
    params, (x, y) = to_backend((prob.params, prob.batches[0]), be)
    cur: dict[str, Any] = {}

    def one() -> Any:  # always from the notebook's weights: every call is the same 500-step run
        p, history = fit(prob.model, params, x, y, loss=prob.loss, optimizer=prob.optimizer, epochs=STEPS,
                         batch_size=x.shape[0], shuffle=False, progress=False)
        cur["loss"] = history["loss"][-1]  # the loss of step 500, before its update
        return p

    return _whole_run(Candidate(FIT_JAX, one, be, units=STEPS), cur)


def _whole_run(candidate: Candidate, cur: dict[str, Any]) -> Built:
    """A candidate whose every call is the notebook's whole run from its weights: the loss after
    :data:`STEPS` steps is one call's."""

    def loss_after(k: int) -> float:
        if k != STEPS:
            raise ValueError(f"{candidate.name} runs the notebook's {STEPS} steps per call, not {k}.")
        candidate.step()
        return float(cur["loss"])

    return Built(candidate, loss_after)


def run(config: Config) -> CaseResult:
    """Microseconds per step of the six candidates; targets: <= 1.3x the notebook loop, >= 10x torch."""
    result = CaseResult(
        KEY, "the notebook: 3-2-1 ReLU net, 4 rows, float64, SSE, SGD(lr=0.01), time per step"
    )
    found = rivals(config, result, torch=TORCH, jax=f"{JAX}, {JAX_LOOP}", cuda=TORCH_CUDA)
    torch, jax, torch_name = found.torch, found.jax, found.torch_name
    makers: list[tuple[str, Callable[[], Built]]] = [
        (API, _pnn_api),
        (COMPILED, _pnn_compiled),
        (RAW, _numpy_notebook),
    ]
    if torch is not None:
        makers.append((torch_name, partial(_torch, torch, torch_name)))
    if jax is not None:
        makers += [(JAX, partial(_jax_step, jax)), (JAX_LOOP, partial(_jax_loop, jax)), (FIT_JAX, _pnn_fit_jax)]
    makers += [(label, partial(_pnn_compiled, label, be)) for label, be in found.devices.items()]
    if found.cuda is not None:
        makers.append((TORCH_CUDA, partial(_torch, torch, TORCH_CUDA, found.cuda)))
    timings, losses = time_checked(makers, config, result, desc="b: notebook", check_steps=STEPS)
    t_api = timings[API].median if API in timings else None
    for name, timing in timings.items():
        result.rows.append(
            timing_row(
                name,
                timing,
                us_per_step=timing.median * 1e6,
                ratio=ratio(timing.median, t_api),
                loss_check=losses.get(name),
                loss_dev=relative_dev(losses.get(name), losses.get(API)),
            )
        )
    result.columns = [
        Column("candidate", "name"),
        Column("us/step", "us_per_step", "float"),
        Column("spread", "spread", "pct"),
        Column("vs portable_nn", "ratio", "ratio"),
        Column(f"loss@{STEPS}", "loss_check", "float"),
    ]
    result.targets = [
        speed_target(timings, "portable_nn at most 1.3x the raw NumPy loop", "t(portable_nn)/t(numpy loop)",
                     API, RAW, "<=", 1.3),
        speed_target(timings, "portable_nn >= 10x faster than PyTorch autograd", "t(torch)/t(portable_nn)",
                     torch_name, API, ">=", 10.0),
        speed_target(timings, "compile_step at most 1.3x the raw NumPy loop", "t(compile_step)/t(numpy loop)",
                     COMPILED, RAW, "<=", 1.3),
        speed_target(timings, "compile_step >= 10x faster than PyTorch autograd", "t(torch)/t(compile_step)",
                     torch_name, COMPILED, ">=", 10.0),
        *(  # pnn.fit on JAX: the whole run compiled (only where JAX ran)
            (
                speed_target(timings, "pnn.fit on JAX at most 1.3x the raw NumPy loop",
                             "t(fit on jax)/t(numpy loop)", FIT_JAX, RAW, "<=", 1.3),
                speed_target(timings, "pnn.fit on JAX >= 10x faster than PyTorch autograd",
                             "t(torch)/t(fit on jax)", torch_name, FIT_JAX, ">=", 10.0),
            )
            if FIT_JAX in timings
            else ()
        ),
        *(  # the GPU goal, one per --device-backend: 'not run' where it or torch's CUDA did not run
            speed_target(timings, goal, name, TORCH_CUDA, on, ">=", 2.0)
            for on, goal, name in device_speedup_goals(config)
        ),
    ]
    result.note_agreement(f"the notebook's {STEPS} steps", 1e-6)
    result.settings = {
        "ratio": "median time / median time of portable_nn (apply/loss/backprop/step)",
        "dtype": "float64",
        "lr": LR,
        "check_steps": STEPS,
    }
    return result
