"""Warm kernels: started ahead of time with SmartOps, pandas and matplotlib already imported.

A cold papermill run spends most of its time starting a kernel and importing the scientific stack
(see shared/MACHINE-FACTS.md). A :class:`KernelPool` keeps a few kernels started and warmed; a run
*leases* one, uses it for that one run only, and the lease's end shuts it down and removes its
private folder, while a replacement is already starting in the background. No state can leak
from one incident to the next.

The per-run environment cannot be given to a kernel that is already running. The state file's
path is decided when the kernel starts (every kernel has a private folder holding its IPC
sockets, its connection file and the state file its one run will write; :class:`WarmKernel`
hands that path back to the runner), and the rest of the run's environment (headless flag,
contacts: ``runner.kernel_env``) is put into ``os.environ`` by :meth:`WarmKernel.set_env` just
before the run. Those cells and the warm-up cell run silently without history, so they leave no
trace in the record (execution counts still start at 1) and no names in the namespace; what
SmartOps reads from the environment it reads at use, not at import.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from smartops_nb.contract import STATE_ENV

from . import jupyter_adapter as jc_adapter

log = logging.getLogger("smartops.kernels")

#: Runs silently in a new kernel: imports and one chart (smartops_nb.kernel.warmup), no names left behind.
WARMUP_CODE = "__import__('smartops_nb.kernel.warmup', fromlist=['warm']).warm()\n"


@dataclass
class WarmKernel:
    """A started kernel for exactly one run, with the state file its run will write."""

    km: Any                      # a started kernel_manager() (AsyncKernelManager)
    kernel_name: str
    folder: Path
    started_s: float = 0.0       # seconds it took to start and warm up
    interrupted: str | None = None
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state_file(self) -> Path:
        return self.folder / "state.json"

    def set_env(self, env: dict[str, str], timeout: float = 30) -> None:
        """Put the run's environment into the kernel's ``os.environ`` (silent: no output, no history,
        no name left in the namespace, so the record shows nothing of it). Raises if the kernel fails."""
        code = f"__import__('os').environ.update({ {str(k): str(v) for k, v in env.items()}!r})"
        _silent_on_shell(self.km, code, timeout)

    def end(self, reason: str) -> None:
        """End the run on this kernel now, from any thread (a shutdown, a deadline, a job handed back):
        SIGKILL to the kernel's process group (what it started dies with it) and no kernel starts on this
        manager again (nbclient would start a fresh one, and the run would go on). Nothing else: the
        ZeroMQ sockets stay with the thread running the kernel, which notices the death (papermill raises,
        the record says why) and releases them in :meth:`close`. Closing a socket from another thread
        while it is in use makes libzmq abort the whole process."""
        with self._lock:
            if self.interrupted is None:
                self.interrupted = reason
            self.km.refuse(f"interrupted: {reason}")
        signal_group(self.km, signal.SIGKILL)

    def restart(self, timeout: float = 60) -> None:
        """A fresh kernel (no warm-up) in place of one that stopped answering: same folder, state file,
        environment and working directory, still interruptible. Raises once interrupted, or if the new
        kernel does not start."""
        from jupyter_core.utils import run_sync

        with self._lock:
            if self.interrupted:
                raise RuntimeError(f"interrupted: {self.interrupted}")
            # a restart, not shutdown + start: a full shutdown also ends the manager's ZMQ context
            run_sync(self.km.restart_kernel)(now=True)
        _silent(self.km, "", timeout)

    def close(self) -> None:
        """Release everything (kernel process, clients, sockets, context, folder): by the thread that ran it."""
        if self._closed:
            return
        self._closed = True
        release(self.km)
        shutil.rmtree(self.folder, ignore_errors=True)


#: How often a killed kernel's exit is polled (jupyter_client: 0.1 s).
KILL_POLL_S = 0.005
SOCKET_PATH_MAX = 108  # a unix socket's path, NUL included (sun_path on Linux)


#: ``fork`` or ``spawn``: how a warm pool's kernels start (see :func:`kernel_start`).
KERNEL_START_ENV = "SMARTOPS_KERNEL_START"
KERNEL_STARTS = ("fork", "spawn")


def kernel_start(default: str = "fork") -> str:
    """How a pool's kernels start: ``fork`` (from the fork server's template, :mod:`.forkserver`: ~all of
    the start-up paid once) or ``spawn`` (a new Python each, jupyter_client's own way); ``$SMARTOPS_KERNEL_START``
    overrides ``default``. A one-off run's own kernel spawns (a template would cost it more than it saves)."""
    value = os.environ.get(KERNEL_START_ENV, "").strip().lower() or default
    if value not in KERNEL_STARTS:
        raise ValueError(f"${KERNEL_START_ENV} must be one of {', '.join(KERNEL_STARTS)}, not {value!r}")
    return value


#: A run kernel's settings, on its command line. No input history: a headless run never reads it back,
#: and IPython's history database (a thread and a SQLite file in ``~/.ipython``) would keep every cell a
#: run executed, its parameters included; ~1.1 MiB less of each forked kernel's own memory.
RUN_KERNEL_ARGS = ("--HistoryManager.enabled=False",)


def kernel_manager(kernel_name: str, env: dict[str, str], folder: str, *, start: str = "spawn"):
    """An (unstarted) async kernel manager whose kernel gets ``env`` and :data:`RUN_KERNEL_ARGS`, talking
    over IPC files; ``start="fork"``:
    the kernel is forked from the fork server's template (:class:`.forkserver.ForkProvisioner`).

    It must be an *async* manager: with a blocking one, nbclient waits on a blocking socket read
    and never notices that the kernel died (the hang papermill users report).

    The manager owns one ZeroMQ context for itself and every client made from it (nbclient's);
    :func:`release` stops those clients' channels and destroys the context. Left to jupyter_client, a
    client's context and heartbeat thread outlive the run (nbclient does not stop the channels of a
    client on a kernel it was given): ~14 descriptors per run, until the process dies of them.
    """
    import zmq.asyncio
    from jupyter_client.manager import AsyncKernelManager

    class _EnvKernelManager(AsyncKernelManager):
        refused: str | None = None  # set when the run is ended from outside: no kernel starts on it again
        released: bool = False

        def refuse(self, reason: str) -> None:
            self.refused = reason

        async def start_kernel(self, **kw):  # nbclient calls this when it starts the kernel
            if self.refused:
                raise RuntimeError(self.refused)
            kw["env"] = {**kw.get("env", {}), **env}
            if any("ipykernel" in part for part in self.kernel_spec.argv):  # IPython's settings, IPython's kernel
                extra = list(kw.get("extra_arguments") or ())
                kw["extra_arguments"] = extra + [a for a in RUN_KERNEL_ARGS if a not in extra]
            if start == "fork" and self.provisioner is None:
                from .forkserver import ForkProvisioner

                self.kernel_id = self.kernel_id or str(uuid.uuid4())
                self.provisioner = ForkProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec,
                                                   parent=self)
            return await super().start_kernel(**kw)

        def client(self, **kw):
            kc = super().client(context=self.context, **kw)
            self.clients.append(kc)
            return kc

        _async_wait = jc_adapter.fine_kill_wait(AsyncKernelManager, KILL_POLL_S)

    km = _EnvKernelManager(kernel_name=kernel_name, transport="ipc", context=zmq.asyncio.Context(),
                           connection_file=os.path.join(folder, "kernel.json"))
    km.clients = []
    km.ipc_dir = None
    ipc = os.path.join(folder, "kernel-ipc")  # IPC socket files live in the run's private folder...
    if len(ipc.encode()) + len("-65535") >= SOCKET_PATH_MAX:
        # ... unless its path is too long for a unix socket (a deep $TMPDIR): then in a short private one
        km.ipc_dir = tempfile.mkdtemp(prefix="smartops-ipc-", dir="/tmp")
        ipc = os.path.join(km.ipc_dir, "kernel-ipc")
    km.ip = ipc
    km.client_factory = _ready_client_class()  # nbclient's client: no fixed 0.2 s in wait_for_ready
    return km


