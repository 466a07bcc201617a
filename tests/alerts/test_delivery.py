"""The outbox and delivery with a real home, store and loopback receivers: dedup, resolve, retry, escalation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.alerts import Alert, Severity
from corral.config import parse_config
from corral.daemon.host import Host, host

from .receivers import HANG, HTTPReceiver, Reply


def _hook(receiver: HTTPReceiver, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": receiver.url("/hook"), "retry_wait": "10ms", **extra}


def _alert(key: str = "disk:full", severity: Severity = Severity.WARNING, **kwargs: Any) -> Alert:
    return Alert(key=key, severity=severity, title=f"{key} happened", **kwargs)


def _stored(home: Host) -> list[dict[str, Any]]:
    with home.store.read() as txn:
        return list(home.alerting.outbox.since(txn, 0))


def _deliver(home: Host, *alerts: Alert, timeout: float = 20.0) -> None:
    """Start delivery, raise ``alerts`` in order, and wait until the outbox is empty."""

    async def go() -> None:
        await home.alerting.start(daemon=False)
        try:
            for alert in alerts:
                home.alerting.raise_alert(alert)
            assert await home.alerting.flush(timeout)
        finally:
            await home.alerting.stop(0)

    asyncio.run(go())


def test_an_alert_is_stored_then_delivered_to_the_sinks_of_its_severity(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    pager, chat = http_receiver(), http_receiver()
    home = home_with(
        {
            "route": {"critical": ["pager", "chat"], "warning": ["chat"]},
            "sinks": {"pager": _hook(pager), "chat": _hook(chat)},
        }
    )
    _deliver(
        home,
        _alert("a", Severity.CRITICAL, agent="nightly"),
        _alert("b", Severity.WARNING),
        _alert("c", Severity.INFO),
    )
    assert [json.loads(r.body)["key"] for r in pager.requests] == ["a"]
    assert sorted(json.loads(r.body)["key"] for r in chat.requests) == ["a", "b"]
    records = {r["alert"]["key"]: r for r in _stored(home)}
    assert records["a"]["status"] == "delivered" and records["a"]["targets"] == ["log", "pager", "chat"]
    assert set(records["a"]["deliveries"]) == {"log", "pager", "chat"}
    assert records["c"]["targets"] == ["log"] and records["c"]["deliveries"]["log"]["ok"]


def test_repeats_of_an_open_alert_are_held_back_and_the_all_clear_goes_once(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    chat = http_receiver()
    home = home_with(
        {"route": {"warning": ["chat"], "critical": ["chat"], "info": ["chat"]}, "sinks": {"chat": _hook(chat)}}
    )
    _deliver(
        home,
        _alert("k"),
        _alert("k"),
        _alert("k"),
        _alert("never-raised", Severity.INFO, resolved=True),
        _alert("k", Severity.CRITICAL),  # worse than what was sent: goes through
        _alert("k", Severity.INFO, resolved=True),
        _alert("k", Severity.INFO, resolved=True),  # already clear: nothing to send
        _alert("k"),  # open again after the all-clear: sent
    )
    sent = [json.loads(r.body) for r in chat.requests]
    assert [(a["key"], a["severity"], a["resolved"]) for a in sent] == [
        ("k", "warning", False),
        ("k", "critical", False),
        ("k", "info", True),
        ("k", "warning", False),
    ]
    assert [r["repeats"] for r in _stored(home)] == [0, 2, 0, 0]


def test_repeat_after_lets_a_reminder_through(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    chat = http_receiver()
    home = home_with({"route": {"warning": ["chat"]}, "sinks": {"chat": _hook(chat)}, "repeat_after": "1m"})
    _deliver(home, _alert("k", created=1000.0), _alert("k", created=1030.0), _alert("k", created=1061.0))
    assert [json.loads(r.body)["created"] for r in chat.requests] == [1000.0, 1061.0]


def test_a_failing_sink_is_retried_then_escalates_to_the_next(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    chat = http_receiver([Reply(503, b"busy"), Reply(429, b"slow down", {"Retry-After": "0"}), Reply(503, b"busy")])
    pager = http_receiver()
    home = home_with(
        {
            "route": {"critical": ["chat"]},
            "sinks": {"chat": _hook(chat, retries=3, escalate_to="pager"), "pager": _hook(pager)},
        }
    )
    _deliver(home, _alert("k", Severity.CRITICAL))
    assert len(chat.requests) == 3 and len(pager.requests) == 1
    (record,) = _stored(home)
    chat_outcome = record["deliveries"]["chat"]
    assert not chat_outcome["ok"] and chat_outcome["attempts"] == 3 and chat_outcome["escalated_to"] == "pager"
    assert "503" in chat_outcome["error"] and record["deliveries"]["pager"]["ok"]
    assert record["status"] == "delivered"


def test_a_refused_alert_is_not_retried_and_is_recorded_as_failed(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    secret_path = "/hook/T0-s3cr3t-t0ken"
    chat = http_receiver([Reply(404, b"no such hook")])
    home = home_with(
        {"route": {"warning": ["chat"]}, "sinks": {"chat": {"type": "webhook", "url_env": "CHAT_URL"}}},
        environ={"CHAT_URL": chat.url(secret_path)},
    )
    _deliver(home, _alert())
    (record,) = _stored(home)
    assert len(chat.requests) == 1 and record["status"] == "failed"
    assert "404" in record["deliveries"]["chat"]["error"]
    assert "s3cr3t" not in json.dumps(record)
    assert "s3cr3t" not in (home.config.home / "logs" / "corral.log").read_text()


def test_a_hanging_sink_holds_up_nothing_else(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    stuck, chat = http_receiver([HANG, HANG]), http_receiver()
    home = home_with(
        {
            "route": {"warning": ["stuck", "chat"]},
            "sinks": {"stuck": _hook(stuck, timeout="30s"), "chat": _hook(chat)},
        }
    )

    async def go() -> tuple[int, list[dict[str, Any]]]:
        await home.alerting.start(daemon=False)
        try:
            home.alerting.raise_alert(_alert("first"))
            home.alerting.raise_alert(_alert("second"))
            async with asyncio.timeout(20):
                while len(chat.requests) < 2:
                    await asyncio.sleep(0.01)
            # the store writer is not held up either: a write goes through while the sink hangs
            await home.writer.run(lambda txn: None)
            with home.store.read() as txn:
                return len(stuck.requests), home.alerting.outbox.pending(txn)
        finally:
            await home.alerting.stop(0)

    hung, pending = asyncio.run(go())
    assert hung >= 1 and {r["alert"]["key"] for r in pending} == {"first", "second"}
    stuck.close()


def test_an_alert_left_in_the_outbox_is_delivered_by_the_next_process(
    http_receiver: Callable[..., HTTPReceiver], tmp_path: Path
) -> None:
    chat = http_receiver()
    data = {
        "corral": {"home": str(tmp_path / "home")},
        "alerts": {"route": {"warning": ["chat"]}, "sinks": {"chat": _hook(chat)}},
    }
    config = parse_config(data, tmp_path / "corral.toml", {})
    with host(config, echo=None) as home:
        home.alerting.raise_alert(_alert("left-behind"))
        home.writer.call(lambda txn: None)  # durable, and no delivery was started in this process
    assert chat.requests == []
    with host(config, echo=None) as home:
        _deliver(home)
    assert [json.loads(r.body)["key"] for r in chat.requests] == ["left-behind"]


def test_a_reloaded_config_routes_the_next_alerts(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver], tmp_path: Path
) -> None:
    old, new = http_receiver(), http_receiver()
    home = home_with({"route": {"warning": ["old"]}, "sinks": {"old": _hook(old)}})
    alerts = {"route": {"warning": ["new"]}, "sinks": {"new": _hook(new)}, "crash_loop": 7}
    home.reconfigure(
        parse_config({"corral": {"home": str(home.config.home)}, "alerts": alerts}, tmp_path / "c.toml", {})
    )
    _deliver(home, _alert("after-reload"))
    assert old.requests == [] and [json.loads(r.body)["key"] for r in new.requests] == ["after-reload"]


def test_alerting_can_start_again_after_it_stopped(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    chat = http_receiver()
    home = home_with({"route": {"warning": ["chat"]}, "sinks": {"chat": _hook(chat)}})
    _deliver(home, _alert("one"))
    _deliver(home, _alert("two"))
    assert [json.loads(r.body)["key"] for r in chat.requests] == ["one", "two"]


def test_the_rules_pause_an_agent_even_with_no_loop_running(home_with: Callable[..., Host], tmp_path: Path) -> None:
    """Events a previous process left are delivered before the daemon's loop runs (or after a
    foreground run's): a crash loop found then still pauses the agent, durably."""
    (tmp_path / "a.py").write_text("def run(ctx):\n    return 1\n")
    home = home_with({}, agents={"a": {"code": str(tmp_path), "entry": "a:run"}})
    home.alerting.pause("a", "crash loop: 3 runs failed in a row", None)
    assert home.engine.paused("a") is not None
    with home.store.read() as txn:
        assert bytes(txn.get(b"a", db=home.store.dbs["pauses"]) or b"")


