"""The executed gallery: sphinx-gallery runs every ``examples/*.py`` at build time, small.

Each example states the small command line the gallery runs it with in one comment,

    # gallery-args: --epochs 2 --plot {plot}

where ``{plot}`` becomes a fresh PNG path under the build folder. The example writes its
figures there (as ``--plot FILE`` does on the command line) and :func:`png_scraper` puts
them on the example's page. An example without the comment runs with its defaults. New
examples are found by glob: nothing here lists them.
"""

from __future__ import annotations

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
        return gallery_args(example, self.path_for(example))

    def scraper(self, block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
        from sphinx_gallery.scrapers import figure_rst

        stem = Path(block_vars["src_file"]).stem
        new = [p for p in sorted(self.folder.glob(f"{stem}*.png")) if p not in self.shown]
        images = []
        for png, target in zip(new, block_vars["image_path_iterator"]):
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


def setup(app: Any) -> dict[str, Any]:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
