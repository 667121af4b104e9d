"""Optimizers as pure ``init``/``step`` pairs over pytrees (optax style).

``state = opt.init(params)``; ``params, state = opt.step(params, grads, state)``.
``step`` is ``update`` then an add: ``updates, state = opt.update(grads, state,
params)`` gives the change ``-lr * direction`` as new arrays, and the new params
are ``p + updates``, bit for bit ``p - lr * direction``. ``step`` adds into the
updates it just made, so it is functional (it works on immutable JAX arrays and
never writes into arrays the caller holds); :func:`apply_updates` does the add
for an ``update`` of your own.

``step`` and ``update`` check each state leaf against its param as they use
it (array type, dtype, device: attribute reads, no host sync) and raise,
naming the leaf, for a state made for other params: another dtype would
silently promote the params, another library or device fail obscurely or mix.

Every optimizer takes ``lr`` as a float or as a :mod:`portable_nn.schedules`
schedule of the state's ``count`` (the steps taken). A step's learning rate
is ``schedule(count) * lr_scale`` (or ``lr * lr_scale``); ``lr_scale``, 1.0 in a
new state, is for a training loop to change between steps, e.g. on a plateau:
``state = state._replace(lr_scale=0.1)``. ``count`` and ``lr_scale`` are Python
numbers, or 0-d arrays (traced ones in a compiled loop: they are only ever
computed with, never branched on). ``opt.learning_rate(state)`` is the
learning rate of the next step, as a Python float.

Every optimizer also clips the gradients first when given ``clip_value``
(each element to ``[-v, v]``) or ``clip_norm`` (the global norm over all
leaves, torch's formula): see :func:`clip_grads`.

One module per idea, re-exported here: ``_sgd`` (:class:`SGD`), ``_adam``
(:class:`Adam`, :class:`AdamW`), ``_clip`` (:func:`clip_grads`),
``_loss_scale`` (:class:`DynamicLossScale`, for float16 training), ``_base``
(what every optimizer shares, :func:`apply_updates`), ``_checks`` (the input
and state checks).
"""

from __future__ import annotations

from ._adam import Adam, AdamState, AdamW
from ._base import apply_updates
from ._clip import clip_grads
from ._loss_scale import DynamicLossScale, LossScaleState
from ._sgd import SGD, SGDState

__all__ = [
    "SGD",
    "SGDState",
    "Adam",
    "AdamW",
    "AdamState",
    "DynamicLossScale",
    "LossScaleState",
    "apply_updates",
    "clip_grads",
]
