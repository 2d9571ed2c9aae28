"""The fork server's template: a process with everything a kernel needs loaded, that forks kernels.

Started by the host (:mod:`smartops_nb.execution.forkserver`, which says why) as
``python -m smartops_nb.kernel.template FD``, ``FD`` its end of a socket pair. It imports what a run
loads (:mod:`.warmup`) and what an ipykernel loads while it starts, opens no other socket and starts no
thread, then answers each request line ``{"argv", "env", "cwd"}`` with ``{"pid"}`` of a forked child
that becomes an ordinary ipykernel (:func:`_become_kernel`), until the socket closes. Everything here
runs in the template or in a forked kernel before it is one: it never imports the host's code.

A forked kernel shares the template's pages until it writes one; in CPython a read is a write too (a
reference count), so whatever a kernel's start touches becomes its own. What is here beyond "fork and
run ipykernel" is there to touch less, each step measured by ``bench/storm_bench.py`` (README,
"Warm kernels and memory").
"""
from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import re
import signal
import socket
import sys
import threading
from typing import Any

from smartops_nb.kernel import warmup
from smartops_nb.support.reasons import one_line


def _reap(signum=None, frame=None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_kernel(request: dict[str, Any], template_pid: int) -> None:
    """In a new child: an ordinary ipykernel on the request's connection file, in its own session."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the kernel's own subprocesses are its to wait for
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setsid()
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the template's socket and anything else it held
    env = {str(k): str(v) for k, v in request["env"].items()}
    env["JPY_PARENT_PID"] = str(template_pid)  # its parent poller watches the template, which watches the host
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as ``python -m ipykernel_launcher`` in that folder
    if "numpy" in sys.modules:  # the forks would otherwise share one random sequence (random reseeds itself)
        sys.modules["numpy"].random.seed()
    argv = request["argv"]
    sys.argv = [argv[0]] + argv[3:]
    import IPython.core.shellapp
    import ipykernel.ipkernel

    app = _ForkedKernelApp.instance()  # this kernel's copy of the one made before the fork
    app.parent_handle = template_pid  # its default was read from the template's environment at import
    readers = (ipykernel.ipkernel, IPython.core.shellapp)
    for module in readers:  # see _SysWithTemplateModules; only while the kernel is made
        module.sys = _SysWithTemplateModules()  # type: ignore[assignment]
    try:
        app.initialize(argv[3:])
    finally:
        for module in readers:
            module.sys = sys
    app.start()


# -- what a forked kernel does not copy ------------------------------------------------------------------
# Measured (smaps of a ready fork, Private_Dirty by start-up step): two reads of every module, and
# traitlets' command-line parser, copied ~14 MiB into each kernel.
class _ModuleFile:
    """A module as ``IPythonKernel.__init__`` reads it: its ``__file__`` alone."""

    __slots__ = ("__file__",)

    def __init__(self, path: str):
        self.__file__ = path


#: The template's modules when it forks, as the kernel's start reads them: how many, their names and
#: their files (copies, made once, so they lie together in a few pages); see :class:`_SysWithTemplateModules`.
_TEMPLATE_MODULES: tuple[int, dict[str, _ModuleFile]] = (-1, {})


def _remember_modules() -> None:
    global _TEMPLATE_MODULES
    files = {"".join(name): getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
    _TEMPLATE_MODULES = (len(sys.modules), {name: _ModuleFile("".join(f) if isinstance(f, str) else "")
                                            for name, f in files.items()})


class _TemplateModules:
    """``sys.modules`` whose ``copy()`` and ``keys()`` answer the template's modules (their names, and
    their files alone) while no module was imported since the fork, else the real ones; everything else
    is ``sys.modules``'."""

    def copy(self) -> dict:
        count, modules = _TEMPLATE_MODULES
        return dict(modules) if count == len(sys.modules) else sys.modules.copy()

    def keys(self):
        count, modules = _TEMPLATE_MODULES
        return modules.keys() if count == len(sys.modules) else sys.modules.keys()

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.modules, name)

    def __getitem__(self, name: str) -> Any:
        return sys.modules[name]

    def __contains__(self, name: object) -> bool:
        return name in sys.modules

    def __iter__(self):
        return iter(sys.modules)

    def __len__(self) -> int:
        return len(sys.modules)


class _SysWithTemplateModules:
    """``sys`` as ipykernel's kernel module and IPython's shell app see it while a forked kernel is made.
    ``IPythonKernel`` lists every loaded module's ``__file__`` (for its debugger's just-my-code filter),
    and the shell app keeps the set of their names: over the ~2,000 modules of the template those reads
    copied ~8 and ~2.4 MiB of pages into each kernel. Answered from the copies made once in the template,
    they touch a few pages. (A module without a file is answered with ``__file__ == ""``, which the
    kernel skips as it skips ``None``.)"""

    modules = _TemplateModules()

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)


class _ForkedKernelApp:
    """Placeholder: replaced by :func:`_kernel_app_class` (ipykernel is imported in the template only)."""


#: ``--Class.trait=value``, a command-line config item as traitlets reads it.
CONFIG_ITEM = re.compile(r"--([A-Za-z_]\w*)\.([A-Za-z_]\w*)=(.*)", re.DOTALL)


