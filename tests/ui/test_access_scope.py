"""The finer visibility rules, on an in-process viewer over hand-built spans: a run id shared by two
pipelines, one pipeline name in two systems, a run in progress, a link into a hidden run, the access log
and the review's "last seen"."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipetrace import attributes as A
from pipetrace.cli.access_commands import last_seen
from pipetrace.store import SpanRecord, SpanStore
from pipetrace.ui import access as AC
from pipetrace.ui.server import ViewerServer, make_server, serve_in_thread
from test_server import request

S = 10**9
T0 = 1_700_000_000 * S


def tid(n: int) -> str:
    return f"{n:032x}"


def run_spans(n: int, system: str, pipeline: str, run_id: str, *, ended: bool = True,
              links: list[dict[str, Any]] | None = None) -> list[SpanRecord]:
    base = {A.SYSTEM: system, A.PIPELINE_NAME: pipeline, A.PIPELINE_RUN_ID: run_id}
    t0 = T0 + n * 100 * S
    task = SpanRecord(tid(n), f"{n:015x}2", f"{n:015x}1" if ended else None, "task work", "INTERNAL", t0 + S,
                      t0 + 2 * S, "OK", attributes={**base, A.TASK_NAME: "work"}, links=links or [])
    if not ended:
        return [task]
    root = SpanRecord(tid(n), f"{n:015x}1", None, f"run {pipeline}", "SERVER", t0, t0 + 3 * S, "OK",
                      attributes={**base, A.PIPELINE_RESULT: "success"})
    return [root, task]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ViewerServer, dict[str, str], Path]]:
    where = tmp_path_factory.mktemp("scope")
    store = SpanStore(where / "traces.db")
    store.write(run_spans(1, "airflow", "a_etl", "scheduled__1")
                + run_spans(2, "airflow", "b_etl", "scheduled__1")          # same run id, newer, other pipeline
                + run_spans(3, "airflow", "shared", "r3") + run_spans(4, "celery", "shared", "r4")
                + run_spans(5, "airflow", "a_live", "live-1", ended=False)
                + run_spans(6, "airflow", "a_etl", "linker", links=[{"trace_id": tid(2), "span_id": f"{2:015x}2",
                                                                     "attributes": {A.LINK_KIND: "xcom"}}])
                + [s for n in range(100, 160) for s in run_spans(n, "celery", "noise", f"n{n}")])  # the newest
    tokens = {name: AC.new_token() for name in ("a", "shared_airflow", "airflow")}
    config = AC.parse({
        "role": [{"name": "a", "pipelines": ["a_*"]}, {"name": "sa", "pipelines": ["shared"], "systems": ["airflow"]},
                 {"name": "af", "pipelines": ["*"], "systems": ["airflow"]}],
        "token": [{"name": "team-a", "role": "a", "sha256": tokens["a"][1]},
                  {"name": "shared-af", "role": "sa", "sha256": tokens["shared_airflow"][1]},
                  {"name": "all-airflow", "role": "af", "sha256": tokens["airflow"][1]}]})
    srv = make_server(store, port=0, access=config, access_log=where / "access.log")
    serve_in_thread(srv)
    yield srv, {k: t for k, (t, _) in tokens.items()}, where / "access.log"
    srv.shutdown()
    srv.server_close()


def get(srv: ViewerServer, token: str, path: str) -> tuple[int, Any]:
    status, _, body = request(srv.url, path, headers={"Authorization": f"Bearer {token}"})
    return status, json.loads(body)


def test_a_shared_run_id_opens_the_run_the_caller_may_see(server: tuple[ViewerServer, dict[str, str], Path]) -> None:
    srv, tokens, _ = server
    status, doc = get(srv, tokens["a"], "/api/trace/scheduled__1")
    assert status == 200 and doc["trace_id"] == tid(1) and doc["run"]["pipeline"] == "a_etl"
    assert get(srv, tokens["a"], "/api/export/scheduled__1")[0] == 200
    assert get(srv, tokens["a"], f"/api/trace/{tid(2)}")[0] == 404


def test_in_progress_runs_and_links_into_hidden_runs(server: tuple[ViewerServer, dict[str, str], Path]) -> None:
    srv, tokens, _ = server
    status, doc = get(srv, tokens["a"], "/api/runs?status=running")
    assert status == 200 and [r["pipeline"] for r in doc["runs"]] == ["a_live"]
    assert get(srv, tokens["a"], f"/api/trace/{tid(5)}")[0] == 200
    assert get(srv, tokens["shared_airflow"], f"/api/trace/{tid(5)}")[0] == 404
    status, doc = get(srv, tokens["a"], f"/api/trace/{tid(6)}")
    (target,) = doc["linked"].values()
    assert target == {"trace": tid(2), "span": f"{2:015x}2", "stored": False, "name": None, "pipeline": None,
                      "run_id": None, "system": None}
    status, doc = get(srv, tokens["a"], "/api/runs")
    assert {r["pipeline"] for r in doc["runs"]} == {"a_etl", "a_live"} and set(doc["pipelines"]) == {"a_etl", "a_live"}


def test_one_pipeline_name_in_two_systems(server: tuple[ViewerServer, dict[str, str], Path]) -> None:
    srv, tokens, _ = server
    token = tokens["shared_airflow"]
    status, doc = get(srv, token, "/api/runs")
    assert [(r["system"], r["pipeline"]) for r in doc["runs"]] == [("airflow", "shared")]
    assert get(srv, token, f"/api/trace/{tid(3)}")[0] == 200 and get(srv, token, f"/api/trace/{tid(4)}")[0] == 404
    assert get(srv, token, "/api/trace/r4")[0] == 404
    # task history mixes both systems' attempts: refused rather than leaking the celery ones
    assert get(srv, token, "/api/history?pipeline=shared&task=work")[0] == 404
    assert get(srv, tokens["a"], "/api/history?pipeline=a_etl&task=work")[0] == 200


def test_a_whole_system_is_not_crowded_out_by_newer_runs_of_another(
        server: tuple[ViewerServer, dict[str, str], Path]) -> None:
    """60 newer celery runs must not push a "every airflow pipeline" principal's runs past the limit."""
    srv, tokens, _ = server
    status, doc = get(srv, tokens["airflow"], "/api/runs?limit=3")
    assert status == 200 and len(doc["runs"]) == 3 and {r["system"] for r in doc["runs"]} == {"airflow"}
    assert set(doc["pipelines"]) == {"a_etl", "b_etl", "shared", "a_live"}
    assert get(srv, tokens["airflow"], f"/api/trace/{tid(4)}")[0] == 404  # shared, but on celery


