"""``corral check`` as an operator runs it: each agent's module imported in a throwaway
process, its entry function checked, every agent's problems in one pass, and the next
fire times of the timed triggers."""

from __future__ import annotations

import re
import time

import pytest

from corral.testing import CorralProject
from tests.models.fake_servers import FakeServer
from tests.projects import KEY, KEY_VAR, fake_model

GOOD = "def run(ctx):\n    return 1\n"


def _check(project: CorralProject, *args: str) -> tuple[int, str, str]:
    result = project.cli("check", *args, timeout=60)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_an_entry_function_that_does_not_exist_is_reported_with_a_near_name(corral_project: CorralProject) -> None:
    corral_project.agent("ok", GOOD, entry="runn")
    code, _, err = _check(corral_project)
    assert code == 1, err
    assert "[agents.ok] entry: module 'ok' has no function 'runn'" in err, err
    assert "did you mean 'run'?" in err and "ok.py" in err


def test_an_entry_that_takes_no_argument_is_reported_with_its_file_and_line(corral_project: CorralProject) -> None:
    corral_project.agent("lazy", "import os\n\n\ndef run():\n    return 1\n")
    code, _, err = _check(corral_project)
    assert code == 1, err
    assert "[agents.lazy] entry: lazy:run takes no argument" in err, err
    assert f"{corral_project.agents_dir / 'lazy.py'}:4" in err and "def run(ctx)" in err


def test_a_module_raising_at_import_shows_the_exception_and_the_agents_line(corral_project: CorralProject) -> None:
    corral_project.agent("boom", "import json\n\nSETTINGS = json.loads('{}')\nraise RuntimeError('no config here')\n")
    corral_project.agent("typo", "def run(ctx)\n    return 1\n")
    code, _, err = _check(corral_project)
    assert code == 1, err
    [boom] = [line for line in err.splitlines() if "[agents.boom]" in line]
    assert "importing module 'boom' raised RuntimeError: no config here" in boom, boom
    assert f"{corral_project.agents_dir / 'boom.py'}:4" in boom
    [typo] = [line for line in err.splitlines() if "[agents.typo]" in line]
    assert "SyntaxError" in typo and f"{corral_project.agents_dir / 'typo.py'}:1" in typo, typo


