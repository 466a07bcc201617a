"""Every kind of secret corral holds, handled in one real daemon run, shows only as ``[redacted:NAME]``.

The agent is granted a secret and leaks it (a log field and field name, stdout, its
state, a tool argument, its error); a tool is handed a tool-only secret and returns it
and raises with it; the model (a real HTTP server on 127.0.0.1) echoes its API key in an
answer and in a 400; two webhook sinks (real HTTP receivers on 127.0.0.1) hold a URL from
the environment, a URL written inline and an inline header, and one of them answers 403
quoting its own credentials. Then, with the daemon stopped, the log files, every LMDB
database read raw, ``corral trace``, ``corral logs``, ``corral alerts`` and the alert
payloads are searched for each value and for any placeholder but the one form.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from corral.secrets import PLACEHOLDER
from tests.alerts.receivers import HTTPReceiver, Reply
from tests.e2e.support import Project, wait_for
from tests.models.fake_servers import FakeServer, openai_body
from tests.models.fake_servers import Reply as ModelReply

AGENT_TOKEN = f"agent-tok/é {secrets.token_hex(8)}"
"""Granted to the agent: non-ASCII and a slash, so JSON and URLs write it escaped."""
TOOL_TOKEN = f"tool-tok-{secrets.token_hex(8)}"
"""Granted, and declared by the tool: it reaches the tool only."""
MODEL_KEY = f"sk-model-{secrets.token_hex(12)}"
HOOK_PATH = f"/hooks/{secrets.token_hex(10)}"
"""The path of the sink URL read from the environment (``url_env``)."""
BROKEN_PATH = f"/broken/{secrets.token_hex(10)}"
"""The path of the sink URL written inline in corral.toml."""
HEADER_TOKEN = f"hdr-{secrets.token_hex(10)}"
"""An inline header value of the broken sink."""

VALUES = {
    "agent secret": AGENT_TOKEN,
    "tool secret": TOOL_TOKEN,
    "model key": MODEL_KEY,
    "sink URL from the environment": HOOK_PATH,
    "sink URL written inline": BROKEN_PATH,
    "sink header written inline": HEADER_TOKEN,
}
OTHER_PLACEHOLDERS = re.compile(rb"\*\*\*|\[redacted\]|<redacted|\[REDACTED|\[masked|<secret>|<hidden>")

TOOL_PLUGIN = '''
import corral


@corral.tool(secrets=("TOOL_TOKEN",))
def check(target: str, fail: bool, secrets: dict[str, str]) -> dict:
    """Check a target with the tool's own token; careless with it on purpose.

    :param target: where
    :param fail: raise instead of answering
    """
    token = secrets["TOOL_TOKEN"]
    if fail:
        raise RuntimeError(f"{target} rejected token {token}")
    return {"target": target, "oops": token}


@corral.hookimpl
def corral_register_tools(register):
    register(check)
'''

AGENT = """
import os
import corral

def run(ctx):
    token = os.environ["AGENT_TOKEN"]
    ctx.log.info("env", tool_token="TOOL_TOKEN" in os.environ, model_key="CHAT_MODEL_KEY" in os.environ,
                 hook="HOOK_URL" in os.environ)
    ctx.log.info("holding the token", token=token, **{token: "as a field name"})
    print("stdout", token, flush=True)
    ctx.state["token"] = token
    checked = ctx.tool("check", target=f"prod {token}", fail=False)
    try:
        ctx.tool("check", target="prod", fail=True)
    except corral.ToolCallError as exc:
        ctx.log.warning("tool refused", error=str(exc))
    answer = ctx.model([{"role": "user", "text": "echo my key"}], max_tokens=20)
    ctx.log.info("model said", text=answer.text)
    try:
        ctx.model([{"role": "user", "text": "again"}], max_tokens=20)
    except corral.ModelCallError as exc:
        ctx.log.warning("model refused", error=str(exc))
    raise RuntimeError(f"gave up holding {token} and {checked['oops']}")
