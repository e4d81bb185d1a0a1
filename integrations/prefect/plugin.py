"""Prefect's own plugin hook (entry-point group ``prefect.plugins``): with ``PREFECT_PLUGINS_ENABLED=1``
every process that imports prefect is traced, without ``pipetrace run``."""

from __future__ import annotations

from typing import Any

from prefect.plugins import register_hook


@register_hook
def setup_environment(*, ctx: Any) -> None:
    """Instrument this process; no environment changes (returns None)."""
    from . import instrument

    instrument()
    return None
