"""A granted secret, written by its agent as a field name or %-encoded, ``\\u``-escaped or mixed,
never reaches a log file, the store, ``corral logs``, ``corral trace`` or an alert; and
bidirectional controls an agent writes are shown escaped, never obeyed.

Real agents under a real daemon and in a real foreground ``corral run --wait``, the secret
stored with ``corral secrets set``; everything is checked from outside, on the raw bytes
of the files and on what the real CLI prints.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.e2e.support import Project

pytestmark = pytest.mark.hostile

SECRET = f"tok/é {secrets.token_hex(6)}-{secrets.token_hex(6)}"
"""Non-ASCII (so JSON's ensure_ascii writes a ``\\u`` escape), a slash and a space in it."""
PLACEHOLDER = "[redacted:LEAKY]"

FORMS = '''
import json
from urllib.parse import quote


def mixed(i, c):
    """Literal, %-encoded, \\\\uXXXX, \\\\xXX and &#N; in turn."""
    ways = [c, "".join(f"%{b:02x}" for b in c.encode()), f"\\\\u{ord(c):04X}", f"\\\\x{ord(c):02x}", f"&#{ord(c)};"]
    return ways[i % len(ways)]


def forms(s):
    """The secret and every encoding the agents write it in; the test computes the same."""
    return {
        "plain": s,
        "percent": "".join(f"%{b:02X}" for b in s.encode()),
        "percent-lower": "".join(f"%{b:02x}" for b in s.encode()),
        "percent-partial": "".join("".join(f"%{b:02X}" for b in c.encode()) if i % 2 else c for i, c in enumerate(s)),
        "percent-twice": quote(quote(s, safe=""), safe=""),
        "u-escaped": "".join(f"\\\\u{ord(c):04x}" for c in s),
        "json-ascii": json.dumps(s).replace("/", "\\\\/")[1:-1],
        "mixed": "".join(mixed(i, c) for i, c in enumerate(s)),
    }
'''

LEAKER = """
import os
from forms import forms

def run(ctx):
    secret = os.environ["LEAKY"]
    written = forms(secret)
    ctx.log.info("as a field name", **{secret: 1})
    ctx.log.info("colliding names", **{secret: "first", "[redacted:LEAKY]": "second"})
    ctx.log.info("nested names", outer={secret: {written["percent"]: written["mixed"]}})
    for label, form in written.items():
        ctx.log.info(f"leak {label} {form}", value=form, **{form: label})
        print(f"stdout {label} {form}", flush=True)
        ctx.state[f"value-{label}"] = form
        ctx.state[form] = label
        ctx.tool("echo", text=form)
    return {"forms": list(written.values()), secret: "a result key"}
"""

FAILER = """
import os
from forms import forms

def run(ctx):
    raise RuntimeError("gave up holding " + " ".join(forms(os.environ["LEAKY"]).values()))
"""

BIDI = """
def run(ctx):
    ctx.log.info("bidi \\u202e gnp.exe", text="abc\\u202edef\\u2066ghi\\u061c")
    return "abc\\u202edef\\u200f"
"""

ECHO = '''
import corral

@corral.tool(idempotent=True)
def echo(text: str) -> str:
    """Return its argument, so the secret comes back as a tool result.

    Args:
        text: Anything.
    """
    return text

@corral.hookimpl
def corral_register_tools(register):
    register(echo)
'''


def forms(value: str) -> dict[str, str]:
    """What FORMS computes inside the agents, here outside them."""
    namespace: dict[str, Any] = {}
    exec(FORMS, namespace)  # noqa: S102 - the agents' own helper, so both sides agree
    found: dict[str, str] = namespace["forms"](value)
    return found


def needles(value: str) -> dict[str, bytes]:
    """Every form as raw UTF-8 and as a JSON string holds it (a log line escapes ``\\``)."""
    found = {}
    for label, form in forms(value).items():
        found[label] = form.encode()
        found[f"{label} in JSON"] = json.dumps(form, ensure_ascii=False)[1:-1].encode()
    return found


def leaks(data: bytes | str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [label for label, needle in needles(SECRET).items() if needle in raw]


def test_the_agents_really_write_every_form() -> None:
    """The forms differ from each other, and none is the placeholder: the checks below are not vacuous."""
    written = forms(SECRET)
    assert len(set(written.values())) == len(written)
    assert unquote(written["percent"]) == SECRET and written["percent"].count("%") == len(SECRET.encode())
    assert unquote(unquote(written["percent-twice"])) == SECRET
    assert "\\u00e9" in written["json-ascii"] and "\\/" in written["json-ascii"]


class World:
    """One project, its three runs and what the CLI prints about them."""

    def __init__(self, root: Path, mode: str) -> None:
        self.project = Project(root, {"LANG": "C.UTF-8"})
        self.mode = mode
        plugin = root / "echo_tool.py"
        plugin.write_text(ECHO)
        self.project.corral["plugins"] = [str(plugin)]
        (self.project.agents_dir / "forms.py").write_text(FORMS)
        self.project.agent("leaker", LEAKER, tools=["echo"], secrets=["LEAKY"])
        self.project.agent("failer", FAILER, secrets=["LEAKY"])
        self.project.agent("bidi", BIDI)
        stored = subprocess.run(
            [sys.executable, "-m", "corral", "secrets", "set", "LEAKY", "--backend", "file"],
            input=SECRET,
            env=self.project.env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stored.returncode == 0, stored.stderr
        daemon = self.project.start_daemon() if mode == "daemon" else None
        self.runs = {name: self.run(name) for name in ("leaker", "failer", "bidi")}
        if daemon is not None:
            assert daemon.stop() == 0, self.project.daemon_stderr()

    def run(self, agent: str) -> dict[str, Any]:
        result = self.project.cli("run", agent, "--wait", "--json", timeout=120)
        assert result.returncode in (0, 1), result.stderr
        run: dict[str, Any] = json.loads(result.stdout)
        return run

    def cli(self, *args: str) -> str:
        result = self.project.cli(*args)
        assert result.returncode == 0, f"corral {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture(scope="module", params=["daemon", "foreground"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = World(tmp_path_factory.mktemp(f"redaction-{request.param}"), request.param)
    try:
        yield built
    finally:
        built.project.close()


def test_the_runs_did_what_they_were_written_to(world: World) -> None:
    leaker, failer = world.runs["leaker"], world.runs["failer"]
    assert leaker["state"] == "succeeded", leaker
    assert failer["state"] == "failed", failer
    steps = json.loads(world.cli("trace", leaker["id"], "--json"))["steps"]
    kinds = [step["kind"] for step in steps]
    assert kinds.count("tool") == len(forms(SECRET)) and kinds.count("state") == 2 * len(forms(SECRET))


def test_no_form_of_the_secret_is_in_any_file_the_daemon_wrote(world: World) -> None:
    home = world.project.home
    logs = sorted((home / "logs").iterdir())
    assert logs, "no log files"
    for path in [*logs, home / "store" / "data.mdb"]:
        assert not leaks(path.read_bytes()), f"{path.name} holds the secret as {leaks(path.read_bytes())}"
    agent_log = (home / "logs" / "leaker.log").read_text()
    assert PLACEHOLDER in agent_log, "the agent's lines were written, redacted"


def test_a_secret_field_name_is_redacted_and_a_clashing_name_loses_nothing(world: World) -> None:
    events = [json.loads(line) for line in (world.project.home / "logs" / "leaker.log").read_text().splitlines()]
    [named] = [e for e in events if e.get("event") == "as a field name"]
    assert named[PLACEHOLDER] == 1
    [clash] = [e for e in events if e.get("event") == "colliding names"]
    assert {clash[PLACEHOLDER], clash[f"{PLACEHOLDER} (2)"]} == {"first", "second"}
    [nested] = [e for e in events if e.get("event") == "nested names"]
    assert nested["outer"] == {PLACEHOLDER: {PLACEHOLDER: PLACEHOLDER}}


def test_corral_logs_and_trace_show_no_form_of_it(world: World) -> None:
    leaker, failer = world.runs["leaker"]["id"], world.runs["failer"]["id"]
    shown = {
        "logs leaker": world.cli("logs", "leaker", "-n", "1000"),
        "logs leaker --json": world.cli("logs", "leaker", "-n", "1000", "--json"),
        "logs failer": world.cli("logs", "failer", "-n", "1000"),
        "logs (daemon)": world.cli("logs", "-n", "1000"),
        "trace": world.cli("trace", leaker),
        "trace --tree": world.cli("trace", leaker, "--tree"),
        "trace --json": world.cli("trace", leaker, "--json"),
        "trace failed": world.cli("trace", failer),
        "trace failed --json": world.cli("trace", failer, "--json"),
        "runs": world.cli("runs"),
    }
    for what, text in shown.items():
        assert not leaks(text), f"`corral {what}` shows the secret as {leaks(text)}"
    assert PLACEHOLDER in shown["logs leaker"] and PLACEHOLDER in shown["trace --json"]
    assert PLACEHOLDER in shown["trace failed"], "the failure's message is shown, redacted"


def test_the_alert_about_the_failed_run_holds_no_form_of_it(world: World) -> None:
    text = world.cli("alerts", "--json")
    failed = [a for a in json.loads(text) if a["alert"].get("run_id") == world.runs["failer"]["id"]]
    assert failed, f"no alert about the failed run in {text[:500]}"
    assert PLACEHOLDER in json.dumps(failed, ensure_ascii=False)
    assert not leaks(text), f"`corral alerts` shows the secret as {leaks(text)}"


BIDI_CONTROLS = "\u202e\u2066\u061c\u200f"


def test_bidirectional_controls_are_shown_escaped(world: World) -> None:
    run = world.runs["bidi"]
    assert run["state"] == "succeeded", run
    assert run["result"] == "abc\u202edef\u200f", "the store keeps what the agent returned"
    for what, text in {
        "logs": world.cli("logs", "bidi", "-n", "100"),
        "trace": world.cli("trace", run["id"]),
        "trace --tree": world.cli("trace", run["id"], "--tree"),
        "trace --json": world.cli("trace", run["id"], "--json"),
        "logs --json": world.cli("logs", "bidi", "-n", "100", "--json"),
    }.items():
        assert not set(BIDI_CONTROLS) & set(text), f"`corral {what}` prints a bidirectional control"
        assert "\\u202e" in text, f"`corral {what}` does not show the escape: {text[-400:]}"
    logged = world.cli("logs", "bidi", "-n", "100")
    assert "bidi \\u202e gnp.exe" in logged and "text=abc\\u202edef\\u2066ghi\\u061c" in logged