def test_access_log_lines_and_last_seen(server: tuple[ViewerServer, dict[str, str], Path]) -> None:
    srv, tokens, log = server
    status, headers, _ = request(srv.url, "/api/runs?limit=3&token=" + tokens["a"])
    assert status == 303 and headers["location"] == "/api/runs?limit=3"
    assert headers["set-cookie"].startswith(f"pipetrace_token={tokens['a']};")
    assert request(srv.url, "/api/runs")[0] == 401
    # each line is written by its request's thread just after the response, so on a busy machine the second
    # request's line may land first: the last two lines are compared in any order
    want = sorted([["team-a", "127.0.0.1", "GET", "/api/runs", "303"], ["-", "127.0.0.1", "GET", "/api/runs", "401"]])
    deadline = time.monotonic() + 5
    while sorted(line.split()[1:] for line in log.read_text().splitlines()[-2:]) != want and (
            time.monotonic() < deadline):
        time.sleep(0.01)
    lines = log.read_text().splitlines()
    assert sorted(line.split()[1:] for line in lines[-2:]) == want
    signed_in = next(line for line in lines[-2:] if line.split()[1] == "team-a")
    assert tokens["a"] not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
    seen = last_seen(log)
    assert set(seen) >= {"team-a", "shared-af", "all-airflow"} and seen["team-a"] == signed_in.split()[0]