def test_only_older_runs_count_towards_a_crash_loop(home_with: Callable[..., Host], tmp_path: Path) -> None:
    """Two runs failing together: the first one's count must not include the second, whose
    own event counts it (it was counted twice, and a fresh agent seemed to crash-loop)."""
    from corral.store import new_run_id

    home = home_with({})
    ids = []
    for n in range(3):
        run_id = new_run_id(int(time.time() * 1000) + n)  # three ids in one millisecond sort by chance
        ids.append(run_id)
        run = {"id": run_id, "agent": "a", "state": "failed", "created": time.time(), "attempt": 1}
        home.writer.call(lambda txn, run=run: home.engine.records.put_run(txn, run))
    assert home.alerting.failures_before("a", ids[0]) == 0
    assert home.alerting.failures_before("a", ids[1]) == 1
    assert home.alerting.failures_before("a", ids[2]) == 2


def test_a_breaker_left_open_by_the_last_daemon_is_cleared_by_the_next(
    home_with: Callable[..., Host], http_receiver: Callable[..., HTTPReceiver]
) -> None:
    """Breakers start closed in a new daemon, so no change event will ever clear an alert
    the previous one raised: the start does."""
    chat = http_receiver()
    home = home_with({"route": {"info": ["chat"], "warning": ["chat"]}, "sinks": {"chat": _hook(chat)}})

    async def go() -> None:
        home.alerting.raise_alert(Alert(key="breaker:fake", severity=Severity.WARNING, title="opened"))
        await home.alerting.start(daemon=True)
        try:
            assert await home.alerting.flush(20)
        finally:
            await home.alerting.stop(0)

    asyncio.run(go())
    sent = [json.loads(r.body) for r in chat.requests]
    assert [(a["key"], a["resolved"]) for a in sent if a["key"] == "breaker:fake"] == [
        ("breaker:fake", False),
        ("breaker:fake", True),
    ]
