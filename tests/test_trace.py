"""`corral trace` as an operator reads it: a model step is one readable line, `--step N`
prints a step whole and redacted, and `--tree` says what really started each attempt
(finding 8 and 9 of issue 16). Runs in the foreground against a model server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corral.cli.common import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer, Reply, openai_body
from tests.projects import REFUSING

LONG = "Let me count the words in the text you gave me, which is quite a long sentence really"


def _run(project: CorralProject, *args: str) -> dict:
    result = project.cli("run", *args, "--wait", "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def _row(text: str, seq: int) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(f"{seq} ")]
    return line


def test_a_model_step_is_one_readable_line(chat: CorralProject, server: FakeServer) -> None:
    server.enqueue(
        Reply(body=openai_body(LONG, [("c1", "word_count", '{"text": "a b c"}')], usage=(100, 20))),
        Reply(body=openai_body("done, 3 words", usage=(150, 5))),
    )
    run = _run(chat, "chat", "--input", '{"calls": 2}')
    text = chat.cli("trace", run["id"], check=True).stdout
    assert "TOKENS" in text and "COST" in text
    first = _row(text, 1)
    for shown in ("model", "fake", "user: question 0", '→ word_count({"text": "a b c"})', "100+20", "< $0.01"):
        assert shown in first, (shown, first)
    second = _row(text, 2)
    assert '"done, 3 words"' in second and "150+5" in second
    assert '{"messages"' not in text, "the request is not shown raw"


def test_a_model_without_prices_is_unpriced_not_zero_dollars(chat: CorralProject, server: FakeServer) -> None:
    del chat.models["fake"]["prices"]
    chat.write()
    server.enqueue(Reply(body=openai_body("hi", usage=(10, 2))))
    run = _run(chat, "chat", "--input", '{"calls": 1}')
    assert "unpriced" in _row(chat.cli("trace", run["id"], check=True).stdout, 1)
    listing = chat.cli("runs", check=True).stdout
    assert "12 tok, unpriced" in listing and "$0.00" not in listing


@pytest.mark.slow
def test_step_n_prints_the_whole_prompt_and_response(chat: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body(LONG, [("c1", "word_count", '{"text": "a b c"}')], usage=(100, 20))))
    run = _run(chat, "chat", "--input", '{"calls": 1}')
    whole = chat.cli("trace", run["id"][-6:], "--step", "1")
    assert whole.returncode == EXIT_OK, whole.stderr
    for shown in ("step 1 of run", "model fake", "tokens 100+20", "--- user", "question 0", LONG, "word_count"):
        assert shown in whole.stdout, (shown, whole.stdout)
    assert '"text": "a b c"' in whole.stdout
    raw = json.loads(chat.cli("trace", run["id"], "--step", "1", "--json", check=True).stdout)
    assert raw["seq"] == 1 and raw["usage"] == {"input_tokens": 100, "output_tokens": 20}

    missing = chat.cli("trace", run["id"], "--step", "7")
    assert missing.returncode == EXIT_NOT_FOUND and "has no step 7; it has steps 1 to 1" in missing.stderr
    for bad in (["--step", "0"], ["--step", "x"], ["--step", "1", "--tree"]):
        result = chat.cli("trace", run["id"], *bad)
        assert result.returncode == EXIT_USAGE and "Traceback" not in result.stderr, (bad, result.stderr)


def test_step_n_is_redacted_with_the_secrets_granted_since(corral_project: CorralProject) -> None:
    """A value the journal kept before it became a secret is not shown once it is one."""
    token = "tok-3f9a8c7d6e5b4a39"
    corral_project.agent(
        "echo", f"def run(ctx):\n    return ctx.tool('word_count', text='{token} x')\n", tools=["word_count"]
    )
    run = _run(corral_project, "echo")
    assert token in corral_project.cli("trace", run["id"], "--step", "1", check=True).stdout
    stored = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", "TOKEN", "--backend", "file"],
        input=token,
        env=corral_project.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert stored.returncode == 0, stored.stderr
    corral_project.agents["echo"]["secrets"] = ["TOKEN"]
    corral_project.write()
    shown = corral_project.cli("trace", run["id"], "--step", "1", check=True).stdout
    assert token not in shown and "[redacted:TOKEN]" in shown, shown


@pytest.mark.slow
def test_the_tree_says_a_run_was_retried_by_hand_not_backed_off(chat: CorralProject, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("first")), Reply(status=503))
    run = _run(chat, "chat", "--input", '{"calls": 2}')
    assert run["state"] == "failed" and run["error"]["resumable"], run
    server.enqueue(Reply(body=openai_body("second")))
    assert chat.cli("retry", run["id"], "--wait").returncode == 0
    tree = chat.cli("trace", run["id"], "--tree", check=True).stdout
    [second] = [line for line in tree.splitlines() if "attempt 2" in line]
    assert "retried by hand (`corral retry`)" in second and "backoff" not in tree, tree
    assert "replayed 1 finished steps from the journal" in second


def test_a_refused_tool_call_says_refused_to_the_agent_and_in_every_view_of_the_trace(
    corral_project: CorralProject,
) -> None:
    """Refused by the tool itself (a path outside the workdir) or by the daemon's validation
    (arguments against the schema): the step's kind is ``refused``, and so are its words."""
    corral_project.agent("refusing", REFUSING, tools=["read_file"])
    run = _run(corral_project, "refusing")
    assert run["state"] == "failed"
    message = run["error"]["message"]
    assert message.startswith("tool 'read_file' refused the call: path '/etc/passwd' is absolute and outside"), message
    assert "failed" not in message
    steps = corral_project.cli_json("trace", run["id"])["steps"]
    assert [step["error"]["kind"] for step in steps] == ["refused"] * 3
    assert steps[0]["error"]["message"].startswith("tool 'read_file' refused the call: path '../../etc/passwd'")
    text = corral_project.cli("trace", run["id"], check=True).stdout
    for seq in (1, 2, 3):
        assert "REFUSED " in _row(text, seq) and "ERROR" not in _row(text, seq), _row(text, seq)
    assert "error (agent): ToolCallError: tool 'read_file' refused the call:" in text
    tree = corral_project.cli("trace", run["id"], "--tree", check=True).stdout
    assert tree.count("REFUSED ") == 3 and "ERROR" not in tree and " failed: " not in tree.split("└─ failed")[0]
    whole = corral_project.cli("trace", run["id"], "--step", "1", check=True).stdout
    assert "status done refused" in whole and "refused:" in whole.splitlines() and "failed" not in whole
