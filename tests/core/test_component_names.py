"""service.name per component: what an adapter names its process, unless the user named the service."""

from __future__ import annotations

import subprocess
import sys

from cli_run import clean_env

SCRIPT = """
import json, pipetrace
pipetrace.set_component("early-part")          # before configure: used when the provider is built
with pipetrace.task_span("python", "p", "r", "a"):
    pass
pipetrace.set_component("worker-part")          # after: the provider's resource follows
with pipetrace.task_span("python", "p", "r", "b"):
    pass
pipetrace.set_component("producer-part", override=False)   # a named process keeps its name
with pipetrace.task_span("python", "p", "r", "c"):
    pass
import time
pipetrace.run_span("python", "p", "r", start=time.time() - 1, end=time.time(), result="success")
assert pipetrace.force_flush(10)
from pipetrace.store import SpanStore
spans = SpanStore(pipetrace.settings().store_path).trace("r")
print(json.dumps({s.task: [s.resource.get("service.name"), s.resource.get("service.instance.id")]
                  for s in spans if s.task}))
"""


def _names(tmp_path, **env: str) -> dict[str, list[str]]:
    import json

    out = subprocess.run([sys.executable, "-c", SCRIPT], env=clean_env(tmp_path, **env), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_component_becomes_service_name(tmp_path) -> None:
    names = _names(tmp_path)
    assert {k: v[0] for k, v in names.items()} == {"a": "early-part", "b": "worker-part", "c": "worker-part"}
    instance_ids = {v[1] for v in names.values()}
    assert len(instance_ids) == 1 and None not in instance_ids  # service.instance.id as before: one per process


def test_user_service_name_wins(tmp_path) -> None:
    names = _names(tmp_path, OTEL_SERVICE_NAME="billing")
    assert {v[0] for v in names.values()} == {"billing"}
    names = _names(tmp_path, OTEL_RESOURCE_ATTRIBUTES="service.name=ledger,team=data")
    assert {v[0] for v in names.values()} == {"ledger"}
