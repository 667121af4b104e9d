"""The notebook, with the library
==============================

The teaching notebook's two-layer ReLU net, trained with portable_nn.

Same data, same initial weights (legacy ``np.random.seed(83832)`` + ``randn``),
same 500 SGD steps with lr 0.01 on the sum of squared errors, in float64. On
NumPy the printed loss table equals the notebook's, character for character. ::

    python examples/seed_tutorial.py                      # NumPy
    python examples/seed_tutorial.py --backend torch      # or jax, array_api_strict, cupy, torch:cuda
"""

from __future__ import annotations

import argparse

import numpy as np

import portable_nn as pnn
from portable_nn.tools.arguments import backend_arg, positive_int
from portable_nn.tools.problems import notebook_data, notebook_weights  # shared with `compare`

# gallery-args: --steps 500


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])  # the line under the title
    parser.add_argument(
        "--backend", type=backend_arg, default="numpy", help="numpy, torch, jax, array_api_strict, cupy, auto"
    )
    parser.add_argument("--steps", type=positive_int, default=500)
    args = parser.parse_args(argv)
    be = pnn.get_backend(args.backend)

    # The notebook's integer data, converted to float64: int @ float is not in the standard.
    x_host, y_host = notebook_data()
    x, y = be.asarray(x_host), be.asarray(y_host)

    model = pnn.Sequential(pnn.Linear(3, 2, bias=False), pnn.ReLU(), pnn.Linear(2, 1, bias=False))
    w1, w2 = notebook_weights()
    params = [{"W": be.asarray(w1)}, {}, {"W": be.asarray(w2)}]
    opt = pnn.optim.SGD(lr=0.01)
    state = opt.init(params)

    for t in range(args.steps):
        y_pred, backprop = model.apply(params, x, train=True)  # forward
        loss, grad_y_pred = pnn.losses.sum_squared_error(y_pred, y)
        print("%d %.12g" % (t, float(loss)))
        _, grads = backprop(grad_y_pred)  # backward: grads mirror params
        params, state = opt.step(params, grads, state)  # w -= lr * grad

    np.set_printoptions(precision=8)
    print(be.to_numpy(pnn.predict(model, params, x)))
    print(be.to_numpy(params[0]["W"]))
    print(be.to_numpy(params[2]["W"]))


if __name__ == "__main__":
    main()
