"""Malformed wire input ends only that run; bad config is refused with a precise message.

Every fault agent here passes the hello/welcome handshake through the real runtime,
then writes bytes of its own choosing straight onto its wire fd (``wire_out`` from the
policy in ``sys.argv[1]``). All of them run at once against one daemon, next to a
healthy agent that must not notice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from corral.testing import CorralProject

from .support import (
    Batch,
    Project,
    assert_journal,
    assert_not_resumed,
    contained,
    log_events,
    snapshot_outside,
    start_batch,
)

FRAME_MAX = 16384
FRAME_DEADLINE = 10.0

PRELUDE = """
import json, os, struct, sys, time

import msgpack

POLICY = json.loads(sys.argv[1])
OUT, IN = POLICY["wire_out"], POLICY["wire_in"]
P = msgpack.packb


def send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(OUT, view):]


def frame(body):
    return struct.pack(">I", len(body)) + body


def raw_map(*pairs):
    # A msgpack map from already-encoded values, to build what msgpack.packb refuses to.
    out = bytes([0x80 | len(pairs)])
    for key, encoded in pairs:
        out += P(key) + encoded
    return out


def nested(depth):
    return b"\\x91" * depth + b"\\xc0"


def linger():
    time.sleep(120)  # the daemon has to end us
"""

# name -> (what the agent does after the handshake, what the run's error must say)
FAULTS: dict[str, tuple[str, str]] = {
    "garbage": ("send(frame(b'\\xc1' * 6)); linger()", "frame is not valid msgpack"),
    "plain_text": (
        "send(b'hello daemon, this is not a frame\\n'); linger()",
        f"bytes exceeds the {FRAME_MAX}-byte limit",
    ),
    "truncated": (
        "send(struct.pack('>I', 100) + b'\\x85' + b'x' * 9); os._exit(0)",
        "stream ended mid-frame after 10 bytes",
    ),
    "oversized": (
        f"send(struct.pack('>I', {FRAME_MAX + 1})); linger()",
        f"frame of {FRAME_MAX + 1} bytes exceeds the {FRAME_MAX}-byte limit",
    ),
    "ext_type": (
        "send(frame(P({'t': 'log', 'level': 'info', 'event': 'x', "
        "'fields': {'v': msgpack.ExtType(5, b'hi')}}))); linger()",
        "msgpack extension type 5 is not allowed",
    ),
    "too_deep": (
        "send(frame(raw_map(('t', P('log')), ('level', P('info')), ('event', P('x')), "
        "('fields', raw_map(('v', nested(5000))))))); linger()",
        "frame is nested deeper than the wire allows",
    ),
    "deep_log": (  # the daemon's own walks over a log line recursed past Python's limit at 900
        "send(frame(raw_map(('t', P('log')), ('level', P('info')), ('event', P('x')), "
        "('fields', raw_map(('v', nested(900))))))); linger()",
        "frame is nested deeper than the wire allows (104 levels",
    ),
    "deep_step": (
        "send(frame(raw_map(('t', P('step')), ('seq', P(1)), ('kind', P('state')), ('name', P('set')), "
        "('args', raw_map(('key', P('k')), ('value', nested(600))))))); linger()",
        "frame is nested deeper than the wire allows",
    ),
    "not_a_map": ("send(frame(P([1, 2, 3]))); linger()", "frame must be a map, got list"),
    "unknown_type": ("send(frame(P({'t': 'bogus', 'seq': 1}))); linger()", "unknown message type 'bogus'"),
    "missing_field": (
        "send(frame(P({'t': 'step', 'seq': 1, 'kind': 'state', 'name': 'set'}))); linger()",
        "'step' message lacks field 'args'",
    ),
    "wrong_type": (
        "send(frame(P({'t': 'step', 'seq': '1', 'kind': 'state', 'name': 'set', 'args': {}}))); linger()",
        "'step' field 'seq' must be an integer",
    ),
    "wrong_seq": (
        "send(frame(P({'t': 'step', 'seq': 7, 'kind': 'state', 'name': 'set', "
        "'args': {'key': 'k', 'value': 1}}))); linger()",
        "step 7 out of order; expected step 1",
    ),
    "hello_twice": ("send(frame(P({'t': 'hello', 'v': 1, 'pid': os.getpid()}))); linger()", "hello sent twice"),
}

# Valid frames, sent raw past the runtime's own checks as a hostile child would, whose
# content the journal cannot hold (a key too long for LMDB).
UNSTORABLE: dict[str, str] = {
    "long_state_key": (
        "send(frame(P({'t': 'step', 'seq': 1, 'kind': 'state', 'name': 'set', "
        "'args': {'key': 'k' * 600, 'value': 1}}))); linger()"
    ),
}

TRICKLE = """
    data = frame(P({'t': 'log', 'level': 'info', 'event': 'trickled', 'fields': {}}))
    with open('first-byte', 'w') as f:
        f.write(repr(time.time()))
    for byte in data:
        send(bytes([byte]))
        time.sleep(1)
    linger()
