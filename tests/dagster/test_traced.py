"""``traced(defs)``: the one-line activation for deployments whose launch command you don't control."""

from __future__ import annotations

import importlib

from conftest import tree
from pipetrace.integrations.dagster import is_instrumented, uninstrument


def test_traced_definitions_instrument_the_loading_process(traced) -> None:  # noqa: ANN001
    uninstrument()
    assert not is_instrumented()
    definitions = importlib.import_module("definitions")
    definitions = importlib.reload(definitions)  # loading the code location is what activates tracing
    try:
        assert is_instrumented()
        job = definitions.defs.resolve_job_def("fan_in_job")
        result = job.execute_in_process()
        assert result.success
        assert tree(traced.spans(result.run_id)).splitlines()[0] == "run fan_in_job"
        assert len(traced.spans(result.run_id)) == 6
    finally:
        uninstrument()
