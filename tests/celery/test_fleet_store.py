"""Celery workers on 3 "hosts" (own PIPETRACE_HOME, own host.name, own process tree) consuming one queue
on RabbitMQ, all writing to the PostgreSQL fleet store: any home shows whole workflows."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RABBIT, REDIS, start_worker
from fleet_store import all_traces, cli, fresh_schema, store_url


@pytest.fixture
def fleet_store() -> Iterator[str]:
    with fresh_schema("pt_celery") as schema:
        yield store_url(schema)


def _cli(home: Path, store: str, *args: str) -> Any:
    # the workers are gone: a run whose messages were all handled has ended
    return cli(home, store, *args, PIPETRACE_RUN_SETTLE="0")


@pytest.mark.slow
def test_three_worker_hosts_one_queue_whole_workflows_from_any_home(tmp_path: Path, fleet_store: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shared = uuid.uuid4()
    workers: list[Any] = []
    try:
        with monkeypatch.context() as m:  # start_worker names a fresh queue per worker: make it one queue
            m.setattr(uuid, "uuid4", lambda: shared)
            for n in range(3):
                workers.append(start_worker(
                    tmp_path / f"host{n}", RABBIT, REDIS, extra=["-n", f"host{n}-{shared.hex[:8]}@%h"],
                    extra_env={"PIPETRACE_STORE": fleet_store,
                               "OTEL_RESOURCE_ATTRIBUTES": f"host.name=fleet-host{n}"}))
        ids = workers[0].produce("all")
    finally:
        for w in workers:  # warm shutdown (flushes every process to the store), all hosts at once
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in workers:
            w.stop()
    assert ids["chord"]["value"] == 15 and ids["chain"]["value"] == 13

    # every home lists the same fleet-wide runs; the first listing closes the workflows that ended (issue 19)
    listed = [json.loads(_cli(tmp_path / f"host{n}", fleet_store, "runs", "--limit", "200", "--json").stdout)
              for n in range(3)]
    assert listed[0] and listed[0] == listed[1] == listed[2]  # the same fleet-wide list from every home

    traces = all_traces(fleet_store, tmp_path / "reader")
    hosts = {s.resource.get("host.name") for spans in traces.values() for s in spans if s.name.startswith("task ")}
    assert hosts == {"fleet-host0", "fleet-host1", "fleet-host2"}  # every host consumed part of the work
    chord = next(t for t, spans in traces.items() if any(s.name == "task pipeline_app.tsum" for s in spans))
    assert len({s.resource.get("host.name") for s in traces[chord] if s.name.startswith("task ")}) >= 2

    # the chord, consumed on several hosts, is one closed run with one run span (closed from the shared store)
    chord_runs = [r for r in listed[0] if r["trace_id"] == chord]
    assert [(r["status"], r["in_progress"]) for r in chord_runs] == [("success", False)], chord_runs
    assert sum(1 for s in traces[chord] if s.is_run) == 1
    assert not [r for r in listed[0] if r["in_progress"]], listed[0]  # every workflow of the scenario ended
    for n in range(3):  # the chord, whole, from every home: 5 header tasks on several hosts and the body
        shown = _cli(tmp_path / f"host{n}", fleet_store, "show", chord)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("task pipeline_app.add") >= 5 and "task pipeline_app.tsum" in shown.stdout
    audit = _cli(tmp_path / "host1", fleet_store, "audit", "--json")
    report = json.loads(audit.stdout)
    assert report["spans"] == sum(len(spans) for spans in traces.values())
    # no host's part of a trace is missing: no parent that never arrived, no link to a span not stored
    assert report["counts"].get("orphan", 0) == 0 and report["counts"].get("dangling-link", 0) == 0, report
