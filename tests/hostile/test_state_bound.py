"""An agent's state cannot grow past what one wire frame carries to its next run.

The attack: ten ``PUT /corral/v1/state/bigN`` of 1 MB each (each within
``state_value_kb``, the run within ``journal_mb``) made every later run's welcome 10 MB,
over the 8 MiB frame limit; every run then crashed in the child, was retried and the agent
was paused for crash-looping, for good. Now the whole state is bounded by
``limits.state_mb`` (4 MiB by default), checked when a write would pass it, through the
door (a 413) and ``ctx.state`` (the run fails, kind ``limit``) alike; a store already in
that condition fails the run at once, naming the state and ``corral state``, which shows
and deletes keys with the daemon up or down. Real daemon, real sandbox, real store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from corral.store import Records, Store, Writer
from tests.e2e.support import Project, run_waited

pytestmark = pytest.mark.hostile

MB = 1_000_000

PUTTER = """
import json, os, urllib.error, urllib.request

def put(key, value):
    request = urllib.request.Request(os.environ["CORRAL_API_URL"] + "/state/" + key,
                                     data=json.dumps({"value": value}).encode(), method="PUT",
                                     headers={"Authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"]})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())["error"]["message"]

def run(ctx):
    if ctx.input == "python":
        for n in range(10):  # bounded: 10 MB
            ctx.state[f"py{n}"] = "y" * 1_000_000
        return "stored"
    if ctx.input == "count":
        return sorted(ctx.state)
    return [put(f"big{n}", "x" * 1_000_000) for n in range(10)]  # bounded: 10 MB
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    built = Project(tmp_path_factory.mktemp("statebound"))
    built.agent("hoarder", PUTTER, max_attempts=3)
    try:
        yield built
    finally:
        built.close()


def run(project: Project, payload: str) -> dict[str, Any]:
    return run_waited(project, "hoarder", "--input", json.dumps(payload))


def test_the_door_refuses_the_write_that_would_pass_state_mb_and_later_runs_still_start(project: Project) -> None:
    project.start_daemon()
    try:
        door = run(project, "door")
        assert door["state"] == "succeeded", door
        statuses = [status for status, _ in door["result"]]
        assert statuses == [200] * 4 + [413] * 6, door["result"]
        message = door["result"][4][1]
        assert "over limits.state_mb (4 MiB)" in message and "4.8 MiB" in message, message
        assert "corral state AGENT --delete KEY" in message, message
        later = run(project, "count")
        assert later["state"] == "succeeded" and later["result"] == [f"big{n}" for n in range(4)], later

        python = run(project, "python")
        assert python["state"] == "failed" and python["attempt"] == 1, python
        error = python["error"]
        assert error["kind"] == "limit", error
        assert "limits.state_mb" in error["message"] and "> 4 MiB" in error["message"], error
        assert "ctx.state['py0']" in error["message"] and "corral state hoarder --delete KEY" in error["message"]
        assert run(project, "count")["state"] == "succeeded"
    finally:
        project.daemons[-1].stop()


def test_a_store_already_over_the_frame_fails_the_run_at_once_and_corral_state_mends_it(project: Project) -> None:
    store = Store.open(project.home / "store")
    writer = Writer(store)
    records = Records(store.dbs)
    try:
        for n in range(10):  # as an older corral let it be written
            writer.call(lambda txn, n=n: records.set_state(txn, "hoarder", f"old{n}", "z" * MB))
    finally:
        writer.close()
        store.close()

    stuck = run(project, "count")  # in the foreground, no daemon
    assert stuck["state"] == "failed" and stuck["attempt"] == 1, stuck
    message = stuck["error"]["message"]
    assert stuck["error"]["kind"] == "limit", stuck["error"]
    assert "welcome frame would be" in message and "frame_max_bytes" in message, message
    assert "corral state hoarder --delete KEY" in message, message
    status = project.cli_json("status", "--json")["agents"]["hoarder"]
    assert status["state"] not in ("paused", "stopped"), status

    shown = project.cli_json("state", "hoarder", "--json")
    assert set(shown["keys"]) >= {f"old{n}" for n in range(10)}
    assert shown["bytes"] > 10 * MB
    text = project.cli("state", "hoarder").stdout
    assert "of 4 MiB (limits.state_mb)" in text and "old0" in text, text

    for n in range(5):  # daemon down: on the store here
        deleted = project.cli("state", "hoarder", "--delete", f"old{n}")
        assert deleted.returncode == 0, deleted.stderr
    project.start_daemon()
    for n in range(5, 10):  # daemon up: through the control socket
        deleted = project.cli("state", "hoarder", "--delete", f"old{n}")
        assert deleted.returncode == 0, deleted.stderr
    missing = project.cli("state", "hoarder", "--delete", "old0")
    assert missing.returncode == 5 and "no state key 'old0'" in missing.stderr, missing.stderr
    mended = run(project, "count")
    assert mended["state"] == "succeeded", mended
    assert not [k for k in mended["result"] if k.startswith("old")]
    assert project.cli_json("state", "hoarder", "--json")["bytes"] < 4 * 2**20
