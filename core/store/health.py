"""``pipetrace doctor``'s store check: backend, schema version, reachability, spans waiting in the buffer."""

from __future__ import annotations

from pathlib import Path

from . import schema
from .sqlite import SpanStore


def check(store_path: Path) -> tuple[bool, str]:
    """(ok, detail for doctor's store line). The detail names the backend with any password masked."""
    store = SpanStore(store_path)
    where = store.describe()
    try:
        count = store.count()
        version = store.backend.schema_version()
    except Exception as exc:  # noqa: BLE001 - doctor reports whatever went wrong
        return False, f"{where}: unreachable or unusable: {exc}"
    finally:
        store.close()
    line = (f"{where} reachable and writable: schema version {version} "
            f"(this pipetrace: {schema.latest(schema.SPANS, store.dialect)}), {count} spans")
    if store.dialect != "sqlite" and store.buffer_path.exists():
        waiting = SpanStore.local(store.buffer_path).count()
        line += f"; {waiting} spans buffered locally in {store.buffer_path} waiting for it"
    return True, line
