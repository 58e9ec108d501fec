"""PEP 562 hooks for a package whose public names load on first use (its own module, so that
a subpackage can use it without importing the package root)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_names(package: str, source_of: dict[str, str]
               ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package`: name k of `source_of` is taken from the
    module ``source_of[k]`` when first asked for, then kept; any other name is a module of
    the package (``package.name``), imported when asked for, else an AttributeError."""
    module = sys.modules[package]

    def __getattr__(name: str) -> object:
        if name in source_of:
            value = getattr(importlib.import_module(source_of[name]), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(source_of))

    return __getattr__, __dir__


def callable_module(module, api_name: str) -> None:
    """Make `module` callable: calling it calls ``classunlearn.api.<api_name>`` (imported
    then). For a submodule that shares its name with an API function (``cu.forget``): once
    imported, the package attribute is the module, and calling it still works."""
    import types

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module("classunlearn.api"), api_name)(*args,
                                                                               **kwargs)

    CallableModule.__call__.__doc__ = f"classunlearn.api.{api_name}: see its docstring"
    module.__class__ = CallableModule