"""

STOP_READING = """
    import fcntl
    try:
        fcntl.fcntl(IN, 1031, 4096)  # F_SETPIPE_SZ: a small pipe fills sooner
    except OSError:
        pass
    seq = 0
    while True:  # steps as fast as the daemon takes them; never read a reply
        seq += 1
        send(frame(P({'t': 'step', 'seq': seq, 'kind': 'state', 'name': 'set',
                      'args': {'key': 'flood', 'value': seq}})))
"""

HEALTHY = """
import time

def run(ctx):
    total = 0
    for n in range(1, 41):
        ctx.state["n"] = n
        total += n
        time.sleep(0.05)
    return total
"""


def _fault_source(body: str) -> str:
    if not body.startswith("\n"):
        body = f"\n    {body}\n"
    return f"{PRELUDE}\n\ndef run(ctx):{body}"


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    project = Project(tmp_path_factory.mktemp("faults"))
    project.corral.update(frame_max_bytes=FRAME_MAX, max_concurrent_runs=32)
    sources = {name: _fault_source(body) for name, (body, _) in FAULTS.items()}
    sources |= {name: _fault_source(body) for name, body in UNSTORABLE.items()}
    sources |= {"trickle": _fault_source(TRICKLE), "stop_reading": _fault_source(STOP_READING), "healthy": HEALTHY}
    for name, source in sources.items():
        project.agent(name, source)
    try:
        yield start_batch(project, sources)
    finally:
        project.close()


def _assert_protocol_failure(batch: Batch, run: dict[str, Any], expected: str) -> None:
    assert run["state"] == "failed", run
    assert_not_resumed(batch.project, run)  # a protocol violation is not a crash to resume
    error = run["error"]
    assert error["kind"] == "protocol", error
    assert error["message"].startswith("the agent's process broke the wire protocol: "), error
    assert expected in error["message"], error


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_malformed_frame_fails_only_that_run(batch: Batch, name: str) -> None:
    run = contained(batch, name)
    _assert_protocol_failure(batch, run, FAULTS[name][1])


@pytest.mark.parametrize("name", sorted(UNSTORABLE))
def test_unstorable_request_fails_only_that_run(batch: Batch, name: str) -> None:
    # Regression: the journal write raised out of Attempt.execute, the daemon logged
    # "run crashed in the daemon" and the run stayed "running" in the store.
    run = contained(batch, name)
    assert run["state"] == "failed", run
    assert_not_resumed(batch.project, run)
    assert run["error"]["kind"] == "journal", run["error"]
    assert "step 1 cannot be journaled" in run["error"]["message"]
    assert "nothing was executed" in run["error"]["message"]
    assert not assert_journal(batch.project, run["id"]), "the refused step left no journal entry"


@pytest.mark.slow
def test_trickling_frame_fails_at_the_frame_deadline(batch: Batch) -> None:
    run = contained(batch, "trickle")
    _assert_protocol_failure(batch, run, f"frame did not arrive whole within {FRAME_DEADLINE:g}s")
    # The deadline covers the whole frame, header included (it used to restart for the body).
    first_byte = float((batch.project.workdir("trickle") / "first-byte").read_text())
    took = run["ended"] - first_byte
    assert FRAME_DEADLINE - 0.5 < took < FRAME_DEADLINE + 2, f"the frame held the run for {took:.1f}s"


@pytest.mark.slow
def test_agent_that_stops_reading_replies_fails(batch: Batch) -> None:
    run = contained(batch, "stop_reading")
    _assert_protocol_failure(batch, run, "the agent stopped reading replies for 10s")
    steps = assert_journal(batch.project, run["id"])
    assert len(steps) > 100, "the flood was answered until the reply pipe filled"


def test_healthy_agent_carries_on(batch: Batch) -> None:
    run = contained(batch, "healthy")
    assert run["state"] == "succeeded", run
    assert_not_resumed(batch.project, run)
    assert run["result"] == sum(range(1, 41))
    steps = assert_journal(batch.project, run["id"])
    assert len(steps) == 40 and all(s["ok"] for s in steps)


def test_runs_starting_together_are_not_reaped_as_orphans(batch: Batch) -> None:
    # Regression: the daemon's orphan sweep SIGKILLed children it was still spawning, so
    # runs that started together crashed at spawn and were resumed.
    project = batch.project
    spawned = {e["pid"]: name for name in batch.runs for e in log_events(project, name) if e["event"] == "run started"}
    swept = [e["pid"] for e in log_events(project, None) if e["event"] == "killed a process that outlived its run"]
    assert not {pid: spawned[pid] for pid in swept if pid in spawned}, "the orphan sweep killed live agents"
    interrupted = {
        name: e["error"]["message"]
        for name in batch.runs
        for e in log_events(project, name)
        if e["event"] == "run interrupted; resuming"
    }
    assert not interrupted


def test_nothing_written_outside_the_workdirs(batch: Batch) -> None:
    after = snapshot_outside(batch.project, batch.workdirs)
    assert after == batch.outside_before


def test_second_daemon_on_the_same_home_refuses(batch: Batch) -> None:
    result = batch.project.cli("up", timeout=30)
    assert result.returncode == 4, (result.returncode, result.stderr)
    assert f"another corral daemon (pid {batch.daemon.pid}) owns {batch.project.home}" in result.stderr
    assert "stop it first" in result.stderr
    assert batch.daemon.process.poll() is None
    assert batch.project.socket.exists(), "the refused daemon must not touch the running one's socket"


def test_daemon_survives_runs_another_and_stops_cleanly(batch: Batch) -> None:
    assert batch.daemon.process.poll() is None, batch.project.daemon_stderr()
    again = batch.project.cli("run", "healthy", "--wait", timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith(str(sum(range(1, 41))))
    assert batch.daemon.stop() == 0, batch.project.daemon_stderr()


# --------------------------------------------------------------------------- bad config

AGENT = '[agents.bot]\ncode = "agents"\nentry = "bot:run"\n'

# name -> (config text, fragments the error must contain besides the file's path)
BAD_CONFIGS: dict[str, tuple[str, list[str]]] = {
    "misspelt_daemon_key": (
        "[corral]\ngrace_second = 5\n\n" + AGENT,
        ["[corral] grace_second: unknown key; did you mean 'grace_seconds'?"],
    ),
    "misspelt_agent_key": (
        AGENT + "max_attempt = 2\n",
        ["[agents.bot] max_attempt: unknown key; did you mean 'max_attempts'?"],
    ),
    "misspelt_limit": (
        AGENT + "\n[agents.bot.limits]\nmemroy_mb = 50\n",
        ["[agents.bot.limits] memroy_mb: unknown key; did you mean 'memory_mb'?"],
    ),
    "wrong_type": (
        AGENT + 'max_attempts = "three"\n',
        ["[agents.bot] max_attempts: 'three' is not a positive integer", "give how many times a run may be started"],
    ),
    "wrong_duration": (
        '[limits]\nwall_seconds = "soon"\n\n' + AGENT,
        ["[limits] wall_seconds: 'soon' is not a duration", '"30s"'],
    ),
    "missing_code_folder": (
        AGENT.replace('"agents"', '"nowhere"'),
        ["[agents.bot] code: folder", "nowhere does not exist", "create it or fix the path"],
    ),
    "invalid_entry": (
        AGENT.replace('"bot:run"', '"bot"'),
        ["[agents.bot] entry: 'bot' must name a function as \"module:function\"", 'e.g. entry = "counter:run"'],
    ),
    "invalid_agent_name": (
        AGENT.replace("agents.bot", "agents.Bad_Name"),
        ["[agents.Bad_Name]: agent names use lowercase letters"],
    ),
    "invalid_toml": (AGENT + "[agents.other\ncode = \n", ["not valid TOML", "line 4", "fix the syntax at that line"]),
}


def _write_config(project: CorralProject, text: str) -> None:
    (project.agents_dir / "bot.py").write_text("def run(ctx):\n    return 1\n")
    project.config_path.write_text(text)


@pytest.mark.parametrize("command", ["check", "up"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_config_is_refused_with_file_key_and_fix(
    corral_project: CorralProject, case: str, command: str
) -> None:
    text, fragments = BAD_CONFIGS[case]
    _write_config(corral_project, text)
    result = corral_project.cli(command, timeout=30)
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("corral: invalid config:\n"), result.stderr
    assert str(corral_project.config_path) in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not corral_project.socket.exists(), "an invalid config must not start a daemon"


def test_every_problem_is_reported_at_once(corral_project: CorralProject) -> None:
    _write_config(corral_project, "[corral]\ngrace_second = 5\n\n" + AGENT + 'max_attempts = "three"\n')
    result = corral_project.cli("check")
    assert result.returncode == 3
    assert "did you mean 'grace_seconds'?" in result.stderr
    assert "[agents.bot] max_attempts: 'three' is not a positive integer" in result.stderr


@pytest.mark.parametrize(
    ("case", "extra", "fragments"),
    [
        (
            "unknown_tool",
            'tools = ["no_such_tool"]\n',
            ["[agents.bot] tools: no plugin provides tool 'no_such_tool'; available: "],
        ),
        (
            "missing_module",
            None,
            ["[agents.bot] entry: module 'ghost' not found in", "create ghost.py there or fix entry"],
        ),
    ],
)
def test_check_finds_what_a_valid_file_gets_wrong(
    corral_project: CorralProject, case: str, extra: str | None, fragments: list[str]
) -> None:
    text = AGENT + extra if extra else AGENT.replace('"bot:run"', '"ghost:run"')
    _write_config(corral_project, text)
    result = corral_project.cli("check")
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert str(corral_project.config_path) in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_check_accepts_a_good_config(corral_project: CorralProject) -> None:
    _write_config(corral_project, AGENT)
    result = corral_project.cli("check")
    assert result.returncode == 0, result.stderr
    assert "ok (1 agents)" in result.stdout
