"""A resource configured from ``EnvVar`` gets its value masked in every span of the run — in a failed
op's status and exception event and in a user span's name, where no detector would recognise it."""

from __future__ import annotations

import pipetrace
import pytest
from dagster import ConfigurableResource, Definitions, EnvVar, job, op


class Warehouse(ConfigurableResource):  # type: ignore[misc]
    password: str


@op
def load(warehouse: Warehouse) -> None:
    with pipetrace.get_tracer().start_as_current_span(f"login {warehouse.password}"):
        pass
    raise RuntimeError(f"login refused for {warehouse.password}")


@job
def secret_job() -> None:
    load()


def test_env_var_resource_value_is_masked_everywhere(instrumented, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    value = "Vb4Lk9Zx2Wm7Pq"
    monkeypatch.setenv("PT_WAREHOUSE_PASSWORD", value)
    defs = Definitions(jobs=[secret_job], resources={"warehouse": Warehouse(password=EnvVar("PT_WAREHOUSE_PASSWORD"))})
    result = defs.resolve_job_def("secret_job").execute_in_process(raise_on_error=False)
    assert not result.success
    spans = instrumented.spans(result.run_id)
    assert {"run secret_job", "task load", "login ***"} <= {s.name for s in spans}
    assert [s.name for s in spans if value in repr(s.to_json())] == []
    blob = b"".join(p.read_bytes() for p in sorted(instrumented.home.glob("traces.db*")))
    assert value.encode() not in blob


def test_env_var_get_value_is_registered(instrumented, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from pipetrace.redaction import KNOWN

    monkeypatch.setenv("PT_DIRECT_SECRET", "Direct7Secret9x")
    assert EnvVar("PT_DIRECT_SECRET").get_value() == "Direct7Secret9x"
    assert KNOWN.mask("x Direct7Secret9x") == "x ***"
