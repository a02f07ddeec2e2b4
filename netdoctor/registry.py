"""Finding checks: the built-in `netdoctor.checks` package plus the `netdoctor.checks` entry-point group.

`@check` only marks a function; nothing registers itself on import, so discovery is explicit and a
module that fails to import becomes a LoadError the runner reports as an `error` finding.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Iterable

from netdoctor.model import CheckInfo, Need, Scope, Severity

_MARK = "__netdoctor_check__"
ENTRY_POINT_GROUP = "netdoctor.checks"


def check(*, id: str, title: str, scope: Scope = Scope.CONTAINER, severity: Severity = Severity.MEDIUM,
          needs: Iterable[Need] = ()) -> Callable:
    """Declare a check. The function's docstring is its explanation (`netdoctor explain ID`)."""

    def mark(func: Callable) -> Callable:
        info = CheckInfo(id=id, title=title, scope=scope, severity=severity, needs=frozenset(needs),
                         explanation=inspect.cleandoc(func.__doc__ or title), func=func)
        setattr(func, _MARK, info)
        return func

    return mark


@dataclass(frozen=True)
class LoadError:
    source: str
    message: str


@dataclass(frozen=True)
class Catalogue:
    checks: tuple[CheckInfo, ...]
    errors: tuple[LoadError, ...]

    def get(self, check_id: str) -> CheckInfo | None:
        return next((c for c in self.checks if c.id == check_id), None)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.checks]


def _checks_in(module) -> list[CheckInfo]:
    return [getattr(obj, _MARK) for obj in vars(module).values() if callable(obj) and hasattr(obj, _MARK)]


def discover() -> Catalogue:
    found: dict[str, CheckInfo] = {}
    errors: list[LoadError] = []
    import netdoctor.checks as builtin

    modules = [f"{builtin.__name__}.{m.name}" for m in pkgutil.iter_modules(builtin.__path__) if not m.name.startswith("_")]
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a broken check must not take the others down
            errors.append(LoadError(name, f"{type(exc).__name__}: {exc}"))
            continue
        for info in _checks_in(module):
            found[info.id] = info
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            errors.append(LoadError(f"entry point {ep.name}", f"{type(exc).__name__}: {exc}"))
            continue
        infos = [getattr(obj, _MARK)] if hasattr(obj, _MARK) else _checks_in(obj) if inspect.ismodule(obj) else []
        if not infos:
            errors.append(LoadError(f"entry point {ep.name}", "does not point at a @check function or a module of them"))
        for info in infos:
            if info.id in found and found[info.id].func is not info.func:
                errors.append(LoadError(f"entry point {ep.name}", f"check id {info.id!r} is already taken"))
                continue
            found[info.id] = info
    return Catalogue(tuple(sorted(found.values(), key=lambda c: c.id)), tuple(errors))