def kernel_command_line_config(argv: list[str] | None):
    """The config of a kernel command line ``-f CONNECTION_FILE [--Class.trait=value ...]`` (what
    jupyter_client gives, with a run kernel's settings), as traitlets' parser makes it: each value a
    ``DeferredConfigString`` that the trait converts when it is loaded. ``None`` for any other line."""
    from traitlets.config import Config
    from traitlets.config.loader import DeferredConfigString

    if not argv or len(argv) < 2 or argv[0] != "-f" or argv[1].startswith("-"):
        return None
    config = Config({"IPKernelApp": {"connection_file": argv[1]}})
    for item in argv[2:]:
        match = CONFIG_ITEM.fullmatch(item)
        if match is None:
            return None
        config[match[1]][match[2]] = DeferredConfigString(match[3])
    return config


def _kernel_app_class():
    from ipykernel.kernelapp import IPKernelApp

    class ForkedKernelApp(IPKernelApp):
        """``IPKernelApp`` whose command line ``-f CONNECTION_FILE [--Class.trait=value ...]``
        (jupyter_client's, what a kernelspec gives) is read without traitlets' parser: the parser, built
        from every configurable class's traits for any command line, copied ~5 MiB of pages into each
        kernel. Any other command line is parsed."""

        def parse_command_line(self, argv=None):
            config = kernel_command_line_config(argv)
            if config is None:
                return super().parse_command_line(argv)
            self.argv, self.extra_args = list(argv), []
            self.cli_config = config
            self.update_config(config)
            return None

    return ForkedKernelApp


#: What an ipykernel imports while it starts, found by diffing ``sys.modules`` around
#: ``IPKernelApp.initialize`` in a fork. None starts a thread or opens a socket at import; the inline
#: backend (``matplotlib_inline``) is left to the kernel, which enables it.
KERNEL_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell",
                  "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
                  "IPython.extensions.storemagic", "IPython.utils.wildcard", "pdb", "faulthandler",
                  "tornado.platform.asyncio", "jupyter_client.localinterfaces", "matplotlib_inline.backend_inline")


def _import_debugger_without_debugpy() -> None:
    """ipykernel's debugger module, loaded with ``debugpy`` unavailable: a forked kernel has no debugger
    (its ``kernel_info`` says so, and JupyterLab hides the debugger button). A run's kernel has no
    frontend to debug it, and debugpy (~150 modules, 8.8 MiB in the template) made ~2.4 MiB of each ready
    kernel's PSS. ``import debugpy`` in a forked kernel's code still works; a spawned kernel keeps its
    debugger."""
    blocked = "debugpy" not in sys.modules
    if blocked:
        sys.modules["debugpy"] = None  # type: ignore[assignment] # ipykernel.debugger's import of it fails
    try:
        importlib.import_module("ipykernel.debugger")
    finally:
        if blocked:
            del sys.modules["debugpy"]


def _make_kernel_app() -> None:
    """The kernels' application object, made once here, neither initialized nor started: each kernel
    takes its copy (``instance()``) and initializes it with its own connection file, environment and
    folder. Made in each kernel, it copied ~1 MiB there: traitlets configures logging at the first
    use of ``.log`` (``dictConfig``, which writes to every logger the template has)."""
    app = _ForkedKernelApp.instance()
    app.log.debug("kernel application made in the template")


def _drop_fonts() -> None:
    """matplotlib empties its font cache in every forked child (an FT2Font cannot cross a fork: its
    ``register_at_fork`` hook), which freed, so copied, the template's fonts in each kernel (~0.8 MiB).
    Emptied once here: the kernels find it empty, as they would anyway."""
    from matplotlib import font_manager

    clear = getattr(getattr(font_manager, "_get_font", None), "cache_clear", None)
    if clear is not None:
        clear()


def _release_free_heap() -> None:
    """Free heap pages handed back to the system (glibc's ``malloc_trim``), so no kernel maps them."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def template_main(fd: int) -> None:
    """The template: import everything once, then fork a kernel per request line until EOF.

    The order is measured: a kernel's start runs ipykernel, IPython, traitlets and ZeroMQ code, and each
    object it reads (a reference count is a write) copies the page it lies on. Imported last, after
    the scientific stack and its temporaries, those objects lie together on fewer pages: ~1 MiB less of
    each kernel's own memory than importing them first."""
    warmup.load_modules()
    warmup.draw_without_backend()
    _drop_fonts()
    _import_debugger_without_debugpy()
    for name in KERNEL_MODULES:
        importlib.import_module(name)

    global _ForkedKernelApp
    _ForkedKernelApp = _kernel_app_class()
    _make_kernel_app()
    _remember_modules()
    gc.collect()
    gc.freeze()  # what is loaded now is never scanned by a child's collector: its pages stay shared
    _release_free_heap()
    me = os.getpid()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    reader = sock.makefile("rb")
    sock.sendall(json.dumps({"ready": me, "threads": threading.active_count()}).encode() + b"\n")
    for line in reader:
        try:
            request = json.loads(line)
            pid = os.fork()
        except Exception as e:  # noqa: BLE001 - a bad request or no memory: say so, keep serving
            sock.sendall(json.dumps({"error": one_line(e)}).encode() + b"\n")
            continue
        if pid == 0:
            code = 1
            try:
                reader.close()
                sock.close()
                _become_kernel(request, me)
                code = 0
            except SystemExit as e:  # the kernel's own exit
                code = e.code if isinstance(e.code, int) else 0
            except BaseException:  # noqa: BLE001 - report and leave: this child must never return to the loop
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")


if __name__ == "__main__":
    template_main(int(sys.argv[1]))
