"""User mistakes end in one line with a hint and exit 1 or 2, never a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pipetrace
import pytest
from cli_run import piped


@pytest.fixture
def home(traced) -> Path:
    t0 = time.time()
    with pipetrace.task_span("python", "etl", "err-run", "extract"):
        pass
    pipetrace.run_span("python", "etl", "err-run", start=t0, end=time.time(), result="success")
    traced.flush()
    return traced.home


def one_line_error(out, code: int, *needles: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("command", ["export", "report"])
def test_output_path_mistakes(home: Path, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-folder" / "run.out"
    one_line_error(piped(command, "err-run", "-o", str(missing), home=home), 2, "does not exist", "mkdir -p")
    one_line_error(piped(command, "err-run", "-o", str(tmp_path), home=home), 2, "is a directory")
    target = tmp_path / "run.out"
    target.write_text("keep me")
    one_line_error(piped(command, "err-run", "-o", str(target), home=home), 2, "already exists", "--force")
    assert target.read_text() == "keep me"
    forced = piped(command, "err-run", "-o", str(target), "--force", home=home)
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() != "keep me"
    under_file = target / "x.out"
    one_line_error(piped(command, "err-run", "-o", str(under_file), home=home), 2, "is not a folder")


def test_read_only_output(home: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through file modes: a path in /proc is read-only for everyone
        target = Path("/proc/pipetrace-test-export.json")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "run.json"
    out = piped("export", "err-run", "-o", str(target), home=home)
    assert out.returncode == 1, out.stderr
    one_line_error(out, 1, f"cannot write {target}")


def test_home_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    for args in (["runs"], ["show", "x"], ["export", "x"], ["report", "x", "-o", str(tmp_path / "r.html")],
                 ["critical-path", "x"]):
        out = piped(*args, home=blocker / "home")
        one_line_error(out, 1, "cannot open the store", f"{blocker} is a file", "PIPETRACE_HOME")


def test_unknown_system_names_the_valid_ones(home: Path) -> None:
    out = piped("runs", "--system", "bogus", home=home)
    one_line_error(out, 2, "'bogus'", "airflow", "celery", "dagster", "kombu", "prefect", "python")
    assert out.stdout == ""
    known_empty = piped("runs", "--system", "dagster", home=home)  # a real system with no runs: not an error
    assert known_empty.returncode == 0 and "no runs match" in known_empty.stderr


def test_unknown_id_and_format(home: Path) -> None:
    one_line_error(piped("show", "nope", home=home), 1, "no trace found for 'nope'", "pipetrace runs")
    one_line_error(piped("export", "err-run", "-f", "zipkin", home=home), 2, "otlp-json or jaeger-json")


def test_bad_configuration_is_one_line(home: Path) -> None:
    out = piped("runs", home=home, PIPETRACE_EXPORTERS="carrier-pigeon")
    one_line_error(out, 2, "PIPETRACE_EXPORTERS", "pipetrace doctor")
