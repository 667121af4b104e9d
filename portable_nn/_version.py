"""The version, in one place (pyproject.toml reads it from here)."""

__version__ = "0.1.0"
"""The library's version (``portable_nn.__version__``); checkpoints record it."""
