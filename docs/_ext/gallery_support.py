"""The executed gallery: sphinx-gallery runs every ``examples/*.py`` at build time, small.

Each example states the small command line the gallery runs it with in one comment,

    # gallery-args: --epochs 2 --plot {plot}

where ``{plot}`` becomes a fresh PNG path under the build folder. The example writes its
figures there (as ``--plot FILE`` does on the command line) and :func:`png_scraper` puts
them on the example's page. An example without the comment runs with its defaults. New
examples are found by glob: nothing here lists them.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

ARGS = re.compile(r"^# gallery-args:(.*)$", re.M)


def gallery_args(path: Path, plot: Path) -> list[str]:
    """The arguments an example's ``# gallery-args:`` comment asks for, ``{plot}`` filled in."""
    found = ARGS.search(path.read_text())
    if not found:
        return []
    return [arg.replace("{plot}", str(plot)) for arg in shlex.split(found.group(1))]


class _Plots:
    """Where each example's PNGs go, and which of them are already on its page."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.shown: set[Path] = set()

    def path_for(self, example: Path) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{example.stem}.png"
        path.unlink(missing_ok=True)  # a stale figure from an earlier build never shows
        self.shown.discard(path)
        return path

    def reset_argv(self, gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list[str]:
        example = Path(script_vars["src_file"])
        # sphinx-gallery runs examples with __doc__ = "" (the docstring is the page's text); the examples
        # build their --help from it, so give them their own, as `python examples/NAME.py` would
        script_vars["example_globals"]["__doc__"] = ast.get_docstring(ast.parse(example.read_text()), clean=False)
        return gallery_args(example, self.path_for(example))

    def scraper(self, block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
        from sphinx_gallery.scrapers import figure_rst

        stem = Path(block_vars["src_file"]).stem
        new = [p for p in sorted(self.folder.glob(f"{stem}*.png")) if p not in self.shown]
        images = []
        for png, target in zip(new, block_vars["image_path_iterator"], strict=False):
            shutil.copyfile(png, target)
            self.shown.add(png)
            images.append(target)
        return figure_rst(images, gallery_conf["src_dir"]) if images else ""

    def __repr__(self) -> str:  # sphinx-gallery compares configurations between builds by repr
        return f"_Plots({self.folder})"


def gallery_conf(examples: Path, docs: Path) -> dict[str, Any]:
    plots = _Plots(docs / "_build" / "gallery-plots")
    return {
        "examples_dirs": str(examples),
        "gallery_dirs": str(docs / "gallery"),
        "filename_pattern": r"\.py$",  # run every example, not only plot_*.py
        "ignore_pattern": r"__init__\.py",
        "reset_argv": plots.reset_argv,
        "image_scrapers": (plots.scraper,),
        "within_subsection_order": "FileNameSortKey",
        "download_all_examples": False,
        "remove_config_comments": True,
        "show_memory": False,
        "show_signature": False,
        "min_reported_time": 0,
        "capture_repr": (),
        "matplotlib_animations": False,
        "reference_url": {},
    }


HEADER = re.compile(r'^"""(?P<title>[^\n]+)\n(?P<rule>=+)\n\n', re.S)


def header_problems(examples: Path) -> list[str]:
    """What each example lacks for the gallery: a titled docstring and a ``# gallery-args:`` line."""
    problems = []
    for path in sorted(examples.glob("*.py")):
        text = path.read_text()
        found = HEADER.match(text)
        if found is None or len(found.group("rule")) < len(found.group("title")):
            problems.append(
                f"{path.name}: its docstring must start with a short title underlined with '=' (as long as the "
                "title), a blank line, then the one-line description (the examples give it to argparse as "
                "__doc__.split('\\n\\n')[1]), e.g. '\"\"\"A CNN on the digits\\n===================\\n\\n"
                "Train a small CNN ...'"
            )
        if not ARGS.search(text):
            problems.append(
                f"{path.name}: add a line '# gallery-args: ...' with the small command line the docs run it with "
                "(seconds, not minutes; '{plot}' stands for a PNG path if it has --plot)"
            )
    return problems


def _check_examples(app: Any) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    for problem in header_problems(Path(app.config.sphinx_gallery_conf["examples_dirs"])):
        logger.warning("examples/%s", problem)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _check_examples)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
