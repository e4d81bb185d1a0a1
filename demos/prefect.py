"""The Prefect part of ``pipetrace demo``: the fan-in example flow in Prefect's ephemeral mode."""

from __future__ import annotations

import os
import tempfile


def run() -> str:
    """Run ``pt_fan_in`` traced; return its trace id (hex)."""
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pipetrace-prefect-demo-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the ephemeral server's start is given 20 s by default: a busy laptop or a small VM can need more
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from pipetrace.identity import RunIdentity
    from pipetrace.integrations.prefect import instrument
    from pipetrace.integrations.prefect.runs import SYSTEM
    from prefect import flow, task

    instrument()

    @task
    def extract(part: int) -> list[int]:
        return list(range(part * 3, part * 3 + 3))

    @task
    def combine(a: list[int], b: list[int]) -> int:
        return sum(a) + sum(b)

    @flow(name="pipetrace_demo")
    def demo_flow() -> int:
        return combine.submit(extract.submit(0), extract.submit(1)).result()  # type: ignore[call-overload]

    state = demo_flow(return_state=True)
    run_id = str(state.state_details.flow_run_id)
    return f"{RunIdentity(SYSTEM, 'pipetrace_demo', run_id).trace_id:032x}"
