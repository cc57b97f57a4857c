"""Lazy subpackages: names are imported from their submodule on first use.

Why: torch takes seconds to import (tens of seconds on a loaded machine), and the command line
reads its choices (network names, data sets, schedules, ...) from torch-free modules inside the
subpackages. An eager ``__init__`` would import torch with the first of them, and ``snn-lats
train --help`` would wait for it.

A subpackage lists its exports once, as ordinary imports under ``if TYPE_CHECKING:``, which type
checkers and editors read; :func:`attach` reads the same block from the source and imports each
name from its submodule when it is first asked for (PEP 562).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from typing import Any

__all__ = ["attach"]


def _exports(package: str) -> dict[str, str]:
    """Name -> submodule, from the ``from ... import ...`` statements of the ``if TYPE_CHECKING:``
    block of the package's ``__init__.py``."""
    spec = importlib.util.find_spec(package)
    source = spec.loader.get_source(package) if spec is not None and spec.loader is not None else None
    if source is None:
        raise ImportError(f"{package}: snn_lats reads its packages' exports from their source, which is missing")
    exports = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if not isinstance(statement, ast.ImportFrom):
                    raise TypeError(f"{package}: only 'from ... import ...' belongs in the TYPE_CHECKING block")
                module = importlib.util.resolve_name("." * statement.level + (statement.module or ""), package)
                exports |= {alias.asname or alias.name: module for alias in statement.names}
    return exports


def attach(package: str) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for the package ``package``:
    ``__all__, __getattr__, __dir__ = _lazy.attach(__name__)``."""
    exports = _exports(package)
    module = importlib.import_module(package)
    namespace = module.__dict__
    # A name the __init__ defines itself would hide the export, and so would a submodule of the
    # same name once imported (the import system sets it as the package's attribute).
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    shadowed = sorted(set(exports) & (set(namespace) | submodules))
    if shadowed:
        raise ImportError(f"{package}: the exports {shadowed} are shadowed by the package's own names or submodules")

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later lookups find it without calling __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return list(exports), __getattr__, __dir__
