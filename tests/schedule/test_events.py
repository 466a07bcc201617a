"""Webhook and file triggers, a plugin's own trigger kind, and reloading the config."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.daemon.root import Daemon
from corral.errors import ControlError
from corral.packing import MAX_DEPTH
from corral.schedule import ManualClock

from .harness import Rig, ask, events, idle, runs, tick, until

TOKEN = "0123456789abcdef-test-token"


async def _post(port: int, path: str, body: bytes, token: str | None, **headers: str) -> httpx.Response:
    def send() -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers, timeout=10)

    return await asyncio.to_thread(send)


def test_webhook_refuses_a_wrong_token_and_an_oversized_body_and_runs_a_good_call(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.tables["schedule"] = {"webhook_port": 0}
    echo = "def run(ctx):\n    return ctx.input\n"
    rig.agent("hook", echo, triggers=[{"type": "webhook", "token_env": "HOOK_TOKEN", "max_bytes": 64}])
    roomy = {"type": "webhook", "token_env": "HOOK_TOKEN", "path": "/hooks/roomy", "max_bytes": 20_000}
    rig.agent("roomy", echo, triggers=[roomy])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        assert daemon.scheduler.webhooks is not None
        port = daemon.scheduler.webhooks.port
        wrong = await _post(port, "/hooks/hook", b'{"n": 1}', "not-the-token-at-all")
        assert wrong.status_code == 401
        missing = await _post(port, "/hooks/hook", b'{"n": 1}', None)
        assert missing.status_code == 401
        big = await _post(port, "/hooks/hook", b'{"n": "' + b"x" * 100 + b'"}', TOKEN)
        assert big.status_code == 413 and "limit of 64" in big.json()["error"]
        elsewhere = await _post(port, "/hooks/other", b"{}", TOKEN)
        assert elsewhere.status_code == 404
        garbled = await _post(port, "/hooks/hook", b"{not json", TOKEN)
        assert garbled.status_code == 400
        for depth in (MAX_DEPTH + 1, 5000):  # past the bound on run input; past json's recursion
            deep = await _post(port, "/hooks/roomy", b"[" * depth + b"]" * depth, TOKEN)
            assert deep.status_code == 400 and f"up to {MAX_DEPTH} levels deep" in deep.json()["error"]
        nan = await _post(port, "/hooks/roomy", b'{"n": NaN}', TOKEN)
        assert nan.status_code == 400 and "NaN is not a JSON value" in nan.json()["error"]
        fetched = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/hooks/hook", timeout=10)
        assert fetched.status_code == 405
        assert runs(daemon) == [], "no refused call starts a run"
        good = await _post(port, "/hooks/hook", b'{"n": 1}', None, **{"X-Corral-Token": TOKEN})
        assert good.status_code == 202
        await idle(daemon)
        [run] = runs(daemon)
        assert run["id"] == good.json()["run"] and run["trigger"] == "webhook"
        assert run["input"] == {"n": 1} and run["result"] == {"n": 1}
        logged = events(rig, "webhook refused")
        assert [e["status"] for e in logged] == [401, 401, 413, 404, 400, 400, 400, 400, 405]
        assert TOKEN not in (rig.home / "logs" / "corral.log").read_text()

    rig.drive(scenario, environ={"HOOK_TOKEN": TOKEN})


def test_a_taken_webhook_port_at_start_up_alerts_and_binds_once_it_is_free(tmp_path: Path) -> None:
    """One trigger's port must not keep every other agent down: the daemon starts, says so
    loudly, and takes the port when whoever held it lets go."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    rig = Rig(tmp_path)
    rig.tables["schedule"] = {"webhook_port": port}
    echo = "def run(ctx):\n    return ctx.input\n"
    rig.agent("hook", echo, triggers=[{"type": "webhook", "token_env": "HOOK_TOKEN"}])
    rig.agent("other", echo)

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        [problem] = events(rig, "webhook listener not started")
        assert f"cannot listen on 127.0.0.1:{port}" in problem["problem"]
        run = await daemon.engine.create_run("other", "still runs")
        assert (await daemon.engine.execute(run["id"]))["state"] == "succeeded"
        holder.close()
        await until(lambda: bool(events(rig, "webhook listener started")), timeout=10)
        good = await _post(port, "/hooks/hook", b'{"n": 2}', TOKEN)
        assert good.status_code == 202
        await idle(daemon)
        assert [r["input"] for r in runs(daemon, "hook")] == [{"n": 2}]
        keys = [(a["alert"]["key"], a["alert"]["severity"]) for a in await _alerts(daemon)]
        assert keys == [("webhook-listener", "critical"), ("webhook-listener", "info")]

    try:
        rig.drive(scenario, environ={"HOOK_TOKEN": TOKEN})
    finally:
        holder.close()


