"""What one process knows about a Dagster run: its job, upstream caller, assets and step attempts; and
Dagster's attribute names and step keys (no Dagster import here: cheap and testable alone).

Built lazily from the instance (run record + execution-plan snapshot) the first time a process sees
an event of the run, so a step subprocess that saw nothing else still knows everything it needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from opentelemetry.trace import SpanContext
from pipetrace import attributes as A
from pipetrace.adapter import OpenAttempts, run_attributes, upstream_from, warn_once_per
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
MAX_CREATED = 32


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


class Step(NamedTuple):
    """What a step key says, worked out once per plan: its base key (its span's name), its mapping key and
    the span attributes that depend on the step alone."""

    base: str
    mapping: str | None
    attributes: dict[str, Any]
    name: str  # its span's name (every mapped copy of a step has its base key's)


class Plan(NamedTuple):
    """What a run's execution plan tells this adapter (see :func:`_read_plan`)."""

    step_keys: list[str]
    # base step key → output name → asset key (user string); only outputs that are assets
    asset_outputs: dict[str, dict[str, str]]
    dynamic: bool
    # step key → its Step, filled as steps start (unmapped keys only: they repeat in every run of the plan)
    steps: dict[str, Step]


@dataclass
class RunInfo:
    run_id: str
    job: str
    upstream: SpanContext | None = None
    partition: str | None = None
    plan: Plan = field(default_factory=lambda: Plan([], {}, False, {}))
    start_ts: float | None = None
    saw_run_start: bool = False
    # step key → try number of the last attempt seen in this process
    attempts: dict[str, int] = field(default_factory=dict)
    # step key → number of STEP_UP_FOR_RETRY in the event log (loaded once, only when needed)
    stored_retries: dict[str, int] | None = None
    span_ids: dict[str, int] = field(default_factory=dict)  # step key → span id of its attempt in ``attempts``

    @cached_property  # asked for at every step event; job and upstream are known once loaded
    def ident(self) -> RunIdentity:
        return RunIdentity(SYSTEM, self.job, self.run_id, self.upstream)

    @cached_property  # what a step span adds after the step's attributes (job and run id: in cicd.pipeline.*)
    def tail(self) -> dict[str, Any]:
        return {PARTITION_KEY: self.partition} if self.partition else {}

    @cached_property  # what every attempt span of the run starts with
    def task_base(self) -> dict[str, Any]:
        return run_attributes(SYSTEM, self.job, self.run_id)

    def step(self, step_key: str) -> Step:
        found = self.plan.steps.get(step_key)
        if found is None:
            base, mapping = split_step_key(step_key)
            attrs: dict[str, Any] = {STEP_KEY: step_key, OP: op_name(step_key), A.TASK_NAME: base}
            if mapping is not None:
                attrs[MAPPING_KEY] = mapping
                attrs[A.MAP_KEY] = mapping  # shown as `task process [alpha]`, like Airflow's map index
            assets = sorted(set(self.plan.asset_outputs.get(base, {}).values()))
            if assets:
                attrs[ASSET_KEY] = assets[0] if len(assets) == 1 else assets
            found = Step(base, mapping, attrs, A.task_span_name(base))
            if mapping is None:  # kept: an unmapped key repeats in every run of the plan
                self.plan.steps[step_key] = found
        return found

    def asset_of_output(self, step_key: str, output: str | None) -> str | None:
        return self.plan.asset_outputs.get(self.step(step_key).base, {}).get(output or "")

    def run_attributes(self) -> dict[str, Any]:
        return {JOB: self.job, RUN_ID: self.run_id, **self.tail}


_PLANS: dict[str, Plan] = {}
"""Snapshot id → what :func:`_read_plan` found. The id is a hash of the plan, so a process that runs the
same job again (a code server, a sensor loop, a test suite) reads and decodes the plan once."""


def _read_plan(plan: Any) -> Plan:
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
    return Plan([k for k in keys if k in wanted], assets, dynamic, {})


CREATED: OpenAttempts[str, Any] = OpenAttempts(MAX_CREATED)
"""Run id → the ``DagsterRun`` created in this process (``execute_in_process``, ``materialize``, ``dagster
job execute``): such a run's first event then needs no read of the run storage. Taken by that event; a
process that creates runs it does not execute (webserver, daemon) keeps only the latest few."""


def _load(instance: Any, run_id: str, job: str | None) -> RunInfo:
    info = RunInfo(run_id=run_id, job=job or "")
    try:
        run = CREATED.pop(run_id) or instance.get_run_by_id(run_id)
    except Exception as exc:
        warn_once_per(log, "dagster-run", "pipetrace: could not read Dagster run %s: %r", run_id, exc)
        return info
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
        info.plan = plan
    return info


def load(runs: OpenAttempts[str, RunInfo], instance: Any, run_id: str, job: str | None) -> RunInfo:
    """The run's entry in ``runs``, loaded from the instance the first time this process sees the run."""
    info = runs.get(run_id)
    if info is None:
        info = _load(instance, run_id, job)
        info = runs.get(run_id) or info  # another thread loaded it meanwhile: keep one
        runs.put(run_id, info)
    return info
