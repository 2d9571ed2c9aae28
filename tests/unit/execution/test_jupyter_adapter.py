"""The private jupyter_client hooks of execution/jupyter_adapter.py are still there, with the shape we use.

If one of these fails after a jupyter_client upgrade, the adapter needs a look (and pyproject's pin a
new range): it is where SmartOps reaches past jupyter_client's public API, and only there.
"""
from __future__ import annotations

import inspect

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from smartops_nb.execution import jupyter_adapter


def test_async_wait_is_a_coroutine_taking_pollinterval():
    wait = AsyncKernelManager._async_wait
    assert inspect.iscoroutinefunction(wait)
    assert "pollinterval" in inspect.signature(wait).parameters


def test_kernel_info_reply_handler_takes_the_reply():
    handler = AsyncKernelClient._handle_kernel_info_reply
    assert list(inspect.signature(handler).parameters) == ["self", "msg"]


def test_a_client_is_alive_is_a_coroutine_on_every_kind_of_client():
    from jupyter_client.blocking import BlockingKernelClient

    for cls in (AsyncKernelClient, BlockingKernelClient):
        assert inspect.iscoroutinefunction(cls._async_is_alive)
        assert list(inspect.signature(cls._async_is_alive).parameters) == ["self"]


def test_fine_kill_wait_passes_the_finer_interval():
    seen = {}

    class Base:
        async def _async_wait(self, pollinterval: float = 0.1) -> None:
            seen["interval"] = pollinterval

    import asyncio

    asyncio.run(jupyter_adapter.fine_kill_wait(Base, 0.005)(Base()))
    assert seen["interval"] == 0.005


def test_public_signal_and_client_context_are_there():
    # kernels.release()/signal_group() use these public parts
    assert inspect.iscoroutinefunction(AsyncKernelManager.signal_kernel)
    assert "context" in AsyncKernelClient.class_trait_names()
