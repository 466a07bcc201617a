"""kill -9 of the daemon while a tool call waits between two tries: on restart the run
resumes and the call goes on, even for a tool that is not idempotent (the last try said
it did nothing, and no try was in flight); nothing is done twice and every try stays in
the journal."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from corral.testing import CorralProject, wait_for
from tests.resilience.faults import Faults
from tests.resilience.plugin import install

pytestmark = pytest.mark.slow


def test_kill_9_between_tries_resumes_the_call(corral_project: CorralProject, faults: Faults) -> None:
    project = corral_project
    install(project, faults, "client", tools=["post"])
    daemon = project.start_daemon()
    # 503 with Retry-After: 5 (the tool's max_retry_after) for 2 s: the run waits between tries
    # long enough for a loaded machine's polls to see it (3 s was missed at load 20), and the
    # endpoint is back before the restarted daemon's try
    path = "/hold/z/2/5"
    payload = {"create": {"tool": "post", "args": {"url": faults.url + path}}}
    run_id = project.cli_json("run", "client", "--input", json.dumps(payload))["id"]

    def between_tries() -> bool:
        steps = project.cli_json("trace", run_id)["steps"]
        return bool(steps) and steps[0].get("between_tries") is True

    wait_for(between_tries, "the first try's failure journaled", timeout=20)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(10)
    assert faults.hits[path] == 1
    time.sleep(2.5)  # past the 2 s of 503s, however fast the daemon comes back

    project.start_daemon()
    run = project.wait_for_run(run_id)
    assert run["state"] == "succeeded", run
    assert run["result"] == {"create": {"ok": "ok z"}} and run["attempt"] == 2
    assert faults.hits[path] == 2, "one try before the crash, one after: nothing twice"
    [step] = project.cli_json("trace", run_id)["steps"]
    assert step["status"] == "done" and step["ok"] and step["executions"] == 2 and step["attempt"] == 2
    [first] = step["tries"]
    assert first["retry_after"] == 5 and "HTTP 503" in first["error"]["message"]
    assert "between_tries" not in step
