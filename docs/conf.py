"""Sphinx configuration of portable_nn's documentation (``nox -s docs``; see docs/README.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

import portable_nn  # noqa: E402  (after the path: the checkout's package, also without an install)

project = "portable_nn"
author = "the portable_nn authors"
copyright = "2026, the portable_nn authors"  # noqa: A001
release = version = portable_nn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "api_pages",
    "gallery_support",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md", "gallery/*.ipynb", "gallery/*.py", "gallery/*.zip", "**/*.inc"]
templates_path = ["_templates"]
html_theme = "furo"
html_title = f"portable_nn {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# --- API reference: autodoc + napoleon (the code's docstrings are Google style: Args/Returns/Raises) ---
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
# the layer-author types keep their names in signatures (they are Any to type checkers) and link to their pages
autodoc_type_aliases = {
    name: f"portable_nn.layers.base.{name}" for name in ("Array", "Params", "State", "Backprop", "Seed")
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
python_use_unqualified_type_names = True
python_maximum_signature_line_length = 90  # longer signatures: one parameter per line

# nitpicky (-n): every cross-reference must resolve, except into libraries this build has no
# inventory for (no network in CI, so no intersphinx): the standard library, NumPy, typing.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|typing|collections|types|os|pathlib|concurrent|contextlib|abc|enum|dataclasses)\b.*"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|MutableMapping|Generator|NamedTuple|TypeVar)"),
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|object|type|None|complex|slice|Ellipsis)"),
    (r"py:.*", r"(ValueError|TypeError|KeyError|RuntimeError|FloatingPointError|KeyboardInterrupt|Exception|"
               r"ModuleNotFoundError|ImportError|OSError|FileNotFoundError|RuntimeWarning|DeprecationWarning)"),
    (r"py:.*", r"(sklearn|distributed|dask|jax|torch|cupy|array_api_strict|array_api_compat|matplotlib)\b.*"),
    # private helpers that public signatures mention (a loss's protocol, fit's callback protocol, the
    # optimizers' shared base): not part of the reference, so not link targets
    (r"py:.*", r"portable_nn(\.\w+)*\._\w+(\.\w+)*"),
]

# Sphinx shows an autodoc_type_aliases name nested in a generic as "TypeAliasForwardRef('...')"
# (tuple[Array, Backprop]); its name alone is what the python domain turns into a link.
from sphinx.util.inspect import TypeAliasForwardRef  # noqa: E402

TypeAliasForwardRef.__repr__ = lambda self: self.name  # type: ignore[method-assign]

# --- Markdown pages (MyST): plain CommonMark plus tables, so the pages read the same on GitHub ---
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# --- the executed gallery: every script in examples/, run at a small size (see _ext/gallery_support.py) ---
from gallery_support import gallery_conf  # noqa: E402

sphinx_gallery_conf = gallery_conf(ROOT / "examples", DOCS)

# the Dask example's LocalCluster logs every worker's start and stop at INFO into the build's log; Dask
# reads this when it is first imported (its workers inherit the environment)
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

suppress_warnings = ["config.cache"]  # sphinx_gallery_conf holds functions, which Sphinx cannot pickle
