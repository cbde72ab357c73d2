"""A commit whose caller gave up still finishes; its outcome is not logged as lost."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from syncline._errors import OccConflictError
from syncline.cluster._txn_node import _outcome_unheard


async def test_an_outcome_nobody_waits_for_is_not_reported_as_lost() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        unheard = loop.create_future()
        unheard.add_done_callback(_outcome_unheard)
        unheard.set_exception(OccConflictError("a concurrent commit wrote data it read"))
        cancelled = loop.create_future()
        cancelled.add_done_callback(_outcome_unheard)
        cancelled.cancel()
        lost = loop.create_future()  # without the callback: what asyncio reports
        lost.set_exception(OccConflictError("a concurrent commit wrote data it read"))
        await asyncio.sleep(0)  # done callbacks run
        del unheard, cancelled, lost
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert [c["message"] for c in reported] == ["Future exception was never retrieved"]