"""


def _forms(value: str) -> list[bytes]:
    """The value as UTF-8 and as a JSON string holds it (with and without ``ensure_ascii``)."""
    return sorted(
        {value.encode(), json.dumps(value)[1:-1].encode(), json.dumps(value, ensure_ascii=False)[1:-1].encode()}
    )


def problems_in(what: str, data: bytes | str, *, whole: bool = True) -> list[str]:
    """Each secret value found in ``data``, and each placeholder that is not ``[redacted:NAME]``.

    ``whole=False`` for the raw LMDB file: a page reused for other data keeps the first
    bytes of what it held, so a placeholder there may be cut short; it is still searched
    for the values and for the other placeholders.
    """
    raw = data.encode() if isinstance(data, str) else data
    found = [f"{what} holds the {label}" for label, value in VALUES.items() if any(f in raw for f in _forms(value))]
    found += [f"{what} holds the placeholder {m.group()!r}" for m in OTHER_PLACEHOLDERS.finditer(raw)]
    for start in (m.start() for m in re.finditer(rb"\[redacted", raw) if whole):
        if not PLACEHOLDER.match(raw[start : start + 240].decode("utf-8", "replace")):
            found.append(f"{what} holds a malformed placeholder {raw[start : start + 40]!r}")
    return found


def every_database(store: Path) -> dict[str, bytes]:
    """Every key and value of every named LMDB database, read raw (no corral code involved)."""
    env = lmdb.open(str(store), readonly=True, lock=False, max_dbs=64, subdir=True)
    found: dict[str, bytes] = {}
    try:
        with env.begin() as txn:
            names = [key for key, _ in txn.cursor()]
        for name in names:
            db = env.open_db(name, create=False)
            with env.begin(db=db) as txn:
                found[name.decode()] = b"\n".join(key + b"\0" + value for key, value in txn.cursor())
    finally:
        env.close()
    return found


class World:
    """The project, its one run, and everything corral showed or sent about it."""

    def __init__(self, root: Path, model: FakeServer, hook: HTTPReceiver, broken: HTTPReceiver) -> None:
        hook_url = hook.url(HOOK_PATH)
        broken_url = broken.url(BROKEN_PATH)
        self.project = Project(root, {"CHAT_MODEL_KEY": MODEL_KEY, "HOOK_URL": hook_url, "LANG": "C.UTF-8"})
        plugin = root / "check_tool.py"
        plugin.write_text(TOOL_PLUGIN)
        self.project.corral["plugins"] = [str(plugin)]
        self.project.models["fake"] = {
            "provider": "openai",
            "base_url": f"{model.url}/v1",
            "model": "fake-gpt",
            "api_key_env": "CHAT_MODEL_KEY",
            "retry_attempts": 1,
        }
        self.project.agent(
            "leaky", AGENT, tools=["check"], models=["fake"], secrets=["AGENT_TOKEN", "TOOL_TOKEN"], max_attempts=1
        )
        with self.project.config_path.open("a") as config:
            config.write(
                "\n[alerts]\n"
                'route = { warning = ["hook", "broken"], critical = ["hook", "broken"] }\n'
                '\n[alerts.sinks.hook]\ntype = "webhook"\nurl_env = "HOOK_URL"\n'
                f'\n[alerts.sinks.broken]\ntype = "webhook"\nurl = "{broken_url}"\nretries = 1\n'
                f'headers = {{ Authorization = "Bearer {HEADER_TOKEN}" }}\n'
            )
        for name, value in (("AGENT_TOKEN", AGENT_TOKEN), ("TOOL_TOKEN", TOOL_TOKEN)):
            stored = subprocess.run(
                [sys.executable, "-m", "corral", "secrets", "set", name, "--backend", "file"],
                input=value,
                env=self.project.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert stored.returncode == 0, stored.stderr
        model.enqueue(
            ModelReply(body=openai_body(f"your key is {MODEL_KEY}")),
            ModelReply(400, {"error": {"message": f"bad request made with key {MODEL_KEY}"}}),
        )
        broken.script(Reply(403, f"forbidden: {broken_url} with Bearer {HEADER_TOKEN}".encode()))
        self.model, self.hook, self.broken = model, hook, broken

        daemon = self.project.start_daemon(write_config=False)
        ran = self.project.cli("run", "leaky", "--wait", "--json", timeout=120)
        assert ran.returncode == 1, ran.stderr
        self.run: dict[str, Any] = json.loads(ran.stdout)
        wait_for(lambda: hook.requests and broken.requests, "no alert reached both sinks")
        wait_for(self._broken_gave_up, "no final error of the broken sink in the outbox record")
        assert daemon.stop() == 0, self.project.daemon_stderr()

    def _broken_gave_up(self) -> bool:
        records = self.project.cli_json("alerts")
        return any(record["deliveries"].get("broken", {}).get("final") for record in records)

    def cli(self, *args: str) -> str:
        result = self.project.cli(*args)
        assert result.returncode == 0, f"corral {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    model = FakeServer().start()
    hook, broken = HTTPReceiver(), HTTPReceiver()
    built = World(tmp_path_factory.mktemp("secrets"), model, hook, broken)
    try:
        yield built
    finally:
        built.project.close()
        model.stop()
        hook.close()
        broken.close()


def test_each_secret_reached_the_one_place_it_is_for(world: World) -> None:
    """Not vacuous: the run did what it was written to, and each value was really used."""
    assert world.run["state"] == "failed", world.run
    assert [r.headers["authorization"] for r in world.model.requests] == [f"Bearer {MODEL_KEY}"] * 2
    assert world.hook.requests[0].path == HOOK_PATH
    assert world.broken.requests[0].path == BROKEN_PATH
    assert world.broken.requests[0].headers["authorization"] == f"Bearer {HEADER_TOKEN}"
    events = [json.loads(line) for line in (world.project.home / "logs" / "leaky.log").read_text().splitlines()]
    [env] = [e for e in events if e["event"] == "env"]
    assert (env["tool_token"], env["model_key"], env["hook"]) == (False, False, False), "the child got only its own"


def test_no_file_and_no_database_holds_a_secret_or_another_placeholder(world: World) -> None:
    home = world.project.home
    written = {
        str(path.relative_to(home)): path.read_bytes()
        for path in home.rglob("*")
        if path.is_file() and path.name != "secrets.json" and not path.is_socket()
    }
    databases = every_database(home / "store")
    assert {"runs", "journal", "state", "alerts", "events"} <= set(databases), sorted(databases)
    written |= {f"database {name}": data for name, data in databases.items()}
    problems = [
        problem for what, data in written.items() for problem in problems_in(what, data, whole=what != "store/data.mdb")
    ]
    assert not problems, problems
    logs = written["logs/leaky.log"].decode()
    assert "[redacted:AGENT_TOKEN]" in logs and "[redacted:CHAT_MODEL_KEY]" in logs and "[redacted:TOOL_TOKEN]" in logs


def test_the_cli_shows_each_secret_as_its_placeholder(world: World) -> None:
    run = world.run["id"]
    shown = {
        "trace": world.cli("trace", run),
        "trace --json": world.cli("trace", run, "--json"),
        "logs leaky": world.cli("logs", "leaky", "-n", "1000"),
        "logs leaky --json": world.cli("logs", "leaky", "-n", "1000", "--json"),
        "logs (daemon)": world.cli("logs", "-n", "1000"),
        "alerts --json": world.cli("alerts", "--json"),
        "runs --json": world.cli("runs", "--json"),
    }
    problems = [problem for what, text in shown.items() for problem in problems_in(f"`corral {what}`", text)]
    assert not problems, problems
    trace = shown["trace --json"]
    for name in ("AGENT_TOKEN", "TOOL_TOKEN", "CHAT_MODEL_KEY"):
        assert f"[redacted:{name}]" in trace, f"the trace shows where {name} was"
    assert "[redacted:alerts.sinks.broken.url]" in shown["alerts --json"], "the sink's error names its URL"
    assert "[redacted:alerts.sinks.broken.headers.Authorization]" in shown["alerts --json"]


def test_the_alert_payloads_hold_no_secret(world: World) -> None:
    sent = [request.body for request in [*world.hook.requests, *world.broken.requests]]
    problems = [problem for body in sent for problem in problems_in("an alert payload", body)]
    assert not problems, problems
    assert "[redacted:AGENT_TOKEN]" in json.dumps(json.loads(sent[0]), ensure_ascii=False), "the run's error, redacted"
