"""scikit-learn estimators trained by portable_nn (needs ``pip install 'portable_nn[sklearn]'``).

- :class:`MLPClassifier`, :class:`MLPRegressor`: scikit-learn's MLP estimators
  with its parameter names, defaults and training rules (``solver`` "adam" or
  "sgd"), plus ``backend`` and ``dtype``;
- :class:`NeuralNetClassifier`, :class:`NeuralNetRegressor`: any portable_nn
  model (a CNN, a layer of your own) with its loss and optimizer;
- :func:`save` / :func:`load` (also ``est.save(path)`` and ``Class.load(path)``):
  safetensors for the arrays plus a JSON file, never pickle. (The estimators
  also pickle, as scikit-learn's do, for joblib and ``n_jobs``.)

They work in ``Pipeline``, ``GridSearchCV`` (also with ``n_jobs``),
``cross_val_score`` and ``clone``. With ``sklearn.set_config(array_api_dispatch=True)``
(which needs ``SCIPY_ARRAY_API=1`` in the environment before SciPy is
imported), torch, JAX, CuPy or array-api-strict inputs train on their own
namespace and device, and predictions come back there; without it, NumPy
goes in and NumPy comes out. ``import portable_nn`` never imports this
package or scikit-learn.
"""

from __future__ import annotations

from ._io import load, save
from ._mlp import MLPClassifier, MLPRegressor
from ._wrap import NeuralNetClassifier, NeuralNetRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor", "load", "save"]
