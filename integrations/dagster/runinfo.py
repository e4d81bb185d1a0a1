"""What one process knows about a Dagster run: its job, upstream caller, assets and step attempts; and
Dagster's attribute names and step keys (no Dagster import here: cheap and testable alone).

Built lazily from the instance (run record + execution-plan snapshot) the first time a process sees
an event of the run, so a step subprocess that saw nothing else still knows everything it needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from opentelemetry.trace import SpanContext
from pipetrace.adapter import OpenAttempts, upstream_from, warn_once_per
from pipetrace.identity import RunIdentity

log = logging.getLogger("pipetrace.dagster")

SYSTEM = "dagster"
JOB = "dagster.job"
RUN_ID = "dagster.run_id"
STEP_KEY = "dagster.step_key"
OP = "dagster.op"
ASSET_KEY = "dagster.asset_key"
PARTITION_KEY = "dagster.partition_key"
MAPPING_KEY = "dagster.mapping_key"
OUTPUT = "dagster.output"
INPUT = "dagster.input"
SKIP_REASON = "dagster.skip_reason"
PARTITION_TAG = "dagster/partition"

MAX_RUNS = 256


def split_step_key(step_key: str) -> tuple[str, str | None]:
    """``process[alpha]`` → (``process``, ``alpha``); an unmapped key → (key, None). Mapped steps share
    one low-cardinality span name (``task process``) under one batch span; the mapping key goes into an
    attribute."""
    if step_key.endswith("]") and "[" in step_key:
        base, _, rest = step_key.partition("[")
        return base, rest[:-1]
    return step_key, None


def op_name(step_key: str) -> str:
    """The op (node) name of a step: the last part of ``graph.op[key]``."""
    return split_step_key(step_key)[0].rsplit(".", 1)[-1]


@dataclass
class RunInfo:
    run_id: str
    job: str
    upstream: SpanContext | None = None
    partition: str | None = None
    # base step key → output name → asset key (user string); only outputs that are assets
    asset_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    step_keys: list[str] = field(default_factory=list)
    dynamic: bool = False
    start_ts: float | None = None
    saw_run_start: bool = False
    # step key → try number of the last attempt seen in this process
    attempts: dict[str, int] = field(default_factory=dict)
    # step key → number of STEP_UP_FOR_RETRY in the event log (loaded once, only when needed)
    stored_retries: dict[str, int] | None = None

    @cached_property  # asked for at every step event; job and upstream are known once loaded
    def ident(self) -> RunIdentity:
        return RunIdentity(SYSTEM, self.job, self.run_id, self.upstream)

    def step_assets(self, step_key: str) -> list[str]:
        return sorted(set(self.asset_outputs.get(split_step_key(step_key)[0], {}).values()))

    def asset_of_output(self, step_key: str, output: str | None) -> str | None:
        return self.asset_outputs.get(split_step_key(step_key)[0], {}).get(output or "")

    def run_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {JOB: self.job, RUN_ID: self.run_id}
        if self.partition:
            attrs[PARTITION_KEY] = self.partition
        return attrs


_PLANS: dict[str, tuple[list[str], dict[str, dict[str, str]], bool]] = {}
"""Snapshot id → what :func:`_read_plan` found. The id is a hash of the plan, so a process that runs the
same job again (a code server, a sensor loop, a test suite) reads and decodes the plan once."""


def _read_plan(plan: Any) -> tuple[list[str], dict[str, dict[str, str]], bool]:
    """Step keys to execute, asset outputs per base step key, and whether the plan maps dynamically."""
    keys: dict[str, None] = {}
    assets: dict[str, dict[str, str]] = {}
    dynamic = False
    for step in plan.steps:
        keys[step.key] = None
        dynamic = dynamic or "[?]" in step.key
        for out in step.outputs:
            props = out.properties
            if props is None:
                continue
            dynamic = dynamic or bool(props.is_dynamic)
            if props.is_asset and props.asset_key is not None:
                assets.setdefault(split_step_key(step.key)[0], {})[out.name] = props.asset_key.to_user_string()
    wanted = set(plan.step_keys_to_execute or keys)
    return [k for k in keys if k in wanted], assets, dynamic


def _load(instance: Any, run_id: str, job: str | None) -> RunInfo:
    info = RunInfo(run_id=run_id, job=job or "")
    try:
        run = instance.get_run_by_id(run_id)
    except Exception as exc:
        warn_once_per(log, "dagster-run", "pipetrace: could not read Dagster run %s: %r", run_id, exc)
        run = None
    if run is None:
        return info
    info.job = run.job_name or info.job
    tags = run.tags or {}
    info.upstream = upstream_from(tags, source="dagster run tag traceparent")
    info.partition = tags.get(PARTITION_TAG)
    snap_id = run.execution_plan_snapshot_id
    plan = _PLANS.get(snap_id) if snap_id else None
    if snap_id and plan is None:
        try:
            plan = _read_plan(instance.get_execution_plan_snapshot(snap_id))
        except Exception as exc:
            warn_once_per(log, "dagster-plan", "pipetrace: could not read Dagster plan of %s: %r", run_id, exc)
            return info
        if len(_PLANS) >= MAX_RUNS:
            _PLANS.clear()
        _PLANS[snap_id] = plan
    if plan is not None:
        info.step_keys, info.asset_outputs, info.dynamic = plan
    return info


class RunRegistry(OpenAttempts[str, RunInfo]):
    """Per-process run id → :class:`RunInfo`, at most ``MAX_RUNS``. A run is forgotten (``pop``) when it
    ends, so only runs whose end this process never sees pile up; the first seen is dropped first."""

    def __init__(self) -> None:
        super().__init__(MAX_RUNS)

    def load(self, instance: Any, run_id: str, job: str | None) -> RunInfo:
        info = self.get(run_id)
        if info is None:
            info = _load(instance, run_id, job)
            info = self.get(run_id) or info  # another thread loaded it meanwhile: keep one
            self.put(run_id, info)
        return info
