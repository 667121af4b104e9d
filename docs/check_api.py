"""Check the built HTML: every public name has an entry in the API reference.

    python docs/check_api.py docs/_build/html

The names come from ``__all__`` of each module the reference covers (``docs/_ext/api_pages.py``'s
MODULES, and the modules among their names), imported here, so a name added to an ``__all__`` is
checked as soon as it exists. A name passes when its module's page ``api/<module>.html`` has a row
for it whose link leads to an anchor that exists in the built site (its own page,
``api/generated/<module>.<name>.html``, or the page of the object it is the same as); a module
passes when its page exists. Exit status 1 lists every name that fails.
"""

from __future__ import annotations

import html
import importlib
import re
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

from api_pages import MODULES  # noqa: E402

ROW = re.compile(r'<tr[^>]*>\s*<td><p><a class="reference internal" href="([^"]*)"[^>]*>(.*?)</a></p></td>', re.S)


def public_names() -> dict[str, list[tuple[str, object]]]:
    order, names = list(MODULES), {}
    for modname in order:
        module = importlib.import_module(modname)
        names[modname] = [(n, getattr(module, n)) for n in module.__all__]
        for _, obj in names[modname]:
            if isinstance(obj, types.ModuleType) and obj.__name__.startswith("portable_nn") and obj.__name__ not in order:
                order.append(obj.__name__)
    return names


def anchors(page: Path, cache: dict[Path, set[str]]) -> set[str]:
    if page not in cache:
        cache[page] = set(re.findall(r'id="([^"]+)"', page.read_text())) if page.is_file() else set()
    return cache[page]


def check(site: Path) -> list[str]:
    problems, cache = [], {}
    for modname, entries in public_names().items():
        page = site / "api" / f"{modname}.html"
        if not page.is_file():
            problems.append(f"{modname}: no page api/{modname}.html")
            continue
        rows = {}
        for href, label in ROW.findall(page.read_text()):
            rows[html.unescape(re.sub(r"<[^>]+>", "", label)).strip()] = href
        for name, obj in entries:
            full = f"{modname}.{name}"
            if name not in rows:
                problems.append(f"{full}: no row on api/{modname}.html")
                continue
            target, _, anchor = rows[name].partition("#")
            target_page = (page.parent / target).resolve() if target else page
            if isinstance(obj, types.ModuleType) and obj.__name__.startswith("portable_nn"):
                if not target_page.is_file():
                    problems.append(f"{full}: its module page {target} is missing")
            elif not target_page.is_file() or anchor not in anchors(target_page, cache):
                problems.append(f"{full}: links to {rows[name]}, which is not in the built site")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    problems = check(site)
    total = sum(len(v) for v in public_names().values())
    if problems:
        print(f"{len(problems)} of {total} public names have no entry in {site}:", *problems, sep="\n  ")
        return 1
    print(f"check_api: all {total} public names of {len(public_names())} modules have an entry in {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
