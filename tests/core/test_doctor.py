"""`pipetrace doctor` tells the truth about this environment, and a missing `otlp` extra never turns
tracing off: the store keeps every span and the process says once what to install."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from cli_run import clean_env, piped


@pytest.fixture
def listening() -> Iterator[str]:
    """An endpoint that accepts connections (doctor only connects)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def shadow(tmp_path: Path, dotted: str) -> str:
    """A PYTHONPATH entry where importing ``dotted`` raises ImportError, as if its package were missing or
    broken (namespace parents stay namespaces, so only that package is hidden)."""
    root = tmp_path / "shadow"
    package = root.joinpath(*dotted.split("."))
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"raise ImportError('no module named {dotted} (shadowed by the test)', "
                                         f"name={dotted!r})\n")
    return str(root)


def installed(dist: str) -> bool:
    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


def doctor_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in out.stdout.splitlines() if line[:1] in "✓✗·"]


def test_ok_environment_exits_0_and_lists_only_importable_orchestrators(tmp_path: Path, listening: str) -> None:
    out = piped("doctor", home=tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=listening)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = doctor_lines(out)
    assert any(line.startswith("✓ store exporter") for line in lines)
    assert any(line.startswith("✓ OTLP exporter: http/protobuf exporter installed") for line in lines)
    assert any(line.startswith("✓ OTLP endpoint") for line in lines)
    adapters = next(line for line in lines if line.startswith("· adapters"))
    for name, dist in (("airflow", "apache-airflow"), ("celery", "celery"), ("dagster", "dagster"),
                       ("kombu", "kombu"), ("prefect", "prefect")):
        listed = re.search(rf"\b{name} \d", adapters) is not None
        assert listed == installed(dist), adapters


def test_endpoint_set_but_otlp_extra_missing_is_a_cross_with_the_install_command(tmp_path: Path,
                                                                                  listening: str) -> None:
    out = piped("doctor", home=tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=listening,
                PYTHONPATH=shadow(tmp_path, "opentelemetry.exporter.otlp"))
    assert out.returncode == 1, out.stdout + out.stderr
    (line,) = [ln for ln in doctor_lines(out) if "OTLP exporter" in ln]
    assert line.startswith("✗ OTLP exporter") and 'pip install "pipetrace[otlp]"' in line


def test_orchestrator_that_does_not_import_is_a_cross(tmp_path: Path) -> None:
    out = piped("doctor", home=tmp_path, PYTHONPATH=shadow(tmp_path, "celery"))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = doctor_lines(out)
    assert any(ln.startswith("✗ celery adapter: celery is installed but does not import") for ln in lines), lines
    assert not re.search(r"\bcelery \d", next(ln for ln in lines if ln.startswith("· adapters")))


def test_unreachable_endpoint_and_disabled_tracing(tmp_path: Path) -> None:
    out = piped("doctor", home=tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert out.returncode == 1
    assert any(ln.startswith("✗ OTLP endpoint: 127.0.0.1:9") for ln in doctor_lines(out))
    off = piped("doctor", home=tmp_path, PIPETRACE_ENABLED="false")
    assert off.returncode == 0 and "· tracing: off (PIPETRACE_ENABLED=false)" in off.stdout


SCRIPT = """
import json, pipetrace
with pipetrace.task_span("python", "etl", "no-otlp", "extract"):
    pass
assert pipetrace.force_flush(10)
print(json.dumps(pipetrace.stats()))
"""


def test_missing_otlp_extra_keeps_tracing_to_the_store(tmp_path: Path, listening: str) -> None:
    env = clean_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=listening,
                    PYTHONPATH=shadow(tmp_path, "opentelemetry.exporter.otlp"))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "disabled" not in out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if "OTLP export is off" in ln]
    assert len(warnings) == 1 and 'pip install "pipetrace[otlp]"' in warnings[0], out.stderr
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert "otlp" not in stats and stats["store"]["exported"] >= 1, stats
    runs = json.loads(piped("runs", "--json", home=tmp_path).stdout)
    assert [r["run_id"] for r in runs] == ["no-otlp"]
