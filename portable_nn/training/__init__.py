"""Training: fit, predict, evaluate and one compiled or portable step.

One engine: ``fit`` checks its arguments into one settings object
(``_settings``), picks a data source (``_source``: in memory; ``_dask_data``:
Dask blocks) and the epoch driver (``_driver``) runs epochs through one small
runner interface (``_epoch``: the portable steps; ``_scan``: JAX's compiled
epochs; ``_allreduce``, ``_cluster``: a Dask cluster's workers), owning the history,
validation, early stopping, callbacks, checkpoints (``_checkpoint``), Ctrl-C
and the NaN policy once. One step (``_step``) serves every path.

Internal API, for ``portable_nn.sklearn``, which drives the same engine (not
exported by the package's ``__all__``; it may change with the engine):
:class:`Settings` (a run's checked settings), :class:`MemorySource` (in-memory
data with optional sample weights), :class:`StepSpec` (the step's model, loss,
optimizer and penalty), :func:`train` (the epoch driver, returning an
:class:`Outcome`) and :func:`compiled` (the one compile cache).
"""

from __future__ import annotations

from .._errors import FitInterrupted
from ._driver import Outcome as Outcome  # the internal API: explicit re-exports
from ._driver import train as train
from ._evaluate import evaluate, predict
from ._fit import fit
from ._parallel import DataParallel
from ._settings import Settings as Settings
from ._source import MemorySource as MemorySource
from ._step import StepSpec as StepSpec
from ._step import TrainStep, compile_step, forward_backward
from ._step import compiled as compiled

__all__ = [
    "DataParallel", "FitInterrupted", "StepSpec", "TrainStep", "compile_step", "evaluate", "fit", "forward_backward",
    "predict",
]
