"""A throwaway PostgreSQL cluster for fault tests (initdb + pg_ctl on a free port; never the shared server)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


class PrivatePostgres:
    """One cluster in a temp dir, as the ``postgres`` OS user when running as root (initdb refuses root).

    ``data`` puts the data directory elsewhere (e.g. on a small tmpfs, to fill it); the WAL then stays in
    the temp dir, like a WAL volume of its own, so a full data disk fails writes instead of the server."""

    def __init__(self, data: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pt-pg-"))
        self.data = data or self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        waldir = ["--waldir", str(self.dir / "wal")] if data else []
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", *waldir)

    def pids(self) -> list[int]:
        """The postmaster and every process it started (for SIGSTOP/SIGCONT: a frozen server)."""
        master = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == master]
        return [master, *children]

    def _run(self, *cmd: str) -> None:
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", "start")

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError("private PostgreSQL did not start")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
