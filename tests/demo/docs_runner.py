"""Runs the shell commands of README.md and the quick starts (used by test_docs and the demo tests).

Commands come from the fenced ``bash``/``sh``/``shell`` blocks of README.md and of each quick start that
docs/index.md links under "Quick starts". One document is one test: its blocks run in order in one
environment (a fresh copy of the checkout as working directory, its own PIPETRACE_HOME), so an
``export`` or a ``pip install`` carries over to the document's later commands. The conventions, also
stated in docs/index.md:

* ``# runs until Ctrl+C`` in a command's comment: it is started in the background, must still be running
  after WARMUP_S seconds, keeps running while the rest of its block runs (a worker, then a producer) and
  is stopped with Ctrl+C (SIGINT) at the end of the block.
* ``pip install ".[X]"`` (or ``"pipetrace[X]"``) installs from the checkout under test, not from an index: a
  fresh virtualenv for the document, ``uv pip install -e "<checkout>[X]"``, first on PATH afterwards; any
  other ``pip install PKG`` goes into that virtualenv with ``uv pip install``.
  ``python3 -m venv D`` / ``D/bin/pip install`` run as ``uv venv D`` / ``uv pip install`` (the same
  result; uv's cache makes it seconds).
* The user's own files the commands name (``-A proj``, ``producer.py``, ``my_defs.py``, ``my_flow.py``…)
  are small real programs in tests/demo/docs_fixtures, copied next to the commands.
* Placeholders ``<…>``, ``TRACE_ID``, ``RUN_ID``, ``ID`` become the id the document's last ``pipetrace runs``
  printed (its newest run: the trace id, or the run id for ``RUN_ID``), as a user copies it; commands run at
  ``COLUMNS=80``. Without an earlier ``pipetrace runs``, the newest trace id in the store.
* ``scripts/test-all`` is what CI runs (it runs this test): it is syntax-checked, not re-entered.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from demo_env import REPO, clean_env, ctrl_c_works
from pipetrace.store import SpanStore

WARMUP_S = 5.0
COMMAND_TIMEOUT_S = 240.0
LONG_RUNNING = "runs until Ctrl+C"
FIXTURES = Path(__file__).resolve().parent / "docs_fixtures"
PLACEHOLDER = re.compile(r"<[^>]+>|\b(?:TRACE_ID|RUN_ID|ID)\b")
PIP_EXTRA = re.compile(r"""^pip install (['"]?)(?:pipetrace|\.)\[([\w,]+)\]\1$""")
SHELL = ("bash", "sh", "shell")
COMMAND_WORDS = {"pip", "pipetrace", "python", "python3", "export", "bash", "uv", "celery", "dagster", "airflow",
                 "prefect"}
# What each document's commands must have traced by its end.
EXPECTED_SYSTEMS = {"README.md": {"python", "airflow", "dagster", "celery"}, "celery.md": {"celery"},
                    "dagster.md": {"dagster"}, "prefect.md": {"prefect"},
                    "airflow.md": set()}  # its quick start installs; running a DAG is in docs/airflow.md's prose
# kombu's spans carry no `pipetrace.system` yet, so for kombu.md the span names are checked.
EXPECTED_SPANS = {"kombu.md": {"send docs_orders", "process docs_orders"}}
COPY_IGNORE = shutil.ignore_patterns(".venvs", ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist",
                                     ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "*.db*")


@dataclass
class Command:
    doc: str
    line: int
    text: str  # the command without its trailing comment
    comment: str

    @property
    def long_running(self) -> bool:
        return LONG_RUNNING in self.comment


def quick_starts() -> list[Path]:
    index = (REPO / "docs" / "index.md").read_text()
    line = next(ln for ln in index.splitlines() if "Quick starts" in ln)
    return [REPO / "docs" / name for name in re.findall(r"\]\(([\w-]+\.md)\)", line)]


def documents() -> list[Path]:
    return [REPO / "README.md", *quick_starts()]


def _split_comment(line: str) -> tuple[str, str]:
    """``cmd  # comment`` → (cmd, comment), respecting quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def commands(doc: Path) -> list[list[Command]]:
    """The commands of each shell block of ``doc``, continuation lines joined."""
    blocks: list[list[Command]] = []
    current: list[Command] = []
    lang: str | None = None  # the open fence's language ("" untyped), None outside a fence
    pending = ""
    start = 0
    for number, raw in enumerate(doc.read_text().splitlines(), 1):
        fence = raw.strip()
        if lang is None:
            if fence.startswith("```"):
                lang, current = fence[3:].strip(), []
            continue
        if fence == "```":
            # an untyped block counts when every line is a command (e.g. a lone `pip install ...`)
            if lang in SHELL or (lang == "" and all(c.text.split()[0] in COMMAND_WORDS for c in current)):
                blocks.append(current)
            lang = None
            continue
        if lang not in SHELL and lang != "":
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        text, comment = _split_comment(pending + raw)
        pending = ""
        if text.strip():
            current.append(Command(doc.name, start, text.strip(), comment))
    return [b for b in blocks if b]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Session:
    """One document's shell: working copy, environment, virtualenv, background processes."""

    def __init__(self, tmp: Path) -> None:
        self.work = tmp / "checkout"
        shutil.copytree(REPO, self.work, ignore=COPY_IGNORE)
        for f in FIXTURES.glob("*.py"):
            shutil.copy(f, self.work / f.name)
        self.home = tmp / "pipetrace-home"
        self.venv = tmp / "venv"
        assert _answers(5672), "the Celery commands need RabbitMQ on 127.0.0.1:5672 (.ci/run starts it)"
        self.env = clean_env(
            self.home, PIPETRACE_DOCS_REPO=str(self.work), PREFECT_HOME=str(tmp / "prefect"),
            PIPETRACE_EXAMPLE_BROKER="amqp://guest:guest@127.0.0.1:5672//", PIPETRACE_EXAMPLE_BACKEND="rpc://",
            PIPETRACE_EXAMPLE_QUEUE=f"docs-{uuid.uuid4().hex[:8]}", COLUMNS="80")
        self.env.pop("VIRTUAL_ENV", None)
        self.background: list[tuple[Command, subprocess.Popen[bytes]]] = []
        self.log = tmp / "commands.log"
        self.python = f"{sys.version_info.major}.{sys.version_info.minor}"
        self.last_runs: str | None = None  # what the document's last `pipetrace runs` printed

    # ---- rewriting -------------------------------------------------------------------------------
    def rewrite(self, cmd: Command) -> str | None:
        """The shell text to run for ``cmd`` (None: handled here)."""
        text = cmd.text
        match = PIP_EXTRA.match(text)
        if match:
            self._fresh_venv(match.group(2))
            return None
        if text.startswith("pip install "):  # another package, into the document's virtualenv
            assert (self.venv / "bin").exists(), f"{cmd.doc}:{cmd.line}: `{text}` before any pipetrace install"
            return f"VIRTUAL_ENV={shlex.quote(str(self.venv))} uv pip install -q {text[len('pip install '):]}"
        if "scripts/test-all" in text:
            self._check_test_all()
            return None
        text = re.sub(r"\bpython3? -m venv (\S+)", rf"uv venv -q --python {self.python} \1", text)
        text = re.sub(r"(\S+)/bin/pip install", r"VIRTUAL_ENV=\1 uv pip install -q", text)
        if PLACEHOLDER.search(text):
            text = PLACEHOLDER.sub(lambda m: self._copied_id(cmd, m.group(0)), text)
        return text

    def _copied_id(self, cmd: Command, placeholder: str) -> str:
        """The id a user copies from the last ``pipetrace runs`` output (tab-separated in a pipe): whole,
        and the newest run's, which the store confirms."""
        if self.last_runs is None:
            return self._newest_trace_id(cmd)
        lines = self.last_runs.splitlines()
        header = lines[0].split("\t")
        assert "trace id" in header and len(lines) > 1, f"{cmd.doc}:{cmd.line}: no run to copy from:\n{self.last_runs}"
        row = dict(zip(header, lines[1].split("\t"), strict=True))
        column = "run id" if placeholder == "RUN_ID" and row["run id"] else "trace id"
        assert self._newest_trace_id(cmd) == row["trace id"], f"{cmd.doc}:{cmd.line}: runs printed {row}"
        return row[column]

    def _fresh_venv(self, extras: str) -> None:
        if not (self.venv / "bin" / "python").exists():
            self._run_checked(f"uv venv -q --python {self.python} {shlex.quote(str(self.venv))}")
        self._run_checked(f"VIRTUAL_ENV={shlex.quote(str(self.venv))} uv pip install -q -e "
                          f"{shlex.quote(f'{self.work}[{extras}]')}")
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{self.env['PATH']}"
        self.env["VIRTUAL_ENV"] = str(self.venv)

    def _check_test_all(self) -> None:
        script = self.work / "scripts" / "test-all"
        subprocess.run(["bash", "-n", str(script)], check=True)
        envs = (self.work / "scripts" / "envs.txt").read_text()
        assert re.search(r"^demo\s+\S+\s+.*tests/demo", envs, re.M), "scripts/envs.txt must run tests/demo"

    def _newest_trace_id(self, cmd: Command) -> str:
        runs = SpanStore(self.home / "traces.db").runs(limit=1) if (self.home / "traces.db").exists() else []
        assert runs, f"{cmd.doc}:{cmd.line}: `{cmd.text}` needs a trace id, but nothing was traced before it"
        return runs[0].trace_id

    # ---- running ---------------------------------------------------------------------------------
    def _run_checked(self, text: str) -> None:
        proc = subprocess.run(["bash", "-c", text], cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        assert proc.returncode == 0, f"`{text}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"

    def run(self, cmd: Command) -> str:
        """Run one command as the docs' conventions say; its standard output."""
        text = self.rewrite(cmd)
        if text is None:
            return ""
        where = f"{cmd.doc}:{cmd.line}: `{cmd.text}`"
        if re.fullmatch(r"export \w+=\S*", text):
            name, _, value = text[len("export "):].partition("=")
            self.env[name] = value.strip("'\"")
            return ""
        if cmd.long_running:
            out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
            started = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=self.work, env=dict(self.env), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=ctrl_c_works)
            out.close()
            time.sleep(WARMUP_S)
            assert started.poll() is None, f"{where} ended after start (exit {started.returncode}):\n{self._tail()}"
            self.background.append((cmd, started))
            return ""
        try:
            proc = subprocess.run(["bash", "-c", text], cwd=self.work, env=self.env, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{where} still running after {COMMAND_TIMEOUT_S:.0f}s; if it is meant to run until "
                        f"stopped, add the comment '# {LONG_RUNNING}' to it in the docs")
        assert proc.returncode == 0, f"{where} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if re.match(r"pipetrace runs\b(?!.*--json)", text):
            self.last_runs = proc.stdout
        return proc.stdout

    def stop_background(self) -> None:
        """Ctrl+C to each long-running command's process group (ours), then wait; kill what is left."""
        died = [f"{cmd.doc}:{cmd.line}: `{cmd.text}` (exit {proc.returncode})"
                for cmd, proc in self.background if proc.poll() is not None]
        for _, proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for _, proc in self.background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.background.clear()
        assert not died, f"stopped on its own before the end of its block: {died}\n{self._tail()}"

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stored(self, column: str) -> set[str]:
        """Distinct values of a store column (``system``, ``name``) over every span the doc's commands made."""
        db = self.home / "traces.db"
        if not db.exists():
            return set()
        rows = SpanStore(db)._query(f"SELECT DISTINCT {column} FROM spans WHERE {column} IS NOT NULL")  # noqa: SLF001
        return {r[0] for r in rows}


