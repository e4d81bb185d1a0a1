"""pipetrace: one pipeline run = one OpenTelemetry trace.

Public API: configuration (``configure``, ``shutdown``), span helpers (``task_span``, ``batch_span``,
``run_span``, ``link``), carriers (``inject``, ``extract``, ``wrap``, ``unwrap``) and ``mask_secret`` (a value
masked in every span of the process from now on).
"""

from __future__ import annotations

from . import attributes
from .carriers import extract, inject, unwrap, wrap
from .config import ConfigError, Settings
from .identity import RunIdentity
from .processing.runtime import configure, force_flush, get_tracer, set_component, settings, shutdown, stats
from .redaction.known import mask_secret
from .spans import (
    batch_span,
    end_task_span,
    link,
    mark_result,
    record_span,
    run_context,
    run_span,
    start_task_span,
    task_span,
)
from .spans import (
    identity as run_identity,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "RunIdentity", "Settings", "attributes", "batch_span", "configure", "end_task_span",
    "extract", "force_flush", "get_tracer", "inject", "link", "mark_result", "mask_secret", "record_span",
    "run_context", "run_identity", "run_span", "set_component", "settings", "shutdown", "start_task_span", "stats",
    "task_span",
    "unwrap", "wrap",
]
