"""Case c: digits end to end, the wall time of a whole training run and the test accuracy it reaches.

scikit-learn's bundled digits (standardized, 75/25 split, random_state=0), a
64-128-10 ReLU MLP, Adam lr 3e-3, batch 32, 30 epochs, reshuffled every epoch:
the recipe of ``examples/digits.py``, which reaches about 0.978. Candidates:

- portable_nn: ``pnn.fit`` on NumPy (it also tracks the training loss and accuracy);
- scikit-learn ``MLPClassifier(hidden_layer_sizes=(128,))``, adam with the
  same learning rate, batch size and epochs, no L2 penalty, no early stop;
- PyTorch: the same MLP, initial weights, optimizer and epochs, eager;
- the same MLP and Adam written by hand in NumPy;
- plain SGD (lr 0.05, the same data and batches): ``pnn.fit``, the hand-written NumPy
  loop and scikit-learn's ``solver="sgd"`` (issue #13: fit's per-step overhead where
  the update is cheapest);
- with ``--device-backend SPEC``: ``pnn.fit`` with params and data on that backend
  ("portable_nn on SPEC"), and the PyTorch trainer on CUDA when torch sees a GPU.
  Target: each >= 2x faster than PyTorch eager CUDA.

Each timed call is one whole training from the same initial weights
(scikit-learn draws its own). Test accuracy is measured after the clock
stops; a candidate below 0.97 is flagged, and a speed target that compares
two candidates counts only when both reach 0.97.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from portable_nn import Backend, Linear, ReLU, Sequential, fit, get_backend, predict, to_backend, to_numpy
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import SGD, Adam
from portable_nn.tools.problems import load_digits_data
from portable_nn.tools.timing import wait_for

from ._common import (
    Config,
    checked_values,
    device_speedup_goals,
    optional,
    ratio,
    rivals,
    run_candidates,
    speed_target,
    timing_columns,
    timing_row,
)
from ._interleaved import Candidate
from ._result import CaseResult, Column, Target

__all__ = ["ACCURACY", "EPOCHS", "KEY", "run"]

KEY = "c"
ACCURACY = 0.97
EPOCHS = {"full": 30, "quick": 30, "tiny": 1}
REPEATS = {"full": 5, "quick": 3, "tiny": 1}  # each repeat is a whole training run
LR, BATCH, HIDDEN, SEED = 3e-3, 32, 128, 0
LR_SGD = 0.05  # plain SGD (no momentum): about 0.975 after 30 epochs
B1, B2, EPS = 0.9, 0.999, 1e-8

PNN, SKLEARN, TORCH, NUMPY = "portable_nn (pnn.fit)", "sklearn MLPClassifier", "torch eager", "numpy by hand"
PNN_JAX = "portable_nn on jax (pnn.fit: compiled epochs)"
TORCH_CUDA = "torch eager (cuda)"
PNN_SGD, SKLEARN_SGD, NUMPY_SGD = "portable_nn SGD (pnn.fit)", "sklearn MLPClassifier SGD", "numpy by hand SGD"

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# a trainer: train(epochs) fits from the initial weights (returning what a timer may wait on);
# accuracy() scores the last fit on the test set
Trainer = tuple[Callable[[int], Any], Callable[[], float]]


def _model() -> tuple[Sequential, Any]:
    model = Sequential(Linear(64, HIDDEN), ReLU(), Linear(HIDDEN, 10))
    return model, model.init(seed=SEED, backend="numpy", dtype="float32")


def _pnn(data: Data, backend: Backend | None = None, sgd: bool = False) -> Trainer:
    """``pnn.fit`` on NumPy, or with the initial params and the training data moved to ``backend`` once.

    ``sgd``: plain SGD(lr=LR_SGD) instead of Adam(lr=LR).
    """
    Xtr, Xte, ytr, yte = data
    model, init = _model()
    if backend is not None:
        init, Xtr, ytr = to_backend((init, Xtr, ytr), backend)
    cur: dict[str, Any] = {}

    def train(epochs: int) -> Any:
        cur["params"], _ = fit(
            model,
            init,
            Xtr,
            ytr,
            loss=softmax_cross_entropy,
            optimizer=SGD(lr=LR_SGD) if sgd else Adam(lr=LR),
            epochs=epochs,
            batch_size=BATCH,
            seed=SEED,
            progress=False,
        )
        return cur["params"]

    def accuracy() -> float:
        return float(np.mean(np.argmax(to_numpy(predict(model, cur["params"], Xte)), axis=1) == yte))

    return train, accuracy


def _numpy(data: Data, sgd: bool = False) -> Trainer:
    Xtr, Xte, ytr, yte = data
    _, params = _model()
    init = [params[0]["W"], params[0]["b"], params[2]["W"], params[2]["b"]]
    n = Xtr.shape[0]
    cur: dict[str, Any] = {}

    def grads(p: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        W1, b1, W2, b2 = p
        N = X.shape[0]
        Z1 = X @ W1 + b1
        H = np.maximum(Z1, 0)
        Z = H @ W2 + b2
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        dZ = E / E.sum(axis=1, keepdims=True)
        dZ[np.arange(N), y] -= 1
        dZ /= N
        dH = np.where(Z1 < 0, 0, dZ @ W2.T)
        return [X.T @ dH, dH.sum(axis=0), H.T @ dZ, dZ.sum(axis=0)]

    def train(epochs: int) -> None:
        rng = np.random.default_rng(SEED)
        p = list(init)
        m = [np.zeros_like(w) for w in p]
        v = [np.zeros_like(w) for w in p]
        t = 0
        for _ in range(epochs):
            order = rng.permutation(n)
            for i in range(0, n, BATCH):
                idx = order[i : i + BATCH]
                g = grads(p, Xtr[idx], ytr[idx])
                if sgd:
                    p = [w - LR_SGD * gi for w, gi in zip(p, g, strict=True)]
                    continue
                t += 1
                c1, c2 = 1.0 - B1**t, 1.0 - B2**t
                m = [B1 * mi + (1.0 - B1) * gi for mi, gi in zip(m, g, strict=True)]
                v = [B2 * vi + (1.0 - B2) * (gi * gi) for vi, gi in zip(v, g, strict=True)]
                p = [w - LR * (mi / c1) / (np.sqrt(vi / c2) + EPS) for w, mi, vi in zip(p, m, v, strict=True)]
        cur["p"] = p

    def accuracy() -> float:
        W1, b1, W2, b2 = cur["p"]
        return float(np.mean(np.argmax(np.maximum(Xte @ W1 + b1, 0) @ W2 + b2, axis=1) == yte))

    return train, accuracy


def _torch(data: Data, torch: Any, backend: Backend | None = None) -> Trainer:
    """The same MLP with ``torch.optim.Adam``, eager, on the CPU or ``backend``'s device."""
    device = "cpu" if backend is None else backend.device
    Xtr, Xte, ytr, yte = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in data)
    _, params = _model()
    n = Xtr.shape[0]
    model = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    model.to(device)
    linears = [model[0], model[2]]
    cross_entropy = torch.nn.functional.cross_entropy

    def train(epochs: int) -> None:
        with torch.no_grad():
            for lin, p in zip(linears, (params[0], params[2]), strict=True):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(p["W"].T)))
                lin.bias.copy_(torch.from_numpy(p["b"]))
        opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(B1, B2), eps=EPS)
        gen = torch.Generator().manual_seed(SEED)
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(device)
            for i in range(0, n, BATCH):
                idx = order[i : i + BATCH]
                opt.zero_grad(set_to_none=True)
                loss = cross_entropy(model(Xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(Xte).argmax(dim=1) == yte).double().mean())

    return train, accuracy


