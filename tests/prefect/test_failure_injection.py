"""A failure inside pipetrace never fails a task or changes its result: each pipetrace step of the
adapter is made to raise in turn, and the example flows still return what they return untraced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pt_flows
import pytest
from pipetrace.adapter import runs as core_runs
from pipetrace.adapter.batches import Batch, Batches
from pipetrace.integrations.prefect import hooks, links, runs


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected pipetrace failure")


INJECTIONS: dict[str, tuple[Any, str]] = {
    "tracer": (core_runs, "get_tracer"),              # no span can start
    "identity": (runs, "flow_identity"),              # flow span start fails
    "flow-info": (runs, "flow_info_for_context"),     # task span start and map batches fail
    "member": (hooks, "take_member"),                 # task span start fails
    "open-batch": (Batches, "open"),                  # .map() batch fails
    "result": (runs, "result_of"),                    # every span end fails
    "state-attrs": (runs, "state_attrs"),             # state bookkeeping fails
    "labels": (runs, "native_attributes"),            # attribute building fails
    "link-kind": (links, "Link"),                     # the export transform fails
    "batch-emit": (Batch, "record"),                  # batch spans at flow end fail
}


@pytest.mark.parametrize("where", sorted(INJECTIONS))
def test_pipetrace_failure_never_reaches_the_flow(instrumented, monkeypatch, where: str) -> None:  # noqa: ANN001
    module, name = INJECTIONS[where]
    monkeypatch.setattr(module, name, _boom)
    expected: list[tuple[Callable[..., Any], tuple[Any, ...], Any]] = [
        (pt_flows.mapped, (3,), 5),
        (pt_flows.retried, (f"inject-{where}",), "ok after 3"),
        (pt_flows.fan_in, (), 7.5),
    ]
    for flow, args, value in expected:
        state = flow(*args, return_state=True)
        assert state.is_completed(), (where, flow, state)
        assert state.result() == value
    instrumented.flush()


def test_failing_flow_keeps_its_exception(instrumented, monkeypatch) -> None:  # noqa: ANN001
    """With pipetrace failing at span end, a failing task still fails with the user's own error."""
    from prefect import flow, task

    monkeypatch.setattr(runs, "result_of", _boom)

    @task
    def bad() -> None:
        raise KeyError("user error")

    @flow(name="pt_inject_fail")
    def f() -> None:
        bad()

    with pytest.raises(KeyError, match="user error"):
        f()
