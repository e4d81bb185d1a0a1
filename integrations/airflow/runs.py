"""A DAG run as a pipetrace run: its identity, its caller, and the parent of its run-level spans.

The one place that decides which trace a DAG run belongs to, used by both the worker and the scheduler
side so they always agree: Airflow's native ``context_carrier`` when ``[traces] otel_on`` is on (we join
its trace and never emit a second run span), else the caller's ``traceparent`` from ``dag_run.conf``,
else the id derived from ``(dag_id, run_id)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.context import Context
from pipetrace.identity import RunIdentity
from pipetrace.spans import identity

from .settings import native_tracing

SYSTEM = "airflow"
CONF_KEYS = ("traceparent", "airflow/dagrun_parent_trace_context")
"""``conf`` keys read for the caller's context: a W3C ``traceparent`` (plus optional ``tracestate``), or
Airflow's own parent-context key (a carrier dict or a traceparent string)."""


def upstream_from_conf(conf: object) -> object:
    """The caller's context carried in a run's conf, or None; garbage is left for the core to reject."""
    if not isinstance(conf, Mapping):
        return None
    value = conf.get("traceparent")
    if value is not None:
        carrier = {"traceparent": value}
        state = conf.get("tracestate")
        if isinstance(state, str):
            carrier["tracestate"] = state
        return carrier
    return conf.get("airflow/dagrun_parent_trace_context")


@dataclass(frozen=True)
class RunRef:
    """Who the run is, and the parent context of spans that belong to the run as a whole."""

    ident: RunIdentity
    native: bool

    @property
    def children_parent(self) -> Context:
        """Parent of batch and never-ran spans: Airflow's ``dag_run.*`` span, or our run span."""
        if self.native:
            return self.ident.upstream_context() or self.ident.run_context()
        return self.ident.run_context()

    @property
    def upstream(self) -> object:
        return self.ident.upstream


def run_ref(dag_id: str, run_id: str, conf: object = None, native_carrier: object = None) -> RunRef:
    """The run's identity from what Airflow stores about it (see module docstring for precedence)."""
    if native_tracing() and isinstance(native_carrier, Mapping) and native_carrier.get("traceparent"):
        ident = identity(SYSTEM, dag_id, run_id, upstream=dict(native_carrier))
        if ident.upstream is not None:
            return RunRef(ident, native=True)
    return RunRef(identity(SYSTEM, dag_id, run_id, upstream=upstream_from_conf(conf)), native=False)
