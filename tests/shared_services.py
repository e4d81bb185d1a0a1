"""Services the tests share with everyone else on the machine, and private ones for fault tests.

The loopback PostgreSQL, Redis and RabbitMQ are shared with other work running at the same time, so a
test on them owns only what it names uniquely: Redis keys under its own ``global_keyprefix`` in DB 0
(never a whole database: nothing here selects, writes or flushes DBs 1-15), RabbitMQ queues and exchanges
with a random suffix. A test that stops or breaks a broker starts its own instance on free ports
(``PrivateRedis``, ``PrivateRabbitMQ``) and never touches the shared one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"  # DB 0 only, always with a key prefix of the test's own


def key_prefix(tag: str = "t") -> str:
    """A Redis key prefix no other test (or other person's run) uses: pass it as ``global_keyprefix``."""
    return f"pipetrace-test:{tag}:{uuid.uuid4().hex[:10]}:"


def redis_options(prefix: str) -> dict[str, str]:
    """kombu/Celery transport options that keep every key of a connection under ``prefix``."""
    return {"global_keyprefix": prefix}


def delete_prefixed_keys(prefix: str, url: str = REDIS) -> int:
    """Delete this test's keys (and only them); returns how many. Never FLUSHDB on a shared server."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        return len(keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port, no persistence; yields its URL (DB 0)."""
    server = shutil.which("redis-server")
    if server is None:
        raise AssertionError("redis-server is not installed (apt-get install redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), workdir / "redis.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(workdir)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, 30, "private redis-server", proc, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


def _rabbit_bin(name: str) -> str:
    """The real RabbitMQ script (Debian's /usr/sbin wrappers switch to the rabbitmq user and its cookie)."""
    direct = Path("/usr/lib/rabbitmq/bin") / name
    found = str(direct) if direct.exists() else shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed (apt-get install rabbitmq-server)")
    return found


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own: its own node name, AMQP and distribution ports, Erlang cookie,
    data and log directories and a config without plugins, so stopping it touches nobody else."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.node = f"pt-{uuid.uuid4().hex[:10]}@localhost"
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        (w / "enabled_plugins").write_text("[].\n")
        (w / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n")
        cookie = w / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o600)
        dist = free_port()
        return dict(os.environ, HOME=str(w), RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_PORT=str(self.port),
                    RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_DIST_PORT=str(dist),
                    RABBITMQ_MNESIA_BASE=str(w / "mnesia"), RABBITMQ_LOG_BASE=str(w / "log"),
                    RABBITMQ_CONFIG_FILE=str(w / "rabbitmq"), RABBITMQ_ENABLED_PLUGINS_FILE=str(w / "enabled_plugins"),
                    RABBITMQ_PLUGINS_EXPAND_DIR=str(w / "plugins"), RABBITMQ_PID_FILE=str(w / "rabbit.pid"),
                    ERL_CRASH_DUMP=str(w / "erl_crash.dump"))

    def start(self, timeout: float = 120) -> PrivateRabbitMQ:
        log = self.workdir / "server.log"
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen([_rabbit_bin("rabbitmq-server")], cwd=self.workdir, env=self.env,
                                         stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, timeout, f"private RabbitMQ node {self.node}", self.proc, log)
        return self

    def ctl(self, *args: str, timeout: float = 120) -> None:
        """``rabbitmqctl -n <this node> ...``: never addresses the machine's own node."""
        subprocess.run([_rabbit_bin("rabbitmqctl"), "-n", self.node, *args], env=self.env, check=True,
                       capture_output=True, timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.ctl("stop", timeout=60)
        except (subprocess.SubprocessError, OSError):
            pass
        _stop(self.proc)
        self.proc = None


@contextmanager
def private_rabbitmq(workdir: Path) -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ(workdir).start()
    try:
        yield node
    finally:
        node.stop()
