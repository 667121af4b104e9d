"""Issue #21 items 1, 2 and 8: a checkpoint path that cannot be written is refused before any step; resume
refuses a run whose validation data or min_delta differ; fit's entry checks name the user's data, not a probe."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn

SCE = pnn.losses.softmax_cross_entropy


def _data(n: int = 10, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 2, n)


class _Counting:
    """A loss that counts the training steps it served (batches of more than one row)."""

    def __init__(self) -> None:
        self.steps = 0
        self.__name__ = "softmax_cross_entropy"

    def __call__(self, Y: Any, T: Any) -> Any:
        self.steps += Y.shape[0] > 1
        return SCE(Y, T)


@pytest.mark.parametrize("where", ["missing folder", "parent is a file", "a folder"])
def test_an_unwritable_checkpoint_path_is_refused_before_any_step(tb: Any, tmp_path: Any, where: str) -> None:
    X, y = _data()
    model = pnn.Sequential(pnn.Linear(4, 2))
    params = tb.init(model)
    (tmp_path / "file").write_text("not a folder")
    path = {"missing folder": tmp_path / "missing_dir" / "run.safetensors",
            "parent is a file": tmp_path / "file" / "run.safetensors",
            "a folder": tmp_path}[where]
    loss = _Counting()
    with pytest.raises(ValueError, match=r"checkpoint=.*cannot be used: .*Nothing was trained") as info:
        pnn.fit(model, params, X, y, loss=loss, optimizer=pnn.optim.SGD(0.1), epochs=2, batch_size=4,
                checkpoint=path, progress=False)
    assert loss.steps == 0
    assert {"missing folder": "does not exist", "parent is a file": "is a file, not a folder",
            "a folder": "it is a folder"}[where] in str(info.value)
    assert not (tmp_path / "missing_dir").exists() and (tmp_path / "file").read_text() == "not a folder"


def test_a_folder_without_write_permission_is_refused_before_any_step(tb: Any, tmp_path: Any,
                                                                      request: Any) -> None:
    if tb.spec != "numpy":
        pytest.skip("the permission check is backend-free: the numpy session runs it")
    folder = tmp_path / "read_only"
    folder.mkdir()
    X, y = _data()
    model = pnn.Sequential(pnn.Linear(4, 2))
    params = tb.init(model)

    def attempt() -> str:
        try:
            pnn.fit(model, params, X, y, loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1,
                    checkpoint=folder / "run.safetensors", progress=False)
        except ValueError as e:
            return str(e)
        return ""

    if os.geteuid() == 0:  # root writes anywhere: check in a forked child that drops to nobody (everything
        # it runs is imported already), in a folder only root may write to, on a path nobody can walk
        folder = Path(tempfile.mkdtemp(prefix="pnn-read-only-", dir="/tmp"))
        os.chmod(folder, 0o755)
        request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(write, attempt().encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            message = pipe.read()
        os.waitpid(pid, 0)
    else:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            message = attempt()
        finally:
            folder.chmod(stat.S_IRWXU)
    assert "checkpoint=" in message and "no new file can be written" in message and "Permission denied" in message
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("change", ["other validation data", "validation data added", "min_delta"])
def test_resume_refuses_other_validation_data_or_min_delta_and_leaves_the_file(tb: Any, tmp_path: Any,
                                                                                change: str) -> None:
    X, y = _data(32)
    Xv, yv = _data(8, seed=1)
    model = pnn.Sequential(pnn.Linear(4, 2))
    params = tb.init(model)
    path = tmp_path / "run.safetensors"
    kw: dict[str, Any] = dict(loss=SCE, optimizer=pnn.optim.SGD(0.1), batch_size=8, progress=False, checkpoint=path,
                              patience=3)
    first = {} if change == "validation data added" else {"validation_data": (Xv, yv)}
    pnn.fit(model, params, X, y, epochs=2, **first, **kw)
    before = path.read_bytes()
    again = {"other validation data": {"validation_data": (Xv * 2, yv)},
             "validation data added": {"validation_data": (Xv, yv)},
             "min_delta": {"validation_data": (Xv, yv), "min_delta": 0.5}}[change]
    said = "with other settings: min_delta=0.0 in the file, 0.5 in this run" if change == "min_delta" else \
        "for another validation_data"
    with pytest.raises(pnn.CheckpointError, match=f"written {said}"):
        pnn.fit(model, params, X, y, epochs=4, resume=True, **again, **kw)
    assert path.read_bytes() == before


def test_entry_errors_name_the_users_data_and_the_models_output(tb: Any) -> None:
    X, _ = _data(10)
    model = pnn.Sequential(pnn.Linear(4, 1))
    params = tb.init(model)
    Y2 = np.zeros((10, 2), dtype=tb.float)
    with pytest.raises(ValueError) as info:
        pnn.fit(model, params, X, Y2, loss=pnn.losses.mean_squared_error, optimizer=pnn.optim.SGD(0.1),
                epochs=1, progress=False)
    message = str(info.value)
    assert "Y (shape (10, 2)" in message and "the model's output (shape (10, 1)" in message
    assert "(1, 1)" not in message and "(1, 2)" not in message
    with pytest.raises(ValueError) as info:
        pnn.fit(pnn.Sequential(pnn.Linear(5, 2)), tb.init(pnn.Sequential(pnn.Linear(5, 2))), X, _data(10)[1],
                loss=SCE, optimizer=pnn.optim.SGD(0.1), epochs=1, progress=False)
    message = str(info.value)
    assert "cannot take X (shape (10, 4)" in message and "got shape (10, 4)" in message
    assert "(1, 4)" not in message
