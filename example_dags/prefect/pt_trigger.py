"""Create a run of the served ``pt_fan_in/pt-serve`` deployment from a traced process and wait for it.

Prints one JSON line: the flow run id, its final state, and the trace id / span id of the caller's span
(the deployment's run continues that trace, in the serving process)."""

from __future__ import annotations

import json
from typing import cast

from opentelemetry import trace
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment


def main() -> None:
    with trace.get_tracer("pt_trigger").start_as_current_span("trigger pt_fan_in") as span:
        flow_run = cast(FlowRun, run_deployment("pt_fan_in/pt-serve", timeout=240, poll_interval=1))
    ctx = span.get_span_context()
    state = flow_run.state.type.value if flow_run.state is not None else None
    print(json.dumps({"flow_run_id": str(flow_run.id), "state": state,
                      "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}))


if __name__ == "__main__":
    main()