def _sklearn(data: Data, sklearn: Any, sgd: bool = False) -> Trainer:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    Xtr, Xte, ytr, yte = data
    cur: dict[str, Any] = {}

    def train(epochs: int) -> None:
        clf = MLPClassifier(
            hidden_layer_sizes=(HIDDEN,),
            activation="relu",
            solver="sgd" if sgd else "adam",
            momentum=0.0,  # sgd: plain SGD, as the others
            nesterovs_momentum=False,
            alpha=0.0,
            batch_size=BATCH,
            learning_rate_init=LR_SGD if sgd else LR,
            beta_1=B1,
            beta_2=B2,
            epsilon=EPS,
            max_iter=epochs,
            shuffle=True,
            random_state=SEED,
            tol=0.0,
            n_iter_no_change=epochs + 1,  # run every epoch, as the others do
            early_stopping=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cur["clf"] = clf.fit(Xtr, ytr)

    def accuracy() -> float:
        return float(np.mean(cur["clf"].predict(Xte) == yte))

    return train, accuracy


def run(config: Config) -> CaseResult:
    """Time whole training runs; targets: >= 3x faster than scikit-learn and torch, <= 1.1x hand-written NumPy."""
    epochs = EPOCHS[config.profile]
    result = CaseResult(
        KEY,
        f"digits end to end: MLP 64-{HIDDEN}-10, Adam(lr={LR}), batch {BATCH}, {epochs} epochs, float32; "
        f"wall time of one training run, test accuracy >= {ACCURACY}",
    )
    sklearn = optional("sklearn", config, result, SKLEARN)
    found = rivals(config, result, torch=TORCH, jax=PNN_JAX, cuda=TORCH_CUDA)
    torch, jax, devices, cuda, torch_name = found.torch, found.jax, found.devices, found.cuda, found.torch_name
    Xtr, Xte, ytr, yte = load_digits_data()
    data: Data = (Xtr.astype(np.float32), Xte.astype(np.float32), ytr, yte)
    makers: list[tuple[str, Callable[[], Trainer]]] = [
        (PNN, lambda: _pnn(data)),
        (NUMPY, lambda: _numpy(data)),
        (PNN_SGD, lambda: _pnn(data, sgd=True)),
        (NUMPY_SGD, lambda: _numpy(data, sgd=True)),
    ]
    if sklearn is not None:
        makers += [(SKLEARN, lambda: _sklearn(data, sklearn)), (SKLEARN_SGD, lambda: _sklearn(data, sklearn, True))]
    if torch is not None:
        makers.append((torch_name, lambda: _torch(data, torch)))
    if jax is not None:  # fit's whole-epoch lax.scan path, on the CPU
        devices = {PNN_JAX: get_backend("jax"), **devices}
    makers += [(label, partial(_pnn, data, be)) for label, be in devices.items()]
    if cuda is not None:
        makers.append((TORCH_CUDA, lambda: _torch(data, torch, cuda)))
    scorers: dict[str, Callable[[], float]] = {}
    # the backend each candidate's timer synchronizes: its device's, NumPy's for the CPU ones
    backends = {**devices, TORCH_CUDA: cuda}

    def keep(name: str, make: Callable[[], Trainer]) -> tuple[str, Callable[[], Candidate]]:
        be = backends.get(name) or get_backend("numpy")

        def build() -> Candidate:
            train, scorers[name] = make()
            if name != PNN_JAX:
                return Candidate(name, lambda: train(epochs), be, warmup=lambda: train(1))

            def compile_run() -> None:  # JAX compiles the loop per epoch count: warm up with a whole run
                t0 = time.perf_counter()
                wait_for(be, train(epochs))
                first_call.append(time.perf_counter() - t0)

            return Candidate(name, lambda: train(epochs), be, warmup=compile_run)

        return name, build

    first_call: list[float] = []  # PNN_JAX's first run, compile included
    repeats = config.case_repeats(REPEATS)
    timings = run_candidates(
        [keep(n, m) for n, m in makers],
        config,
        result,
        desc="c: digits",
        calls=1,
        repeats=repeats,
        warmup=1,
        warmup_s=0.0,
    )
    acc = checked_values(scorers, timings, result, "accuracy")
    t_pnn = timings[PNN].median if PNN in timings else None
    for name, timing in timings.items():
        a = acc.get(name)
        flag = None if a is None else ("yes" if a >= ACCURACY else f"NO (< {ACCURACY})")
        result.rows.append(
            timing_row(
                name, timing, ratio=ratio(timing.median, t_pnn), accuracy=a, reached=flag, epochs=epochs
            )
        )
    result.columns = [
        *timing_columns("run"),
        Column("vs portable_nn", "ratio", "ratio"),
        Column("test acc", "accuracy", "acc"),
        Column(f">= {ACCURACY}", "reached", "str"),
    ]

    def target(goal: str, ratio_name: str, num: str, den: str, op: str, bound: float) -> Target:
        low = [n for n in (num, den) if n in acc and acc[n] < ACCURACY]
        note = f"not at the same accuracy: {', '.join(low)} below {ACCURACY}" if low else ""
        return speed_target(timings, goal, ratio_name, num, den, op, bound, note=note, valid=not low)

    result.targets = [
        *(  # the CPU goals for portable_nn on NumPy, and on JAX (fit's compiled epochs) when it ran
            t
            for who, name in (("portable_nn", PNN), ("portable_nn on JAX", PNN_JAX))
            if name == PNN or name in timings
            for t in (
                target(f"{who} >= 3x faster than sklearn MLPClassifier", f"t(sklearn)/t({who})",
                       SKLEARN, name, ">=", 3.0),
                target(f"{who} >= 3x faster than PyTorch", f"t(torch)/t({who})", torch_name, name, ">=", 3.0),
                target(f"{who} within 1.1x of hand-written NumPy", f"t({who})/t(numpy by hand)",
                       name, NUMPY, "<=", 1.1),
            )
        ),
        *(  # issue #13: fit's per-step overhead on NumPy, with Adam and with plain SGD
            target(f"{who} within 1.3x of hand-written NumPy ({opt}, #13)", f"t({who})/t({hand})", who, hand, "<=", 1.3)
            for who, hand, opt in ((PNN, NUMPY, "Adam"), (PNN_SGD, NUMPY_SGD, "SGD"))
        ),
        *(
            target(f"{who} >= 1.7x faster than {skl} (#13)", f"t({skl})/t({who})", skl, who, ">=", 1.7)
            for who, skl in ((PNN, SKLEARN), (PNN_SGD, SKLEARN_SGD))
        ),
        *(  # the GPU goal, one per --device-backend: 'not run' where it or torch's CUDA did not run
            target(goal, name, TORCH_CUDA, on, ">=", 2.0) for on, goal, name in device_speedup_goals(config)
        ),
    ]
    flagged = [n for n, a in acc.items() if a < ACCURACY]
    if flagged:
        result.notes.append(f"below {ACCURACY} test accuracy after {epochs} epochs: {', '.join(flagged)}")
    result.notes.append(
        "portable_nn's fit also computes the training loss and accuracy of every batch (one host sync per step)"
    )
    if first_call:
        result.notes.append(
            f"{PNN_JAX}: timed after a warm-up run; its first run, which compiles the {epochs}-epoch loop "
            f"(once per process, model, loss, optimizer settings and shapes), took {first_call[0]:.2f} s"
        )
    result.settings = {
        "ratio": "median run time / median run time of portable_nn (pnn.fit)",
        "repeats": repeats,
        "epochs": epochs,
        "batch": BATCH,
        "hidden": HIDDEN,
        "lr": LR,
        "accuracy_goal": ACCURACY,
        "train_rows": int(Xtr.shape[0]),
        "test_rows": int(Xte.shape[0]),
    }
    return result
