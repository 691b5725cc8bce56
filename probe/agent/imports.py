"""Post-import hooks: run a function right after a given module finishes importing.

This is how the agent hooks torch and asyncio without ever importing them: a finder at the front
of ``sys.meta_path`` answers only for the watched names, lets the regular finders find the module,
and wraps that one loader's ``exec_module`` for the one import. Modules already imported when a
hook is registered get their hook at once.
"""

from __future__ import annotations

import sys
import threading

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

    Hook = Callable[[ModuleType], None]


class PostImportFinder:
    """A meta path finder that never finds anything itself; see the module docstring."""

    def __init__(self, on_error: Callable[[str, BaseException], None]) -> None:
        self._hooks: dict[str, list[Hook]] = {}
        self._busy = threading.local()
        self._on_error = on_error

    def watch(self, name: str, hook: Hook) -> None:
        module = sys.modules.get(name)
        if module is not None and _fully_imported(module):
            self._run(name, module, [hook])
            return
        self._hooks.setdefault(name, []).append(hook)

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        hooks = self._hooks.get(fullname)
        if not hooks or getattr(self._busy, "active", False):
            return None
        self._busy.active = True
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            self._busy.active = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader: Any = spec.loader
        original = loader.exec_module
        shadowed = "exec_module" in getattr(loader, "__dict__", {})
        finder = self

        def exec_module(module: ModuleType) -> None:
            try:
                original(module)
            finally:
                if not shadowed:
                    try:
                        del loader.exec_module
                    except AttributeError:
                        pass
            finder._run(fullname, module, finder._hooks.pop(fullname, []))

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):
            return spec
        return spec

    def _run(self, name: str, module: ModuleType, hooks: list[Hook]) -> None:
        for hook in hooks:
            try:
                hook(module)
            except Exception as exc:  # a hook must never break the target's import
                self._on_error(f"hook for {name}", exc)


def _find_with_others(
    me: object, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    for finder in sys.meta_path:
        if finder is me:
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec: ModuleSpec | None = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _fully_imported(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)
