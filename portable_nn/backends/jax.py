"""The JAX backend (``jax.numpy``, float64 enabled), CPU or GPU; ``compile=None`` jits with ``jax.jit``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from ._adapter import Adapter, no_device

__all__ = ["ADAPTER"]


class JaxAdapter(Adapter):
    """JAX arrays on ``cpu`` or ``gpu[:N]`` (``cuda[:N]`` accepted)."""

    name = "jax"
    module = "jax"
    install_hint = "pip install 'portable_nn[jax]' (CPU; 'jax[cuda12]' for a GPU)"
    compiler = "jax.jit"
    jit_by_default = True

    def resolve(self, device: str | None) -> tuple[Any, Any]:
        lib = self.load()
        lib.config.update("jax_enable_x64", True)  # float64 is needed for parity runs
        import jax.numpy as jnp

        platform, _, index = (device or "cpu").partition(":")
        try:
            devices = lib.devices("gpu" if platform == "cuda" else platform)
        except RuntimeError:
            devices = []
        if not (index or "0").isdigit() or int(index or 0) >= len(devices):
            no_device(self.name, device or "cpu", [str(d) for d in lib.devices()])
        return jnp, devices[int(index or 0)]

    def owns(self, a: Any) -> bool:
        return bool(array_api_compat.is_jax_array(a))

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def is_traced(self, a: Any) -> bool:
        import jax

        return isinstance(a, jax.core.Tracer)

    def is_gpu(self, device: Any) -> bool:
        return bool(device.platform in ("gpu", "cuda", "rocm"))

    def synchronize(self, device: Any, arrays: tuple[Any, ...]) -> None:
        if arrays:
            import jax

            jax.block_until_ready(arrays)

    def device_label(self, device: Any) -> str:
        return f"{device.platform}:{device.id}"

    def describe_device(self, device: Any) -> str:
        label = self.device_label(device)
        return f"{label} ({device.device_kind})" if self.is_gpu(device) else label

    @contextlib.contextmanager
    def parity_precision(self, device: Any) -> Iterator[None]:
        import jax

        with jax.default_matmul_precision("highest"):
            yield

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        import jax

        return jax.jit(fn)  # type: ignore[no-any-return]

    def probe_precision(self, xp: Any, dtype: Any, device: Any) -> str | None:
        """Probed eagerly also when first asked inside ``jax.jit`` (a traced probe cannot be read)."""
        import jax

        with jax.ensure_compile_time_eval():
            return super().probe_precision(xp, dtype, device)


ADAPTER = JaxAdapter()