async def _alerts(daemon: Daemon) -> list[dict[str, Any]]:
    outbox = daemon.alerting.outbox
    return await daemon.engine.writer.run(lambda txn: list(outbox.since(txn, 3600)))


def test_file_trigger_fires_once_per_burst_of_changes(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    echo = "def run(ctx):\n    return ctx.input\n"
    rig.agent("watch", echo, triggers=[{"type": "file", "path": "inbox", "patterns": ["*.csv"], "debounce": 0.2}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        for name in ("a.csv", "b.csv", "ignored.txt"):
            (inbox / name).write_text("1,2\n")
        await until(lambda: len(runs(daemon)) == 1)
        await idle(daemon)
        [run] = runs(daemon)
        assert run["trigger"] == "file" and run["input"] == {"paths": ["a.csv", "b.csv"]}
        (inbox / "ignored.txt").write_text("more")
        await asyncio.sleep(0.5)
        assert len(runs(daemon)) == 1, "a change that matches no pattern does not fire"

    rig.drive(scenario)


FORTNIGHTLY = """
import corral
from corral.schedule import TimedTrigger


class EveryDays(TimedTrigger):
    def __init__(self, days):
        self.period = days * 86400.0

    def describe(self):
        return f"every {self.period / 86400:g} days"

    def next_after(self, moment):
        return (moment // self.period + 1) * self.period

    def last_until(self, moment):
        return moment // self.period * self.period


def every_days(settings, context):
    if not isinstance(settings.get("days"), int):
        raise corral.ConfigError([f"{context.section} days: give a whole number of days"])
    return EveryDays(settings["days"])


@corral.hookimpl
def corral_register_triggers(register):
    register("every_days", every_days)
"""


def test_a_plugin_adds_a_trigger_kind(tmp_path: Path) -> None:
    plugin = tmp_path / "every_days.py"
    plugin.write_text(FORTNIGHTLY)
    rig = Rig(tmp_path)
    rig.corral["plugins"] = [str(plugin)]
    rig.agent("rare", triggers=[{"type": "every_days", "days": 2}])

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        await tick(daemon, clock, 2 * 86400)
        [run] = runs(daemon)
        assert run["trigger"] == "every_days" and run["fire_time"] % (2 * 86400) == 0

    rig.drive(scenario, start=2 * 86400 * 10_000 + 30)


def test_reload_rejects_a_broken_config_and_applies_a_good_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.agent("old", every="60s")

    async def scenario(daemon: Daemon, clock: ManualClock) -> None:
        good = rig.config_path.read_text()
        rig.config_path.write_text(good + '\n[agents.new]\ncode = "agents"\nentry = "old:run"\nevery = "nope"\n')
        with pytest.raises(ControlError, match=r"\[agents.new\] every: 'nope' is not a duration"):
            await ask(daemon, {"op": "reload"})
        broken_trigger = '[[agents.new.triggers]]\ntype = "cron"\ncron = "every tuesday"\n'
        rig.config_path.write_text(good + f'\n[agents.new]\ncode = "agents"\nentry = "old:run"\n{broken_trigger}')
        os.kill(os.getpid(), signal.SIGHUP)  # the same, by signal
        await until(lambda: len(events(rig, "config reload rejected; the old config stays")) == 2)
        assert "is not a cron expression" in str(events(rig, "config reload rejected; the old config stays")[1])
        assert set(daemon.config.agents) == {"old"}, "the old config stays in force"
        await tick(daemon, clock, 60)
        assert len(runs(daemon, "old")) == 1
        rig.config_path.write_text(
            good.replace('every = "60s"', "enabled = false") + '\n[agents.new]\ncode = "agents"\nentry = "old:run"\n'
            'every = "60s"\n'
        )
        changes = (await ask(daemon, {"op": "reload"}))["changes"]
        assert len(changes["added"]) == 1 and len(changes["removed"]) == 1
        await tick(daemon, clock, 60)
        assert len(runs(daemon, "old")) == 1 and len(runs(daemon, "new")) == 1

    rig.drive(scenario)
