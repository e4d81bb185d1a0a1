"""`pipetrace runs` / `show` at 80 columns, with --wide, --json and in pipes: an id printed is never cut,
so it can be copied from the screen into the next command."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

import pipetrace
import pytest
from cli_run import in_terminal, piped
from rich.cells import cell_len

LONG_RUN = "manual__2026-12-05T20:51:44.123456+00:00"  # Airflow's run ids are this long
UUID_RUN = str(uuid.UUID(int=0x1234))


@pytest.fixture
def seeded(traced):
    t0 = time.time() - 3
    runs = ((LONG_RUN, "nightly_warehouse_refresh_with_a_long_name"), (UUID_RUN, "etl"), ("r1", "etl"))
    for run_id, pipeline in runs:
        with pipetrace.task_span("python", pipeline, run_id, "extract"):
            carrier = pipetrace.inject()
        with pipetrace.task_span("python", pipeline, run_id, "load", links=[pipetrace.link(carrier, "xcom")]):
            pass
        pipetrace.run_span("python", pipeline, run_id, start=t0, end=time.time(), result="success")
    traced.flush()
    return traced


def _runs(seeded) -> list[dict]:
    out = piped("runs", "--json", home=seeded.home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_runs_at_80_columns_keeps_every_id_whole_and_each_copies_into_show(seeded) -> None:
    code, screen = in_terminal("runs", home=seeded.home, columns=80)
    assert code == 0, screen
    lines = screen.splitlines()
    assert all(cell_len(line) <= 80 for line in lines), screen
    assert "…" not in screen
    assert screen.count("success") == 3  # the status stays next to the ids (as blocks when a row cannot hold them)
    tokens = {tok for line in lines for tok in line.split()}
    for run in _runs(seeded):
        assert run["run_id"] in tokens and run["trace_id"] in tokens, (run, screen)
    # copy each id from the screen into the next command
    for ident in (LONG_RUN, UUID_RUN, next(r["trace_id"] for r in _runs(seeded) if r["run_id"] == "r1")):
        code, shown = in_terminal("show", ident, home=seeded.home, columns=80)
        assert code == 0, shown
        assert "run " in shown and "task load" in shown
        assert all(cell_len(line) <= 80 for line in shown.splitlines()), shown


def test_narrow_terminal_drops_other_columns_before_ids(seeded) -> None:
    code, screen = in_terminal("runs", "--pipeline", "etl", home=seeded.home, columns=100)
    assert code == 0, screen
    header = next(line for line in screen.splitlines() if "run id" in line)
    assert "trace id" in header and "status" in header
    assert "systems" not in header  # the least useful column went first
    code, wide = in_terminal("runs", "--wide", home=seeded.home, columns=80)
    assert code == 0, wide
    joined = wide.replace("\n", "")  # --wide lets the terminal wrap the lines
    for col in ("start", "system", "pipeline", "run id", "status", "duration", "spans", "systems", "trace id"):
        assert col in joined
    assert "…" not in wide


def test_runs_in_a_pipe_is_tab_separated_and_show_takes_its_ids(seeded) -> None:
    out = piped("runs", home=seeded.home, COLUMNS="40")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout), delimiter="\t"))
    assert {r["run id"] for r in rows} == {LONG_RUN, UUID_RUN, "r1"}
    assert all(len(r["trace id"]) == 32 for r in rows)
    assert "\x1b[" not in out.stdout
    shown = piped("show", rows[0]["run id"], home=seeded.home)
    assert shown.returncode == 0, shown.stderr
    first, *table = shown.stdout.splitlines()
    assert first == f"# trace {rows[0]['trace id']}"
    spans = list(csv.DictReader(io.StringIO("\n".join(table)), delimiter="\t"))
    assert {s["span"].split(" ⇠")[0] for s in spans} == {f"run {rows[0]['pipeline']}", "task extract", "task load"}
    assert all(len(s["span id"]) == 16 for s in spans)


def test_show_json_and_the_waterfall_legend(seeded) -> None:
    out = piped("show", "r1", "--json", home=seeded.home)
    assert out.returncode == 0, out.stderr
    spans = json.loads(out.stdout)
    assert {s["name"] for s in spans} == {"run etl", "task extract", "task load"}
    code, screen = in_terminal("show", "r1", home=seeded.home, columns=80)
    assert code == 0
    assert "task load ⇠1" in screen
    assert "legend: ⇠n n incoming links" in screen  # the mark used above is explained under the waterfall
