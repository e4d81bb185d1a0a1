"""Zero-edit activation: adapters register through the ``pipetrace.adapters`` entry-point group.

The entry-point *name* is the orchestrator's top-level module (``celery``, ``airflow``, ``dagster``,
``prefect``, ``kombu``) and its value an ``instrument()`` callable. An adapter is instrumented when its
module is first imported (a post-import hook), so a process that never imports Celery never pays for
the Celery adapter.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

log = logging.getLogger("pipetrace.bootstrap")

ENV_FLAG = "PIPETRACE_AUTO"

_lock = threading.Lock()
_done: set[str] = set()
_pending: dict[str, list[EntryPoint]] = {}


def adapter_entry_points() -> list[EntryPoint]:
    return list(entry_points(group="pipetrace.adapters"))


def _run(ep: EntryPoint) -> None:
    key = f"{ep.name}={ep.value}"
    with _lock:
        if key in _done:
            return
        _done.add(key)
    try:
        instrument: Callable[[], object] = ep.load()
        instrument()
        log.debug("pipetrace: %s adapter instrumented", ep.name)
    except Exception as exc:
        log.warning("pipetrace: could not enable the %s adapter: %r", ep.name, exc)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Runs the adapters waiting for a module right after that module finishes importing."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        sys.meta_path.remove(self)  # find the real spec without recursing into ourselves
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original_exec(module)
            for ep in _pending.pop(fullname, []):
                _run(ep)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_finder = _PostImportFinder()


def activate(names: Sequence[str] | None = None) -> list[str]:
    """Enable every installed adapter (or those named), now if its orchestrator is already imported,
    otherwise when it is. Returns the adapter names found."""
    from ..config import ConfigError, load

    try:
        if not load().active:
            return []
    except ConfigError as exc:
        log.error("pipetrace disabled: %s", exc)
        return []
    found = []
    for ep in adapter_entry_points():
        if names is not None and ep.name not in names:
            continue
        found.append(ep.name)
        if ep.name in sys.modules:
            _run(ep)
        else:
            _pending.setdefault(ep.name, []).append(ep)
    if _pending and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return found


def activate_from_env() -> None:
    if os.environ.get(ENV_FLAG) == "1":
        activate()
