"""Airflow's secrets masker is pipetrace's too: a connection password, a sensitive variable and a value
given to ``mask_secret`` are masked in every span of the run (span names, attributes, events, exception
and status), as is a secret in the run's conf — in the store file and its WAL, read raw."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pipetrace
import pytest

CONN_PW = "Cn8Pw3Zq7Lm2Xv"
VAR_VALUE = "Vr5Ky1Wd8Nh4Qs"
MASKED = "Mk2Jt6Rb9Fc3Gp"
CONF_PW = "Cf7Hs2Dn5Tw8Ya"
PLAIN = "turquoise-blue"


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PT_WAREHOUSE", f"postgresql://loader:{CONN_PW}@db.internal:5432/dwh")
    monkeypatch.setenv("AIRFLOW_VAR_PT_API_KEY", VAR_VALUE)
    monkeypatch.setenv("AIRFLOW_VAR_PT_COLOUR", PLAIN)


def test_airflow_masked_values_never_reach_the_store(store: Any, secrets_env: None) -> None:
    """Airflow's own accessors (as a task calls them) feed its masker; pipetrace masks what it holds."""
    from airflow.sdk import BaseHook, Variable
    from airflow.sdk.log import mask_secret

    password = BaseHook.get_connection("pt_warehouse").password
    api_key = Variable.get("pt_api_key")  # a sensitive name: Airflow masks its value
    plain = Variable.get("pt_colour")  # an ordinary name: its value stays visible
    mask_secret(MASKED)
    conf = {"target": f"postgresql://etl:{CONF_PW}@warehouse:5432/db", "retries": 3}
    tracer = pipetrace.get_tracer()
    with pytest.raises(RuntimeError), pipetrace.task_span("airflow", "pt_secrets", "manual__1", "use",
                                                          attributes={"airflow.dag_run.conf": repr(conf),
                                                                      "colour": plain}):
        with tracer.start_as_current_span(f"login {password}") as span:
            span.set_attribute("note", f"key {api_key} and {MASKED}")
            span.add_event(f"using {api_key}", {"detail": f"{password}/{MASKED}"})
        raise RuntimeError(f"{'x' * 1000} {password} {api_key} {MASKED} {conf['target']}")
    assert pipetrace.force_flush(10)
    spans = store.trace(f"{pipetrace.run_identity('airflow', 'pt_secrets', 'manual__1').trace_id:032x}")
    names = {s.name for s in spans}
    assert {"task use", "login ***"} <= names, names
    blob = b"".join(p.read_bytes() for p in sorted(Path(store.path).parent.glob("traces.db*")))
    for value in (CONN_PW, VAR_VALUE, MASKED, CONF_PW):
        assert value.encode() not in blob, value
        assert [s.name for s in spans if value in repr(s.to_json())] == [], value
    task_span = next(s for s in spans if s.name == "task use")
    assert task_span.status == "ERROR" and task_span.attributes["colour"] == PLAIN
    assert os.environ["AIRFLOW_VAR_PT_API_KEY"] == VAR_VALUE  # the test really had the values
