"""Write the API reference's pages from the public modules' ``__all__`` before Sphinx reads its sources.

Every name in the ``__all__`` of each module in :data:`MODULES` gets one page
(``api/generated/<module>.<name>.rst``) documenting it with autodoc, and every
module a page (``api/<module>.rst``) with a table of its names grouped by kind. A
name that is the same object as one already documented (``portable_nn.io.save`` is
``portable_nn.save``) gets a row in its module's table that links to that page.
Nothing is listed by hand: a name added to an ``__all__`` gets its page at the next
build, and ``docs/check_api.py`` checks the built HTML against the same lists.

Files are rewritten only when their text changes, so incremental builds stay incremental.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The modules whose public names the reference documents, in order: a name is documented under the
# first module that exports it. A module that is itself a public name (portable_nn.layers) gets a page too.
MODULES = [
    "portable_nn",
    "portable_nn.optim",
    "portable_nn.losses",
    "portable_nn.schedules",
    "portable_nn.generation",
    "portable_nn.layers.base",
    "portable_nn.testing",
    "portable_nn.io",
    "portable_nn.backends",
    "portable_nn.sklearn",
    "portable_nn.tools.compare",
    "portable_nn.tools.problems",
    "portable_nn.tools.timing",
]

# Section titles for the names of portable_nn, by the (sub)module that defines them; first match wins.
SECTIONS = [
    ("portable_nn.layers", "Layers"),
    ("portable_nn.training", "Training"),
    ("portable_nn.generation", "Generation"),
    ("portable_nn.optim", "Optimizers"),
    ("portable_nn.backends", "Backends and devices"),
    ("portable_nn.io", "Saving and loading"),
    ("portable_nn.testing", "Testing"),
    ("portable_nn._tree", "Pytrees and random numbers"),
    ("portable_nn._rng", "Pytrees and random numbers"),
]
KIND_TITLES = {
    "module": "Modules",
    "type": "Types",
    "error": "Errors",
    "layer": "Layers",
    "class": "Classes",
    "function": "Functions",
    "data": "Types and constants",
}


@dataclass
class Entry:
    module: str  # the module whose __all__ lists it
    name: str
    obj: Any
    kind: str  # module, type, error, layer, class, function, data
    target: str  # the documented name it links to: module.name, or an earlier module's name, or a module

    @property
    def fullname(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def is_alias(self) -> bool:
        return self.kind != "module" and self.target != self.fullname


def is_type_alias(obj: Any) -> bool:
    """``Array = Any``, ``Seed = int | Generator | None``, ``Backprop = Callable[...]``: a name for a type."""
    return obj is typing.Any or isinstance(obj, (types.UnionType, types.GenericAlias)) or (
        type(obj).__module__ == "typing" and hasattr(obj, "__origin__")
    )


def kind_of(obj: Any) -> str:
    from portable_nn.layers.base import Layer

    if is_type_alias(obj):
        return "type"
    if isinstance(obj, types.ModuleType):
        return "module" if obj.__name__.startswith("portable_nn") else "data"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "error"
        if issubclass(obj, Layer):
            return "layer"
        return "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or isinstance(obj, types.MethodType):
        return "function"
    return "data"


def _is_data(obj: Any) -> bool:
    return kind_of(obj) in ("data", "type")


def public_entries(modules: list[str] | None = None) -> dict[str, list[Entry]]:
    """module name -> its entries, for :data:`MODULES` and every module that is one of their names."""
    order = list(modules or MODULES)
    seen: dict[int, str] = {}  # id(obj) -> documented name (functions, classes; data by identity is unsafe)
    result: dict[str, list[Entry]] = {}
    i = 0
    while i < len(order):
        modname = order[i]
        i += 1
        module = importlib.import_module(modname)
        entries = []
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            kind = kind_of(obj)
            if kind == "module":
                if obj.__name__ not in order:
                    order.append(obj.__name__)
                entries.append(Entry(modname, name, obj, kind, obj.__name__))
                continue
            key = None if kind in ("data", "type") else id(obj)  # Array and Params are both Any
            target = seen.get(key, f"{modname}.{name}") if key is not None else f"{modname}.{name}"
            if key is not None:
                seen.setdefault(key, target)
            entries.append(Entry(modname, name, obj, kind, target))
        result[modname] = entries
    return result


def _underline(title: str, char: str = "=") -> str:
    return f"{title}\n{char * len(title)}\n"


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) if not _is_data(obj) else None
    if not doc:
        return ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first


def _section(entry: Entry, top: bool) -> str:
    if top and entry.kind not in ("module", "error"):
        defined = getattr(entry.obj, "__module__", "") or ""
        for prefix, title in SECTIONS:
            if defined == prefix or defined.startswith(prefix + "."):
                return title
    return KIND_TITLES[entry.kind]


def module_page(modname: str, entries: list[Entry]) -> str:
    top = modname == "portable_nn"
    lines = [_underline(modname), f".. automodule:: {modname}", "   :no-members:", ""]
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(_section(entry, top), []).append(entry)
    for title, group in groups.items():
        lines += [_underline(title, "-"), ".. list-table::", "   :widths: 30 70", ""]
        for entry in sorted(group, key=lambda e: e.name.lower()):
            if entry.kind == "module":
                link = f":doc:`{entry.name} <{entry.target}>`"
                text = f"the module ``{entry.target}``"
            else:
                role = "py:obj"
                link = f":{role}:`{entry.name} <{entry.target}>`"
                text = (f"the same object as :{role}:`{entry.target}`" if entry.is_alias
                        else _summary(entry.obj))
            lines += [f"   * - {link}", f"     - {text}" if text else "     -"]
        lines.append("")
    documented = [e for e in entries if e.kind != "module" and not e.is_alias]
    if documented:
        lines += [".. toctree::", "   :hidden:", ""]
        lines += [f"   generated/{e.fullname}" for e in documented]
        lines.append("")
    return "\n".join(lines)


LAYER_PROTOCOL = (
    "init", "init_params", "apply", "init_state", "apply_with_state", "children", "stateful",
    "takes_indices", "draws_host_rng",
)


def _documented_classes(entries: dict[str, list[Entry]]) -> set[int]:
    return {id(e.obj) for es in entries.values() for e in es if inspect.isclass(e.obj) and not e.is_alias}


def excluded_members(cls: type, documented: set[int]) -> list[str]:
    """Members a class page leaves out: those another documented class or another library defines
    (a layer's ``init`` is Layer's; an estimator's ``get_params`` is scikit-learn's), and a layer's
    protocol methods (``apply``, ``init_params``...) unless the layer documents its own."""
    from portable_nn.layers.base import Layer

    out = []
    for name in dir(cls):
        if name.startswith("_") and name != "__call__":
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or owner is cls:
            if owner is cls and not _ours(inspect.getattr_static(cls, name)):
                out.append(name)
            elif owner is cls and issubclass(cls, Layer) and cls is not Layer and name in LAYER_PROTOCOL:
                member = inspect.getattr_static(cls, name)
                doc = getattr(getattr(member, "fget", member), "__doc__", None)
                if not doc:
                    out.append(name)
            continue
        if id(owner) in documented or not owner.__module__.startswith("portable_nn"):
            out.append(name)
        elif not _ours(inspect.getattr_static(owner, name)):
            out.append(name)  # made by another library's machinery (scikit-learn's set_fit_request)
    return out


def _ours(member: Any) -> bool:
    member = getattr(member, "fget", None) or getattr(member, "__func__", None) or member
    module = getattr(member, "__module__", None) if callable(member) or inspect.isfunction(member) else None
    module = module or type(member).__module__
    return module.startswith("portable_nn") or module == "builtins"


def name_page(entry: Entry, documented: set[int]) -> str:
    mod, name = entry.module, entry.name
    head = [_underline(entry.fullname), f".. currentmodule:: {mod}", ""]
    if entry.kind in ("layer", "class"):
        body = [f".. autoclass:: {name}", "   :members:", "   :inherited-members:", "   :show-inheritance:"]
        excluded = excluded_members(entry.obj, documented)
        if excluded:
            body.append(f"   :exclude-members: {', '.join(excluded)}")
        if "__call__" in vars(entry.obj) and "__call__" not in excluded:
            body.append("   :special-members: __call__")
    elif entry.kind == "error":
        body = [f".. autoexception:: {name}", "   :show-inheritance:"]
    elif entry.kind == "function":
        body = [f".. autofunction:: {name}"]
    elif entry.kind == "type":
        value, doc = type_alias_source(entry.module, entry.name, entry.obj)
        body = [f".. py:type:: {name}", f"   :canonical: {value}", ""]
        body += [f"   {line}" if line else "" for line in doc]
    else:  # a constant: its docstring from the source (autodoc would show its type's, e.g. dict's)
        value, doc = type_alias_source(entry.module, entry.name, entry.obj)
        kind = "types.ModuleType" if isinstance(entry.obj, types.ModuleType) else type(entry.obj).__name__
        body = [f".. py:data:: {name}", f"   :type: {kind}"]
        if len(value) <= 60 and value.count("(") == value.count(")") and value[-1:] not in "{[(":
            body.append(f"   :value: {value}")
        body += [""] + [f"   {line}" if line else "" for line in doc]
    return "\n".join(head + body) + "\n"


def type_alias_source(modname: str, name: str, obj: Any) -> tuple[str, list[str]]:
    """``(value as written, docstring)`` of ``name = value`` followed by a docstring, found in the module or
    in the portable_nn module that defines it (``portable_nn.Seed`` is written in ``portable_nn._rng``)."""
    import re

    from sphinx.pycode import ModuleAnalyzer

    candidates = [modname] + sorted(m for m in sys.modules if m.startswith("portable_nn") and m != modname)
    for candidate in candidates:
        module = sys.modules.get(candidate)
        if module is None or getattr(module, name, None) is not obj:
            continue
        try:
            analyzer = ModuleAnalyzer.for_module(candidate)
        except Exception:  # noqa: BLE001 (no source: look further)
            continue
        found = re.search(rf"^{name}(?:: [^=]+)? = (.+)$", analyzer.code, re.M)
        if found:
            return found.group(1).strip(), list(analyzer.find_attr_docs().get(("", name), []))
    return repr(obj), []


def public_bases(bases: list[Any], documented: set[int]) -> list[Any]:
    """A class's bases as the reader may follow them: private bases replaced by their own bases."""
    out: list[Any] = []
    for base in bases:
        if not inspect.isclass(base) or id(base) in documented or not base.__module__.startswith("portable_nn"):
            out.append(base)
        else:
            out.extend(b for b in public_bases(list(base.__bases__), documented) if b not in out)
    return [b for b in out if b is not object] or [object]


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def write_pages(api_dir: Path) -> dict[str, list[Entry]]:
    entries = public_entries()
    documented = _documented_classes(entries)
    written = set()
    for modname, module_entries in entries.items():
        _write(api_dir / f"{modname}.rst", module_page(modname, module_entries))
        written.add(f"{modname}.rst")
        for entry in module_entries:
            if entry.kind != "module" and not entry.is_alias:
                _write(api_dir / "generated" / f"{entry.fullname}.rst", name_page(entry, documented))
                written.add(f"generated/{entry.fullname}.rst")
    for path in [*api_dir.glob("portable_nn*.rst"), *(api_dir / "generated").glob("*.rst")]:
        if str(path.relative_to(api_dir)) not in written:
            path.unlink()  # a name that left __all__
    toc = [".. toctree::", "   :maxdepth: 1", ""] + [f"   {m}" for m in entries]
    _write(api_dir / "modules.rst.inc", "\n".join(toc) + "\n")
    return entries


def _builder_inited(app: Any) -> None:
    entries = write_pages(Path(app.srcdir) / "api")
    app.env.pnn_documented = _documented_classes(entries)  # type: ignore[attr-defined]


def _process_bases(app: Any, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    bases[:] = public_bases(list(bases), getattr(app.env, "pnn_documented", set()))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _builder_inited)
    app.connect("autodoc-process-bases", _process_bases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
