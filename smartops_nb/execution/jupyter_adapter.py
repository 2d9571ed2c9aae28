"""The private parts of jupyter_client that SmartOps relies on, in one place.

jupyter_client has no public way to do these things (the first two are each worth a tenth of a warm run):

- :func:`fine_kill_wait`: a killed kernel's exit is polled every 0.1 s (``_async_wait``); a kernel
  is gone within milliseconds of its SIGKILL, so every run paid ~0.1 s there (profiled).
- :func:`kernel_info_seen`: a client that waited for the kernel itself records the kernel's
  ``kernel_info_reply`` as jupyter_client's own ``wait_for_ready`` does (``_handle_kernel_info_reply``).
- :func:`client_is_alive`: a blocking client's ``is_alive`` awaited inside a coroutine, as jupyter_client's
  own ``wait_for_ready`` does (``_async_is_alive``); the public ``is_alive()`` of a blocking client called
  there starts a task-runner thread and event loop kept for the process's life (3 descriptors more the
  first time a kernel is slow to answer: a loaded machine's descriptor-leak test failures).

``tests/unit/execution/test_jupyter_adapter.py`` fails loudly when an upgrade changes either, and
``pyproject.toml`` pins the jupyter_client range they were checked against.
"""
from __future__ import annotations

from typing import Any


def fine_kill_wait(manager_class: type, interval: float):
    """An ``_async_wait`` for a subclass of ``manager_class``: its loop and limit, a finer interval."""
    base = manager_class._async_wait

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        await base(self, pollinterval=min(pollinterval, interval))

    return _async_wait


def kernel_info_seen(kc: Any, msg: dict) -> None:
    """Record a ``kernel_info_reply`` on a client, as ``wait_for_ready`` does."""
    kc._handle_kernel_info_reply(msg)


async def client_is_alive(kc: Any) -> bool:
    """Whether a client's kernel is alive, awaited on the running loop, whatever the client's kind."""
    return await kc._async_is_alive()
