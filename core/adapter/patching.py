"""Patching an orchestrator's method where it has no hook, with ``wrapt``: once, restorably.

``wrap`` replaces ``owner.name`` with a ``wrapt`` function wrapper (the wrapper receives
``(wrapped, instance, args, kwargs)``, binds like the original, classmethods and async methods
included) and remembers what ``owner`` itself held, so ``unwrap`` puts exactly that back (or deletes
the attribute when the method was inherited). Both are idempotent. :class:`Patches` is what one adapter
patched (wrapped methods, calls whose results are known secrets), undone together by its ``uninstrument``.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

import wrapt

from ..redaction.known import register_results, unregister_results

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

_MISSING = object()
_lock = threading.Lock()
_patched: dict[tuple[int, str], tuple[object, object]] = {}  # (id(owner), name) → (owner, what owner held)


def wrap(owner: object, name: str, wrapper: Wrapper) -> bool:
    """Wrap ``owner.name`` once; False (and nothing done) if pipetrace already wrapped it."""
    with _lock:
        key = (id(owner), name)
        if key in _patched:
            return False
        own = vars(owner).get(name, _MISSING)
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        _patched[key] = (owner, own)
        return True


def unwrap(owner: object, name: str) -> bool:
    """Restore what ``owner.name`` was before :func:`wrap`; False if it was not wrapped."""
    with _lock:
        entry = _patched.pop((id(owner), name), None)
        if entry is None:
            return False
        own = entry[1]
        if own is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, own)
        return True


def is_wrapped(owner: object, name: str) -> bool:
    return (id(owner), name) in _patched


def observe(owner: object, name: str, after: Callable[[Any, tuple[Any, ...], dict[str, Any], Any], None]) -> bool:
    """Wrap ``owner.name`` (sync or async; methods, classmethods) so that ``after(instance, args, kwargs,
    result)`` sees what each call returned; the result is returned unchanged and an exception raised by
    the call skips ``after``. ``after`` must not raise. False if pipetrace already wrapped it."""
    method = getattr(owner, name)
    if inspect.iscoroutinefunction(getattr(method, "__func__", method)):
        async def observed_async(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                                 kwargs: dict[str, Any]) -> Any:
            result = await wrapped(*args, **kwargs)
            after(instance, args, kwargs, result)
            return result
        return wrap(owner, name, observed_async)

    def observed(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = wrapped(*args, **kwargs)
        after(instance, args, kwargs, result)
        return result
    return wrap(owner, name, observed)


class Patches:
    """The patches of one adapter (``system``), undone in reverse order by :meth:`undo`. ``table``: rows
    of (module, class in it, method, wrapper) that :meth:`apply` wraps, importing the module only then;
    :meth:`wrap` and :meth:`secrets` patch one more thing each."""

    def __init__(self, system: str, table: Sequence[tuple[str, str, str, Wrapper]] = ()) -> None:
        self.system = system
        self.table = table
        self._undo: list[tuple[Callable[[object, str], object], object, str]] = []

    def apply(self) -> None:
        for module, owner, name, wrapper in self.table:
            self.wrap(getattr(importlib.import_module(module), owner), name, wrapper)

    def wrap(self, owner: object, name: str, wrapper: Wrapper, *, own_only: bool = False) -> bool:
        """:func:`wrap` ``owner.name`` (with ``own_only``, only if ``owner`` itself defines it)."""
        if (own_only and name not in vars(owner)) or not wrap(owner, name, wrapper):
            return False
        self._undo.append((unwrap, owner, name))
        return True

    def secrets(self, owner: object, name: str) -> None:
        """Every value ``owner.name(...)`` returns is a known secret, masked in every span from then on."""
        register_results(owner, name, self.system)
        self._undo.append((unregister_results, owner, name))

    def undo(self) -> None:
        while self._undo:
            undo, owner, name = self._undo.pop()
            undo(owner, name)
