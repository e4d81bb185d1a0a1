"""A real multiprocess run: persistent DagsterInstance (DAGSTER_HOME in a temp dir), the default
multiprocess executor (each step its own spawned process), launched with no code change through
``pipetrace run -- dagster job execute ...``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, by_step, tree
from pipetrace import attributes as A
from pipetrace.cli.waterfall import label
from pipetrace.identity import RunIdentity
from pipetrace.store import SpanStore

pytestmark = pytest.mark.slow


JOBS = {"dynamic_job": "dynamic.py", "retry_job": "retry.py"}
# `dagster job launch` goes the way a run started from `dagster dev` goes: the run launcher asks a code
# server to start a run worker process (`dagster api execute_run`), whose executor spawns the steps.
LAUNCHED = "fan_in_job"
DIRECT_RUN_COORDINATOR = (
    "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
)


def _start(base: Path, example: str, job: str, verb: str = "execute") -> subprocess.Popen[str]:
    dagster_home = base / "dagster-home"
    dagster_home.mkdir(parents=True)
    # persistent SQLite storages under DAGSTER_HOME
    (dagster_home / "dagster.yaml").write_text(DIRECT_RUN_COORDINATOR if verb == "launch" else "")
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPETRACE_", "OTEL_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(dagster_home), PIPETRACE_HOME=str(base / "pipetrace-home"),
               PIPETRACE_EXPORTERS="store", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.Popen(
        [str(bin_dir / "pipetrace"), "run", "--", "dagster", "job", verb, "-f", str(EXAMPLES / example),
         "-j", job],
        cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SpanStore]:
    """Both example jobs, launched side by side (they are mostly waiting on process start-up)."""
    bases = {job: tmp_path_factory.mktemp(job) for job in [*JOBS, LAUNCHED]}
    procs = {job: _start(bases[job], example, job) for job, example in JOBS.items()}
    launched = _start(bases[LAUNCHED], "fan_in.py", LAUNCHED, verb="launch")
    out: dict[str, SpanStore] = {}
    for job, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, output[-5000:]
        assert "multiprocess" in output  # really the multiprocess executor
        out[job] = SpanStore(bases[job] / "pipetrace-home" / "traces.db")
    output, _ = launched.communicate(timeout=240)
    assert launched.returncode == 0, output[-5000:]
    out[LAUNCHED] = _wait_for_run_span(bases[LAUNCHED], LAUNCHED)
    return out


def _wait_for_run_span(base: Path, job: str, timeout: float = 240) -> SpanStore:
    """The launched run goes on in its run worker after the CLI returns: wait for its run span."""
    db = base / "pipetrace-home" / "traces.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            store = SpanStore(db)
            if any(r.pipeline == job and not r.in_progress for r in store.runs(system="dagster")):
                time.sleep(1)  # let the step processes' last writes land
                return store
        time.sleep(1)
    raise AssertionError(f"no run span for {job} within {timeout} s")


def test_multiprocess_dynamic_job_is_one_trace(stores: dict[str, SpanStore]) -> None:
    store = stores["dynamic_job"]
    (run,) = store.runs(system="dagster")
    assert run.pipeline == "dynamic_job" and run.status == "success"
    spans = store.trace(run.trace_id)
    assert run.trace_id == f"{RunIdentity('dagster', 'dynamic_job', run.run_id).trace_id:032x}"
    assert tree(spans) == "\n".join([
        "run dynamic_job",
        "  batch process",
        "    task process dagster.step_key=process[alpha]",
        "    task process dagster.step_key=process[beta]",
        "    task process dagster.step_key=process[gamma]",
        "  task split dagster.step_key=split",
        "  task total dagster.step_key=total",
    ])
    assert [s.name for s in spans].count("run dynamic_job") == 1
    steps = by_step(spans)
    step_pids = {s.resource["process.pid"] for s in steps.values()}
    assert len(step_pids) >= 2, step_pids
    run_span = next(s for s in spans if s.name == "run dynamic_job")
    assert run_span.resource["process.pid"] not in step_pids  # the orchestrator emits the run span
    batch = next(s for s in spans if s.name == "batch process")
    assert batch.attributes[A.BATCH_SIZE] == 3
    mapped = [s for (key, _), s in steps.items() if key.startswith("process[")]
    assert all(s.parent_span_id == batch.span_id for s in mapped)
    for s in mapped:
        assert [lk["span_id"] for lk in s.links] == [steps[("split", 1)].span_id]
    # the mapping key tells mapped steps apart, like Airflow's map index
    assert sorted(s.attributes[A.MAP_KEY] for s in mapped) == ["alpha", "beta", "gamma"]
    assert sorted(label(s) for s in mapped) == ["task process [alpha] ⇠1", "task process [beta] ⇠1",
                                                "task process [gamma] ⇠1"]
    # service.name per component: step processes and the run worker are told apart
    assert {s.resource["service.name"] for s in steps.values()} == {"dagster-step-worker"}
    assert run_span.resource["service.name"] == "dagster-run-worker"
    assert sorted(lk["span_id"] for lk in steps[("total", 1)].links) == sorted(s.span_id for s in mapped)
    assert all(lk["attributes"][A.LINK_KIND] == "result" for lk in steps[("total", 1)].links)


def test_multiprocess_retry_attempts_in_separate_processes(stores: dict[str, SpanStore]) -> None:
    store = stores["retry_job"]
    (run,) = store.runs(system="dagster")
    spans = store.trace(run.trace_id)
    assert tree(spans, ("pipetrace.task.try_number", A.TASK_RESULT)) == "\n".join([
        "run retry_job",
        "  task fetch pipetrace.task.try_number=1 cicd.pipeline.task.run.result=success",
        "  task flaky pipetrace.task.try_number=1 cicd.pipeline.task.run.result=retry",
        "  task flaky pipetrace.task.try_number=2 cicd.pipeline.task.run.result=success",
        "  task store pipetrace.task.try_number=1 cicd.pipeline.task.run.result=success",
    ])
    steps = by_step(spans)
    assert steps[("flaky", 1)].resource["process.pid"] != steps[("flaky", 2)].resource["process.pid"]
    (lk,) = steps[("store", 1)].links
    assert lk["span_id"] == steps[("flaky", 2)].span_id


def test_launched_run_goes_through_code_server_and_run_worker(stores: dict[str, SpanStore]) -> None:
    store = stores[LAUNCHED]
    (run,) = store.runs(system="dagster")
    assert run.status == "success"
    spans = store.trace(run.trace_id)
    assert tree(spans) == "\n".join([
        "run fan_in_job",
        "  task combine dagster.step_key=combine",
        "  task extract_a dagster.step_key=extract_a",
        "  task extract_b dagster.step_key=extract_b",
        "  task extract_c dagster.step_key=extract_c",
        "  task publish dagster.step_key=publish",
    ])
    steps = by_step(spans)
    assert len({s.resource["process.pid"] for s in steps.values()}) >= 2
    assert sorted(lk["span_id"] for lk in steps[("combine", 1)].links) == sorted(
        steps[(k, 1)].span_id for k in ("extract_a", "extract_b", "extract_c"))
