"""No error names a private class: Python's own argument errors name the class that defines the method,
so no public class may inherit ``__init__`` or a public method from a class whose name starts with ``_``."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import portable_nn as pnn

CALLED = ("__init__", "__call__")  # dunders a user calls with arguments


def _public_modules() -> list[str]:
    names = ["portable_nn"]
    for info in pkgutil.walk_packages(pnn.__path__, "portable_nn."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def test_no_public_class_inherits_a_method_from_a_private_class() -> None:
    bad = []
    for name in _public_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional library (cupy, distributed...) that is not installed here
            continue
        for public in getattr(module, "__all__", []):
            cls = getattr(module, public)
            if not isinstance(cls, type):
                continue
            for attr in dir(cls):
                if attr.startswith("_") and attr not in CALLED:
                    continue
                owner = next((b for b in cls.__mro__ if attr in vars(b)), None)
                if owner is not None and owner.__name__.startswith("_") and owner.__module__.startswith("portable_nn"):
                    bad.append(f"{name}.{public}.{attr} comes from {owner.__module__}.{owner.__name__}")
    assert not bad, "Python's argument errors would name a private class:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.parametrize("call, where", [
    (lambda: pnn.optim.SGD().step({}), "Optimizer.step()"),  # type: ignore[call-arg]
    (lambda: pnn.optim.AdamW().learning_rate(), "Optimizer.learning_rate()"),  # type: ignore[call-arg]
    (lambda: pnn.MaxPool2D(2, pading=1), "MaxPool2D.__init__()"),  # type: ignore[call-arg]
    (lambda: pnn.AvgPool2D(2, 2, 0, True), "AvgPool2D.__init__()"),  # type: ignore[call-arg]
])
def test_argument_errors_name_public_classes(call, where) -> None:
    with pytest.raises(TypeError) as info:
        call()
    assert str(info.value).startswith(where), str(info.value)
