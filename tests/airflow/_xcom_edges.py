"""What Airflow itself served: every XCom read the in-process supervisor answered, as producer rows.

The observer sits on the supervisor side of ``dag.test()`` (``ActivitySubprocess._handle_request``,
the code that answers a task's ``GetXCom`` / ``GetXComSequenceItem`` / ``GetXComSequenceSlice``
requests from the metadata DB), not on the task-side methods pipetrace wraps. After the run each request
is resolved against the XCom table exactly as the Execution API resolves it (a map index, or an offset
into the rows ordered by map index), and producer and consumer attempts get their try numbers from the
task-instance table. That is the orchestrator's own record of which data each attempt consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipetrace.identity import derive_task_span_id
from pipetrace.integrations.airflow.xcom import CARRIER_KEY

Edge = tuple[str, str]  # (consumer span id, producer span id), hex


@dataclass
class Observed:
    requests: list[tuple[tuple[str, int, int], Any]] = field(default_factory=list)


@contextmanager
def observe() -> Iterator[Observed]:
    from airflow.sdk.execution_time.comms import GetXCom, GetXComSequenceItem, GetXComSequenceSlice
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    seen = Observed()
    orig = ActivitySubprocess._handle_request

    def handle(self: Any, msg: Any, log: Any, req_id: int) -> Any:
        if isinstance(msg, (GetXCom, GetXComSequenceItem, GetXComSequenceSlice)) and msg.key != CARRIER_KEY:
            ti = self.ti
            mi = ti.map_index if ti.map_index is not None else -1
            seen.requests.append(((ti.task_id, int(mi), int(ti.try_number)), msg))
        return orig(self, msg, log, req_id)

    ActivitySubprocess._handle_request = handle  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        ActivitySubprocess._handle_request = orig  # type: ignore[method-assign]


def _rows(dag_id: str, run_id: str) -> dict[tuple[str, str], list[int]]:
    """(task, key) → map indexes with an XCom row, ascending (the Execution API's order)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: dict[tuple[str, str], list[int]] = {}
    with create_session() as session:
        for task_id, key, mi in session.query(XComModel.task_id, XComModel.key, XComModel.map_index).filter(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id):
            out.setdefault((task_id, key), []).append(int(mi))
    return {k: sorted(v) for k, v in out.items()}


def _tries(dag_id: str, run_id: str) -> dict[tuple[str, int], int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {(t, int(m)): int(n) for t, m, n in session.query(
            TaskInstance.task_id, TaskInstance.map_index, TaskInstance.try_number).filter(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)}


def recorded_edges(seen: Observed, dag_id: str, run_id: str) -> set[Edge]:
    """Consumer attempt → producer attempt, for every XCom row Airflow served in this run."""
    from airflow.sdk.execution_time.comms import GetXCom, GetXComSequenceItem

    rows, tries = _rows(dag_id, run_id), _tries(dag_id, run_id)
    edges: set[Edge] = set()
    for (task, mi, try_number), msg in seen.requests:
        if msg.dag_id != dag_id or msg.run_id != run_id or getattr(msg, "include_prior_dates", False):
            continue
        present = rows.get((msg.task_id, msg.key), [])
        if isinstance(msg, GetXCom):
            wanted = -1 if msg.map_index is None else int(msg.map_index)
            served = [wanted] if wanted in present else []
        elif isinstance(msg, GetXComSequenceItem):
            off = msg.offset if msg.offset >= 0 else len(present) + msg.offset
            served = [present[off]] if 0 <= off < len(present) else []
        else:
            served = present[slice(msg.start, msg.stop, msg.step)]
        consumer = derive_task_span_id("airflow", dag_id, run_id, task, mi, try_number)
        for pmi in served:
            producer = derive_task_span_id("airflow", dag_id, run_id, msg.task_id, pmi,
                                           tries[(msg.task_id, pmi)])
            edges.add((f"{consumer:016x}", f"{producer:016x}"))
    return edges


def trace_links(spans: list[Any]) -> tuple[set[Edge], int]:
    """(consumer span, linked span) of every ``xcom`` link in the stored trace, and how many dangle."""
    ids = {s.span_id for s in spans}
    links = {(s.span_id, lk["span_id"]) for s in spans for lk in s.links
             if lk["attributes"].get("pipetrace.link.kind") == "xcom"}
    return links, sum(1 for _, target in links if target not in ids)
