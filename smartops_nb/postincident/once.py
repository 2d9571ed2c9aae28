"""Create an outside object at most once per idempotency key (see :class:`.state.Store`)."""
from __future__ import annotations

from typing import Callable

from smartops_nb.records.checklist_store import Store


def once(store: Store, key: str, incident_id: str, item: str,
         create: Callable[[], tuple[str, str]]) -> tuple[str, str, bool]:
    """``(ref, link, created)``: the kept object of ``key``, else what ``create()`` made (then kept).
    A failing ``create`` releases the claim (a retry may try again) and raises; a claim another run
    holds raises :class:`.state.Claimed`."""
    kept = store.claim(key, incident_id, item)
    if kept is not None:
        return kept["ref"], kept["link"], False
    try:
        ref, link = create()
    except BaseException:
        store.release(key)
        raise
    store.keep(key, ref, link)
    return ref, link, True
