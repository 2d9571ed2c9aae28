"""Fresh kernels in milliseconds: a fork server behind jupyter_client's public provisioner interface.

Why this design. Every run gets a kernel of its own (no state crosses incidents), and starting one
(a Python process, ipykernel, pandas, matplotlib, ``smartops_nb``) costs ~1.5 s of CPU, more than a
warm run itself. Keeping more kernels warm only moves that cost, and each holds ~150 MiB of its own.
So one *template* process (:mod:`smartops_nb.kernel.template`) pays the imports once (everything a
warm-up loads, no socket, no thread, no matplotlib backend chosen), and every kernel is a ``fork()`` of it:
it starts with all of that loaded, its pages shared copy-on-write with the template and its siblings.
The rest of a kernel is an ordinary ipykernel: the child calls ``setsid`` (its own process group, so a
deadline's ``killpg`` ends what it started), takes the run's environment and working directory, and
runs ``IPKernelApp`` on the connection file jupyter_client wrote. Its sockets and threads are made
after the fork, in the child, as in a spawned kernel.

:class:`ForkProvisioner` is a ``LocalProvisioner`` whose ``launch_kernel`` asks the template for a
child instead of ``Popen``; signals, kill, wait and cleanup stay jupyter_client's (``killpg`` on the
kernel's group). The host watches a forked kernel (not its child) through a pidfd, which cannot be
fooled by a reused pid. Registered as the ``smartops-fork`` provisioner (a kernelspec can name it,
e.g. for JupyterLab); :func:`smartops_nb.execution.kernels.kernel_manager` sets it directly.

Lifetimes. The template is the host's child, in a session of its own (a terminal's Ctrl-C is the
host's to handle), started with ``close_fds`` and only its end of a socket pair; it reaps its children
(SIGCHLD) and exits when that socket closes (the host ended, however it ended). A kernel's ipykernel
parent poller watches the template: if the template dies, its kernels end within a second (their runs
fail with a partial record, as a killed kernel's do) and the next request starts a new template. Each
child closes every descriptor it inherited but 0-2 before it becomes a kernel. A forked kernel has no
debugger (a spawned one keeps debugpy's): see the template.

Not used for a kernel this interpreter cannot be (another kernelspec, another Python): those spawn.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from smartops_nb.support.reasons import one_line

log = logging.getLogger("smartops.forkserver")

#: How long the template may take to import everything (a loaded machine: several seconds).
TEMPLATE_START_TIMEOUT_S = 120
#: How long a fork request may take once the template is ready.
FORK_TIMEOUT_S = 30
#: How often a killed kernel's exit is polled while waiting for it.
WAIT_POLL_S = 0.005


def forkable(cmd: list[str]) -> bool:
    """A kernel command this interpreter's template can become: ``<this python> -m ipykernel_launcher ...``."""
    return (len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"]
            and os.path.abspath(cmd[0]) == os.path.abspath(sys.executable))


class ForkServer:
    """The host's side of one template process: :meth:`fork` a kernel, restarting the template if it died."""

    def __init__(self, python: str = sys.executable):
        self.python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self.starts = 0                     # templates started (a restart after a death counts)

    @property
    def template_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "smartops_nb.kernel.template", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), close_fds=True, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "MPLBACKEND": os.environ.get(
                    "MPLBACKEND") or "module://matplotlib_inline.backend_inline"})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(TEMPLATE_START_TIMEOUT_S)
        reader = ours.makefile("rb")
        try:
            hello = json.loads(reader.readline() or b"null")
            if not isinstance(hello, dict) or "ready" not in hello:
                raise RuntimeError(f"the kernel template did not start (said {hello!r})")
        except BaseException:
            reader.close()
            ours.close()
            _end(proc)
            raise
        self._proc, self._sock, self._reader = proc, ours, reader
        self.starts += 1
        log.info("kernel template %d ready (start %d)", proc.pid, self.starts)

    def _stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()  # the template sees EOF and exits
        if self._proc is not None:
            _end(self._proc)
        self._proc = self._sock = self._reader = None

    def fork(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        """A new kernel's pid: a child of the template running ``argv``'s ipykernel with ``env`` in ``cwd``.
        A dead or unanswering template is replaced once."""
        request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd)}).encode() + b"\n"
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    if self._proc is not None:
                        log.warning("kernel template %d exited (%s): starting another", self._proc.pid,
                                    self._proc.returncode)
                    self._stop()
                    self._start()
                try:
                    self._sock.settimeout(FORK_TIMEOUT_S)
                    self._sock.sendall(request)
                    reply = json.loads(self._reader.readline() or b"null")
                except (OSError, ValueError) as e:
                    reply = {"error": one_line(e)}
                if isinstance(reply, dict) and isinstance(reply.get("pid"), int):
                    return reply["pid"]
                log.warning("kernel template failed a fork (%s)", reply)
                self._stop()
                if attempt == 2:
                    raise RuntimeError(f"the kernel template cannot fork a kernel: {reply}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._stop()


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def server() -> ForkServer:
    """This process's fork server (its template starts at the first fork)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            import atexit

            _SERVER = ForkServer()
            atexit.register(_SERVER.close)  # the template (and any kernel left) ends before this process does
        return _SERVER


def _end(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ForkedKernel:
    """The part of ``Popen`` a provisioner uses, for a kernel that is not this process's child (the
    template's): alive while its pidfd is not readable; signals go to it only while it is alive."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._signalled = 0
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone (and reaped by the template)
            self._fd, self.returncode = None, 1

    def _exited(self, timeout: float) -> bool:
        if self._fd is None:
            return True
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return False
        os.close(self._fd)
        self._fd = None
        # its status is the template's (it reaped it); what we know: killed by us, or it ended
        self.returncode = -self._signalled if self._signalled else 0
        return True

    def poll(self) -> int | None:
        return self.returncode if self._exited(0) else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited(timeout if timeout is not None else None):  # type: ignore[arg-type]
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            if signum in (signal.SIGKILL, signal.SIGTERM):
                self._signalled = signum
            signal.pidfd_send_signal(self._fd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class ForkProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, its kernels forked from :func:`server`'s template."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        if not forkable(cmd):
            log.debug("not forkable, spawning: %s", cmd[:3])
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        env = kwargs.get("env") or dict(os.environ)
        # blocking: a fork takes milliseconds (seconds only when the template (re)starts); the caller's
        # thread is a kernel-start thread
        try:
            pid = server().fork(cmd, env, cwd)
        except Exception as e:  # noqa: BLE001 - no template (it cannot start): this kernel spawns, runs go on
            log.error("kernel template unavailable (%s): spawning this kernel", e)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid)
        self.pid = self.pgid = pid  # the child called setsid: its group is its pid
        self.cwd = cwd
        return self.connection_info

    async def wait(self) -> int | None:
        import asyncio

        if isinstance(self.process, ForkedKernel):
            while self.process.poll() is None:
                await asyncio.sleep(WAIT_POLL_S)
            ret, self.process = self.process.returncode, None
            return ret
        return await super().wait()

    async def cleanup(self, restart: bool = False) -> None:
        if isinstance(self.process, ForkedKernel):
            self.process.close()
        await super().cleanup(restart)
