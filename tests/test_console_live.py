"""The console's event-stream subscriber: each browser gets its own bounded queue, and a
browser that does not keep up is dropped instead of holding anything up."""

from __future__ import annotations

import asyncio
import time

from corral.console.live import CLIENT_QUEUE, TICK, Hub
from corral.observe.events import Event
from corral.states import EventKind


def _changed(run_id: str) -> Event:
    return Event(EventKind.RUN_CHANGED, {"id": run_id, "agent": "a", "state": "running"})


def test_a_slow_browser_is_dropped_and_a_fast_one_keeps_its_notices() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], float]:
        hub = Hub(asyncio.get_running_loop())
        slow, fast = hub.stream(None), hub.stream("r7")
        slow_seen = [await anext(slow)]  # connected, then never read again
        fast_seen = [await anext(fast)]
        assert hub.clients == 2

        def deliver() -> float:  # the background thread, as the event stream calls it
            began = time.perf_counter()
            for i in range(CLIENT_QUEUE * 4):  # more runs changed than a browser may hold
                hub.observe(_changed(f"r{i}"))
            return time.perf_counter() - began

        took = await asyncio.get_running_loop().run_in_executor(None, deliver)
        await asyncio.sleep(0.05)
        fast_seen.append(await anext(fast))
        slow_seen += [chunk async for chunk in slow]  # ends: it was dropped
        await fast.aclose()
        return slow_seen, fast_seen, took

    slow_seen, fast_seen, took = asyncio.run(scenario())
    assert took < 0.5, "delivery never waits for a browser"
    assert len(slow_seen) == 1, "the slow browser's stream ended without its backlog"
    assert b'"run": "r7"' in fast_seen[1], "a run page hears only its run"


def test_a_batch_of_steps_is_one_notice_per_run() -> None:
    async def scenario() -> list[bytes]:
        hub = Hub(asyncio.get_running_loop())
        page = hub.stream("r7")
        await anext(page)
        for seq in range(100):  # one delivery batch: the loop fans out after this
            hub.observe(Event(EventKind.STEP_DONE, {"id": "r7", "agent": "a"}, step={"seq": seq}))
        hub.observe(_changed("r7"))
        await asyncio.sleep(0.05)
        seen = [await anext(page), await anext(page)]
        await page.aclose()
        return seen

    step, changed = asyncio.run(scenario())
    assert b'"kind": "step_done"' in step and b'"kind": "run_changed"' in changed


def test_notices_go_out_at_most_once_a_tick_each_once() -> None:
    """Eight busy agents make hundreds of events a second; a browser hears of each page's
    change once per tick, however many events there were."""

    async def scenario() -> tuple[list[bytes], float]:
        hub = Hub(asyncio.get_running_loop())
        overview = hub.stream(None)
        await anext(overview)
        began = time.monotonic()
        hub.observe(_changed("r1"))
        seen = [await anext(overview)]  # the first goes at once
        for _ in range(3):  # the same change again and again within the tick
            hub.observe(_changed("r1"))
            hub.observe(_changed("r2"))
            await asyncio.sleep(0.01)
        seen += [await anext(overview), await anext(overview)]
        waited = time.monotonic() - began
        hub.observe(_changed("r3"))
        await asyncio.sleep(TICK + 0.1)
        more = [await anext(overview)]
        await overview.aclose()
        return seen + more, waited

    seen, waited = asyncio.run(scenario())
    runs = [next(r for r in ("r1", "r2", "r3") if f'"run": "{r}"'.encode() in chunk) for chunk in seen]
    assert runs == ["r1", "r1", "r2", "r3"], "each changed page once per tick, in the order they changed"
    assert waited >= TICK * 0.9, "the second notice waited for the next tick"