def test_a_client_made_at_import_finds_the_doors_variables_as_in_a_run(
    corral_project: CorralProject, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``client = OpenAI()`` at import needs OPENAI_API_KEY, which only a run's door sets:
    check imports the module with the door's variables pointing nowhere, as a run would
    (a new user's existing openai module failed check and ran fine)."""
    pytest.importorskip("openai")
    monkeypatch.setenv(KEY_VAR, KEY)
    corral_project.models["fake"] = fake_model(server.url)
    module = "import os\nfrom openai import OpenAI\n\nclient = OpenAI()\nTOOLS = os.environ['CORRAL_MCP_URL']\n" + GOOD
    corral_project.agent("sdk", module, models=["fake"])
    corral_project.agent("plain", "import os\n\nAPI = os.environ['CORRAL_API_URL']\n" + GOOD)
    code, _, err = _check(corral_project)
    assert code == 0, err


def test_a_module_that_hangs_at_import_is_stopped_after_the_timeout(corral_project: CorralProject) -> None:
    corral_project.agent("stuck", "import time\n\nwhile True:\n    time.sleep(1)\n")
    corral_project.agent("fine", GOOD)
    started = time.monotonic()
    code, _, err = _check(corral_project, "--timeout", "2s")
    assert time.monotonic() - started < 20
    assert code == 1, err
    [stuck] = [line for line in err.splitlines() if "[agents.stuck]" in line]
    assert "importing module 'stuck' did not finish within 2s" in stuck, stuck
    assert "[agents.fine]" not in err


def test_import_side_effects_stay_in_a_throwaway_folder(corral_project: CorralProject) -> None:
    corral_project.agent("writer", "open('side-effect.txt', 'w').write('x')\n\n\ndef run(ctx):\n    return 1\n")
    code, out, err = _check(corral_project)
    assert code == 0, err
    assert "ok (1 agents)" in out
    assert not list(corral_project.root.rglob("side-effect.txt"))


def test_every_agents_problems_are_reported_in_one_pass(corral_project: CorralProject) -> None:
    corral_project.agent("first", GOOD, max_attempts="three")  # a format error in one agent's table
    corral_project.agent("second", GOOD, entry="runn")  # and a deeper problem in another's
    corral_project.agent("third", "raise ValueError('bad')\n")
    code, _, err = _check(corral_project)
    assert code == 3, err
    assert err.startswith("corral: invalid config:\n"), err
    assert "[agents.first] max_attempts: 'three' is not a positive integer" in err
    assert "[agents.second] entry: module 'second' has no function 'runn'" in err
    assert "[agents.third] entry: importing module 'third' raised ValueError: bad" in err


def test_the_next_three_fire_times_of_each_timed_trigger_are_shown_with_their_zone(
    corral_project: CorralProject,
) -> None:
    corral_project.agent(
        "digest",
        GOOD,
        triggers=[{"type": "cron", "cron": "0 7 * * *", "timezone": "Europe/Paris"}],
    )
    corral_project.agent("tick", GOOD, every="1h")
    corral_project.agent("manual", GOOD)
    code, out, err = _check(corral_project)
    assert code == 0, err
    [digest] = [line for line in out.splitlines() if line.lstrip().startswith("digest")]
    times = re.findall(r"\d{4}-\d\d-\d\d 07:00:00 (CET|CEST)", digest)
    assert len(times) == 3 and "Europe/Paris" in digest, digest
    [tick] = [line for line in out.splitlines() if line.lstrip().startswith("tick")]
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", tick)) == 3 and "every" in tick, tick
    assert not [line for line in out.splitlines() if line.lstrip().startswith("manual")]


def test_a_command_whose_program_is_missing_or_cannot_run_is_reported_with_the_fix(
    corral_project: CorralProject,
) -> None:
    corral_project.command_agent("absent", ["no-such-program-here", "x"], {})
    corral_project.command_agent("plain", ["./agent.sh"], {"agent.txt": "not a program"})
    (corral_project.agents_dir / "plain" / "agent.sh").write_text("#!/bin/sh\n")  # not executable
    corral_project.command_agent("folder", ["./sub"], {})
    (corral_project.agents_dir / "folder" / "sub").mkdir()
    corral_project.command_agent("fine", ["sh", "agent.sh"], {"agent.sh": "exit 0\n"})
    code, _, err = _check(corral_project)
    assert code == 1, err
    [absent] = [line for line in err.splitlines() if "[agents.absent]" in line]
    assert "command: program 'no-such-program-here' is not found on the sandbox's PATH (" in absent, absent
    [plain] = [line for line in err.splitlines() if "[agents.plain]" in line]
    assert f"program {corral_project.agents_dir / 'plain' / 'agent.sh'} cannot be executed" in plain, plain
    assert 'command = ["sh", "agent.sh"]' in plain
    assert "[agents.folder] command: program" in err and "[agents.fine]" not in err


def test_an_agent_with_both_entry_and_command_or_neither_is_a_config_error_naming_both(
    corral_project: CorralProject,
) -> None:
    corral_project.agent("both", GOOD, command=["node", "agent.js"])
    corral_project.agents["neither"] = {"code": "agents"}
    corral_project.agents["empty"] = {"code": "agents", "command": []}
    corral_project.write()
    code, _, err = _check(corral_project)
    assert code == 3, err
    assert '[agents.both]: has both entry and command; give exactly one of entry = "module:function"' in err, err
    assert "[agents.neither] entry: is required; give exactly one of entry" in err and 'command = ["program"' in err
    assert "[agents.empty] command: [] is not a list of strings, the program first; list the program" in err, err
