"""The PyTorch backend (``array_api_compat.torch``), CPU or CUDA; ``torch.compile`` with ``compile=True``."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from ._adapter import Adapter, no_device
from ._precision import ml_dtypes_bfloat16

__all__ = ["ADAPTER"]


class TorchAdapter(Adapter):
    """torch tensors on ``cpu`` or ``cuda[:N]``."""

    name = "torch"
    module = "torch"
    install_hint = "pip install 'portable_nn[torch]' (pins torch==2.13.0)"
    compiler = "torch.compile"

    def resolve(self, device: str | None) -> tuple[Any, Any]:
        lib = self.load()
        import array_api_compat.torch as torch_xp

        try:
            tdev: Any = lib.device(device or "cpu")
        except (RuntimeError, ValueError, TypeError):
            no_device(self.name, str(device), ["cpu", "cuda", "cuda:<index>"])
        if tdev.type == "cuda":
            count = lib.cuda.device_count() if lib.cuda.is_available() else 0
            if (tdev.index or 0) >= count:
                no_device(self.name, str(tdev), ["cpu"] + [f"cuda:{i}" for i in range(count)])
        elif tdev.type != "cpu":
            no_device(self.name, str(tdev), ["cpu", "cuda"])
        return torch_xp, tdev

    def owns(self, a: Any) -> bool:
        return bool(array_api_compat.is_torch_array(a))

    def to_numpy(self, a: Any) -> np.ndarray:
        import torch

        host = a.detach().cpu()
        if host.dtype == torch.bfloat16:  # torch's .numpy() refuses it: as ml_dtypes' bfloat16, bit for bit
            try:
                bf16 = ml_dtypes_bfloat16()
            except LookupError as e:
                raise TypeError(f"to_numpy: a torch.bfloat16 tensor needs a NumPy bfloat16: {e}.") from None
            return host.view(torch.int16).numpy().view(bf16)  # type: ignore[no-any-return]
        return host.numpy()  # type: ignore[no-any-return]

    def is_traced(self, a: Any) -> bool:
        import torch

        return bool(torch.compiler.is_compiling())

    def is_gpu(self, device: Any) -> bool:
        return bool(device.type == "cuda")

    def synchronize(self, device: Any, arrays: tuple[Any, ...]) -> None:
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)

    def describe_device(self, device: Any) -> str:
        if device.type == "cuda":
            import torch

            return f"{device} ({torch.cuda.get_device_name(device)})"
        return str(device)

    @contextlib.contextmanager
    def parity_precision(self, device: Any) -> Iterator[None]:
        import torch

        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``torch.compile(fn)``, quiet about array_api_compat's lru_caches that Dynamo traces through."""
        import torch

        compiled = torch.compile(fn)

        def call(*args: Any) -> Any:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
                return compiled(*args)

        return call


ADAPTER = TorchAdapter()
