"""A Prefect ``Secret`` block's value is masked in every span once ``Secret.get()`` returned it — also
in a failed task's status, exception event and a parameter, where no detector would recognise it."""

from __future__ import annotations

import pipetrace
from prefect import flow, task
from prefect.blocks.system import Secret


def test_secret_block_value_is_masked_everywhere(instrumented) -> None:  # noqa: ANN001
    value = "Pq7Wm2Zx9Lk4Vb"

    @task
    def use(note: str) -> None:
        with pipetrace.get_tracer().start_as_current_span(f"query {note}"):
            pass
        raise RuntimeError(f"connection refused for {note}")

    @flow(name="pt_secret")
    def f() -> None:
        token = Secret(value=value).get()
        use(token)

    state = f(return_state=True)
    assert state.is_failed()
    spans = instrumented.spans()
    assert {"run pt_secret", "task use", "query ***"} <= {s.name for s in spans}
    assert [s.name for s in spans if value in repr(s.to_json())] == []
    bad = next(s for s in spans if s.name == "task use")
    assert bad.status == "ERROR" and "***" in (bad.status_message or "")
    blob = b"".join(p.read_bytes() for p in sorted(instrumented.home.glob("traces.db*")))
    assert value.encode() not in blob


def test_uninstrument_restores_secret_get(instrumented) -> None:  # noqa: ANN001
    from pipetrace.integrations.prefect import uninstrument

    assert hasattr(Secret.get, "__wrapped__")
    uninstrument()
    assert not hasattr(Secret.get, "__wrapped__")
