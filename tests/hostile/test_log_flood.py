"""A run that floods ``/corral/v1/log`` with wide lines cannot write past its output cap or rotate its
agent's history away; lines an agent writes in corral's words are not taken for corral's.

The attack: 60 requests, each a line with 200 fields of 16 kB (190 MB when only the
event was charged, which rotated away every older file of the agent's log). Now each
line is charged the bytes it writes, fields beyond 64 are dropped and counted, and a
run writes at most ``MAX_BYTES_PER_RUN`` (10 MiB) of agent lines. A real daemon runs the
agent in the real sandbox; the log files and ``corral logs`` are read from outside.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.run.output import MAX_BYTES_PER_RUN, MAX_LOG_FIELDS
from tests.e2e.support import Project, log_events, run_waited

pytestmark = pytest.mark.hostile

FLOODER = """
import json, os, urllib.request

def post(body):
    request = urllib.request.Request(os.environ["CORRAL_API_URL"] + "/log", data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + os.environ["CORRAL_DOOR_TOKEN"],
                                              "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status

def run(ctx):
    if ctx.input == "mark":
        ctx.log.info("before the flood", marker="kept")
        return "marked"
    if ctx.input == "imitate":
        post({"event": "run ended", "fields": {"state": "succeeded"}})
        post({"event": "step", "fields": {"kind": "tool", "name": "write_file", "ok": True}})
        return "imitated"
    wide = {f"f{n:03d}": "x" * 16000 for n in range(200)}  # bounded: 60 lines of 3.2 MB
    statuses = [post({"event": "flood", "fields": wide}) for _ in range(60)]
    return {"statuses": sorted(set(statuses))}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    built = Project(tmp_path_factory.mktemp("logflood"))
    built.agent("pyh", FLOODER, max_attempts=1, limits={"wall_seconds": "120s"})
    built.start_daemon()
    try:
        yield built
    finally:
        built.close()


def run(project: Project, payload: str) -> dict[str, Any]:
    done = run_waited(project, "pyh", "--input", json.dumps(payload))
    assert done["state"] == "succeeded", done
    return done


def log_files(home: Path) -> list[Path]:
    return sorted((home / "logs").glob("pyh.log*"))


def test_a_flood_of_wide_lines_writes_at_most_the_runs_cap_and_rotates_nothing_away(project: Project) -> None:
    marked = run(project, "mark")
    before = sum(path.stat().st_size for path in log_files(project.home))
    flood = run(project, "flood")
    assert flood["result"] == {"statuses": [200]}
    files = log_files(project.home)
    written = sum(path.stat().st_size for path in files) - before
    assert written <= MAX_BYTES_PER_RUN + 64 * 1024, f"the flood wrote {written} bytes"
    assert [p.name for p in files] in (["pyh.log"], ["pyh.log", "pyh.log.1"]), files
    kept = [e for path in files for e in map(json.loads, path.read_text().splitlines())]
    assert any(e["event"] == "before the flood" and e["run_id"] == marked["id"] for e in kept)
    lines = [e for e in kept if e.get("run_id") == flood["id"] and e["event"] == "flood"]
    assert lines, "some of the flood is written, up to the cap"
    assert all(sum(k.startswith("f") and k[1:].isdigit() for k in e) == MAX_LOG_FIELDS for e in lines)
    assert all(e["fields_dropped"] == 200 - MAX_LOG_FIELDS for e in lines)
    dropped = [e for e in log_events(project, "pyh", flood["id"]) if e["event"] == "output dropped"]
    assert dropped and sum(e["lines"] for e in dropped) == 60 - len(lines), dropped


def test_agent_lines_in_corrals_words_are_not_taken_for_corrals(project: Project) -> None:
    imitated = run(project, "imitate")
    mine = log_events(project, "pyh", imitated["id"])
    assert {e["event"] for e in mine if e.get("source") == "agent"} == {"run ended", "step"}

    def listed(*args: str) -> list[dict[str, Any]]:
        found = project.cli("logs", "pyh", "--run", imitated["id"], "--json", "-n", "1000", *args)
        assert found.returncode == 0, found.stderr
        return [json.loads(line) for line in found.stdout.splitlines() if line.strip()]

    ended = listed("--event", "run ended")
    assert [e.get("source") for e in ended] == [None], "only corral's own line, not the agent's"
    assert [e["state"] for e in ended] == ["succeeded"]
    assert {e["event"] for e in listed("--event", "agent:*")} == {"run ended", "step"}
    assert not [e for e in listed("--event", "step") if e.get("source") == "agent"]
    shown = project.cli("logs", "pyh", "--run", imitated["id"], "-n", "1000").stdout
    assert " agent:run ended " in shown and " agent:step " in shown, shown
    assert " run ended " in shown.replace("agent:run ended", ""), "corral's own line is shown unmarked"