def release(km) -> None:
    """Stop the kernel and release all it holds: its clients' channels (and their heartbeat threads),
    the control socket, the IPC files, the ZeroMQ context. Call it from the thread that used the
    kernel last; twice is harmless."""
    if getattr(km, "released", False):
        return
    km.released = True
    for kc in getattr(km, "clients", ()):
        try:
            kc.stop_channels()
        except Exception as e:  # noqa: BLE001 - a half-started client: nothing more to stop
            log.debug("client channels: %s", e)
    shutdown_kernel(km)
    ctx = km.context
    if not ctx.closed:
        ctx.destroy(linger=0)
    if getattr(km, "ipc_dir", None):
        shutil.rmtree(km.ipc_dir, ignore_errors=True)


def close_thread_loop() -> None:
    """Close the event loop jupyter_client's blocking calls left on this thread (``run_sync`` makes one
    per thread and keeps it): for a thread about to end, so its selector and self-pipe are released now,
    not when the garbage collector finds them."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # none on this thread
        return
    asyncio.set_event_loop(None)
    if not loop.is_running():
        loop.close()


def signal_group(km, signum: int) -> None:
    """Send ``signum`` to the kernel's process group (jupyter_client's public ``signal_kernel``), from
    any thread: it touches no socket. A kernel already gone is not an error."""
    import asyncio

    if not km.has_kernel:
        return
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(km.signal_kernel(signum))
    except Exception as e:  # noqa: BLE001 - no kernel any more, or it exited or was released meanwhile
        log.debug("kernel signal %s: %s", signum, e)
    finally:
        loop.close()


#: How long a new client waits for more IOPub messages once the kernel answered (see wait_for_ready).
IOPUB_SETTLE_S = 0.02


async def wait_for_ready(kc, timeout: float | None = None) -> None:
    """jupyter_client's ``wait_for_ready`` without its fixed 0.2 s at the end.

    The same test (a ``kernel_info`` reply on shell, then a message on IOPub: the subscription is
    live; else ask again) and the same failures (the kernel died, the timeout passed). jupyter_client
    then drains IOPub until it has been silent for 0.2 s, which every new client paid: twice per warm
    run (``set_env`` and papermill's client), 0.4 s of a 1.3 s run (profiled). Here the drain stops after
    ``IOPUB_SETTLE_S`` of silence; a status message of the ``kernel_info`` request arriving later is
    harmless, since clients match IOPub messages to their own request's msg_id.
    """
    from queue import Empty

    from jupyter_core.utils import ensure_async

    deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
    while True:
        kc.kernel_info()
        try:
            msg = await ensure_async(kc.shell_channel.get_msg(timeout=1))
        except Empty:
            msg = None
        if msg is not None and msg["msg_type"] == "kernel_info_reply":
            try:
                await ensure_async(kc.iopub_channel.get_msg(timeout=0.2))
            except Empty:
                pass
            else:
                jc_adapter.kernel_info_seen(kc, msg)
                break
        if not await jc_adapter.client_is_alive(kc):
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
    while True:
        try:
            await ensure_async(kc.iopub_channel.get_msg(timeout=IOPUB_SETTLE_S))
        except Empty:
            return


_READY_CLIENT = None


def _ready_client_class():
    """An AsyncKernelClient whose ``wait_for_ready`` is :func:`wait_for_ready` (made on first use:
    jupyter_client is imported only by what runs kernels)."""
    global _READY_CLIENT
    if _READY_CLIENT is None:
        from jupyter_client.asynchronous import AsyncKernelClient

        class ReadyClient(AsyncKernelClient):
            async def wait_for_ready(self, timeout: float | None = None) -> None:
                await wait_for_ready(self, timeout)

        _READY_CLIENT = ReadyClient
    return _READY_CLIENT


def _silent(km, code: str, timeout: float) -> None:
    """Run ``code`` silently and without history (execution counts stay as they were); raise on error."""
    from jupyter_core.utils import run_sync

    with _blocking_client(km) as kc:
        run_sync(wait_for_ready)(kc, timeout)
        reply = kc.execute_interactive(code, silent=True, store_history=False, timeout=timeout,
                                       output_hook=lambda msg: None)
    _raise_unless_ok(reply)


@contextmanager
def _blocking_client(km, **channels: bool) -> Iterator[Any]:
    """A blocking client of ``km``'s kernel on a ZeroMQ context of its own, channels started; on exit
    the channels are stopped and the context destroyed, in this thread (``km.blocking_client()`` leaves
    its context to the garbage collector)."""
    import zmq
    from jupyter_client.blocking import BlockingKernelClient

    ctx = zmq.Context()
    try:
        kc = BlockingKernelClient(parent=km, context=ctx)
        kc.load_connection_info(km.get_connection_info())
        kc.start_channels(**channels)
        try:
            yield kc
        finally:
            kc.stop_channels()
    finally:
        ctx.destroy(linger=0)


def _raise_unless_ok(reply: dict) -> None:
    c = reply["content"]
    if c.get("status") != "ok":
        raise RuntimeError(f"kernel refused a silent cell: {c.get('ename')}: {c.get('evalue')}")


def _silent_on_shell(km, code: str, timeout: float) -> None:
    """:func:`_silent` for a kernel that has answered before (warmed): over the shell channel alone.

    A silent cell publishes nothing a caller needs on IOPub, and its ``execute_reply`` on shell says
    whether it ran, so no IOPub subscription has to be made live first (the ``kernel_info`` handshake
    and its settle time: ~40 ms of every warm run, profiled). A kernel that died meanwhile is noticed
    within a second (its process is polled between waits), not after ``timeout``."""
    from queue import Empty

    from jupyter_core.utils import run_sync

    with _blocking_client(km, shell=True, iopub=False, stdin=False, hb=False, control=False) as kc:
        msg_id = kc.execute(code, silent=True, store_history=False)
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = kc.get_shell_msg(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            except Empty:
                if not run_sync(km.is_alive)():
                    raise RuntimeError("the kernel died before it ran a silent cell") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the kernel did not answer a silent cell within {timeout:.0f} s") from None
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
    _raise_unless_ok(reply)


def shutdown_kernel(km) -> None:
    """Stop the kernel a manager owns, if any (nbclient leaves a kernel manager it was given running)."""
    from jupyter_core.utils import run_sync

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception as e:  # already dead, or shut down concurrently
        log.debug("kernel shutdown: %s", e)


def start_warm_kernel(kernel_name: str = "python3", *, cwd: str | os.PathLike | None = None,
                      timeout: float = 60, warmup: str = WARMUP_CODE, start: str = "spawn") -> WarmKernel:
    """Start one kernel in a private folder, with the run's state file in its environment, and warm it.

    ``warmup=""``: no warm-up, only wait until the kernel answers (a run's own kernel, started when no
    warm one is ready: it is a :class:`WarmKernel` all the same, so it can be interrupted).
    """
    from jupyter_core.utils import run_sync

    from smartops_nb import catalog

    t0 = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="smartops-kernel-"))
    env = {**os.environ, STATE_ENV: str(folder / "state.json")}
    km = kernel_manager(kernel_name, env, str(folder), start=start)
    kernel = WarmKernel(km, kernel_name, folder)
    try:
        # the same working directory papermill gives a cold run (the notebooks' folder)
        run_sync(km.start_kernel)(cwd=str(cwd or catalog.notebook_dir()))
        _silent(km, warmup, timeout)
    except BaseException:
        kernel.close()
        raise
    kernel.started_s = time.monotonic() - t0
    log.debug("warm kernel ready in %.2f s (%s)", kernel.started_s, folder)
    return kernel


class KernelPool:
    """``size`` warm kernels kept ready; :meth:`lease` hands one out and starts its replacement."""

    def __init__(self, size: int = 2, kernel_name: str = "python3", *, start_timeout: float = 60,
                 start: str | None = None):
        self.size = max(0, int(size))
        self.start_method = start or kernel_start()  # fork unless $SMARTOPS_KERNEL_START says spawn
        self.kernel_name = kernel_name
        self.start_timeout = start_timeout
        self._ready: queue.Queue[WarmKernel] = queue.Queue()
        self._lock = threading.Lock()
        self._starting = 0
        self._failures = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    def start(self) -> "KernelPool":
        for _ in range(self.size):
            self._replenish()
        return self

    def __enter__(self) -> "KernelPool":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"size": self.size, "ready": self._ready.qsize(), "starting": self._starting}

    def _replenish(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._starting += 1
            t = threading.Thread(target=self._start_one, name="smartops-kernel-start", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _start_one(self) -> None:
        kernel = None
        try:
            kernel = start_warm_kernel(self.kernel_name, timeout=self.start_timeout, start=self.start_method)
        except Exception as e:
            log.error("warm kernel failed to start: %s", e)
        finally:
            close_thread_loop()  # this thread ends here: its event loop's descriptors with it
        with self._lock:
            self._starting -= 1
            closed = self._closed
            if kernel is None:
                self._failures += 1
            else:
                self._failures = 0
            failures = self._failures
        if kernel is not None and closed:
            kernel.close()
        elif kernel is not None:
            self._ready.put(kernel)
        elif not closed and failures <= 3:  # retry a few times, not in a tight loop; runs go cold meanwhile
            time.sleep(min(30, 2 ** failures))
            self._replenish()

    def get(self, timeout: float = 0) -> WarmKernel | None:
        """A ready kernel (waiting up to ``timeout`` s), or None: the caller runs cold."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kernel = self._ready.get(timeout=max(0.0, deadline - time.monotonic())) if timeout else \
                    self._ready.get_nowait()
            except queue.Empty:
                return None
            self._replenish()  # one out, one starting
            if kernel.km.has_kernel and _alive(kernel.km):
                return kernel
            log.warning("warm kernel died while waiting; discarding it")
            kernel.close()
            if time.monotonic() >= deadline:
                return None

    @contextmanager
    def lease(self, timeout: float = 0) -> Iterator[WarmKernel | None]:
        """``with pool.lease() as kernel: runner.execute(..., kernel=kernel)``; the kernel dies after."""
        kernel = self.get(timeout)
        try:
            yield kernel
        finally:
            if kernel is not None:
                kernel.close()

    def close(self) -> None:
        """Shut every ready kernel down; kernels still starting shut themselves down when ready."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                self._ready.get_nowait().close()
            except queue.Empty:
                break
        for t in threads:
            t.join(timeout=self.start_timeout + 5)


def _alive(km) -> bool:
    from jupyter_core.utils import run_sync

    try:
        return bool(run_sync(km.is_alive)())
    except Exception:
        return False


class RunHandle:
    """A run's kernel as the outside sees it (a shutdown, a job's abort, a deadline): :meth:`end` ends the
    run now if it has its kernel, or the moment it gets one (:meth:`attach`). The one way anything but the
    run's own thread ends a kernel; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kernel: WarmKernel | None = None
        self.ended: str | None = None     # why it was ended, once it was

    def attach(self, kernel: WarmKernel | None) -> None:
        with self._lock:
            self.kernel = kernel
            reason = self.ended
        if reason and kernel is not None:
            kernel.end(reason)

    def end(self, reason: str) -> None:
        with self._lock:
            if self.ended is not None:
                return
            self.ended = reason
            kernel = self.kernel
        log.warning("ending run: %s", reason)
        if kernel is not None:
            kernel.end(reason)

    @contextmanager
    def deadline(self, seconds: float | None) -> Iterator["RunHandle"]:
        """End the run when ``seconds`` pass (None: no limit): a hung kernel or a hung papermill never
        holds a worker. ``with handle.deadline(1800): investigate(...)``."""
        if not seconds:
            yield self
            return
        timer = threading.Timer(seconds, self.end, (f"deadline: the run took longer than {seconds:.0f} s",))
        timer.daemon = True
        timer.start()
        try:
            yield self
        finally:
            timer.cancel()
