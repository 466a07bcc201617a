"""Quotas against hostile agents: the disk under the workdir, the store, the process count.

One real daemon runs every agent at once through ``corral run --wait``. Each agent tries
to take more than its limits give it, and each bounds itself, so a containment that
failed cannot hurt the machine: the writers stop at 200 MiB or a few thousand files, the
fork bomb at 200 sleeping processes. Each test looks from outside: the run failed with
kind ``limit`` and a message naming the key to raise, the workdir or the store stayed
within a bound, no process of the run is left, the journal is whole, and the daemon
still runs other agents.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.run import quota
from corral.store import Records, Store
from tests.e2e.support import (
    Batch,
    Project,
    assert_journal,
    assert_no_processes,
    contained,
    run_batch,
    start_batch,
)

pytestmark = pytest.mark.hostile

MiB = 2**20

HOG = """
import os, time

def run(ctx):
    with open("starts.txt", "a") as f:
        f.write("started\\n")
    os.makedirs("hog", exist_ok=True)
    block = os.urandom(ctx.input["kib_per_file"] * 1024)
    for n in range(ctx.input["files"]):  # bounded by the test: at most 200 MiB, or 3000 files
        with open(f"hog/{n}", "wb") as f:
            f.write(block)
        time.sleep(ctx.input["pause"])
    time.sleep(30)  # then holds on, as a hostile agent would
"""

AGENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "diskhog": (  # 1 MiB files at about 40 MiB/s
        HOG,
        {
            "input": {"files": 200, "kib_per_file": 1024, "pause": 0.025},
            "limits": {"disk_mb": 20, "wall_seconds": "40s"},
        },
    ),
    "filehog": (  # empty files at about 2000 a second
        HOG,
        {
            "input": {"files": 3000, "kib_per_file": 0, "pause": 0.0005},
            "limits": {"disk_files": 500, "wall_seconds": "40s"},
        },
    ),
    "statehog": (
        """
def run(ctx):
    ctx.state["small"] = "kept"
    for n in range(64):  # bounded: 64 values of 2 MiB, refused from the first
        ctx.state[f"big-{n}"] = "x" * (2 * 2**20)
    return "stored 128 MiB"
""",
        {"limits": {"state_value_kb": 1024}},
    ),
    "journalhog": (
        """
def run(ctx):
    for n in range(200):  # bounded: 200 x 64 KiB of state, about 13 MiB
        ctx.tool("word_count", text=f"call {n}")  # its outcome shares a write with the state step
        ctx.state["last"] = "y" * (64 * 2**10)
    return "journaled 13 MiB"
""",
        {"limits": {"journal_mb": 2}, "tools": ["word_count"]},
    ),
    "forkbomb": (
        """
import os, time


def sleeper():
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)


def run(ctx):
    forked = 0
    try:
        while forked < 200:  # bounded: a real bomb would not stop, this one must on a shared machine
            sleeper()
            forked += 1
            time.sleep(0.005)
    except OSError as exc:  # the kernel's own cap (pids.max, RLIMIT_NPROC) refused a fork
        return {"forked": forked, "refused": exc.strerror}
    time.sleep(30)
    return {"forked": forked, "refused": None}
""",
        {"limits": {"processes": 16, "wall_seconds": "40s"}},
    ),
    "hiddenhog": (  # files deleted while held open: no walk of the workdir sees them
        """
import os, time

def run(ctx):
    held = []
    block = os.urandom(2**20)
    for n in range(200):  # bounded: 200 MiB
        f = open(f"gone-{n}", "wb")
        f.write(block)
        f.flush()
        os.unlink(f"gone-{n}")
        held.append(f)
        time.sleep(0.02)
    time.sleep(30)
""",
        {"limits": {"disk_mb": 20, "wall_seconds": "40s"}},
    ),
    "zombies": (  # children never reaped: each holds a pid, and none is in the cgroup's list
        """
import os, time

def run(ctx):
    for n in range(200):  # bounded: 200 zombies
        if os.fork() == 0:
            os._exit(0)
        time.sleep(0.005)
    time.sleep(30)
""",
        {"limits": {"processes": 16, "wall_seconds": "40s"}},
    ),
    "innocent": (
        """
def run(ctx):
    ctx.state["seen"] = ctx.state.get("seen", 0) + 1
    return "unharmed"
""",
        {},
    ),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    project = Project(tmp_path_factory.mktemp("quotas"))
    project.corral.update(max_concurrent_runs=8)
    for name, (source, table) in AGENTS.items():
        project.agent(name, source, **table)
    try:
        yield start_batch(project, [name for name in AGENTS if name != "innocent"])
    finally:
        project.close()


def allocated(root: Path) -> tuple[int, int]:
    """(bytes allocated, names) under ``root``, measured independently of corral's own scan."""
    total = names = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            names += 1
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total, names


def failed_for(run: dict[str, Any], key: str) -> str:
    assert run["state"] == "failed", run
    assert run["error"]["kind"] == "limit", run["error"]
    message: str = run["error"]["message"]
    assert f"limits.{key}" in message, message
    return message


def agent_state(project: Project, agent: str) -> dict[str, Any]:
    """The agent's ``ctx.state`` as the store holds it, read like the CLI's read-only views."""
    store = Store.open(project.home / "store", readonly=True)
    try:
        with store.env.begin() as txn:
            return Records(store.dbs).agent_state(txn, agent)
    finally:
        store.env.close()


# --------------------------------------------------------------------------- the workdir


def test_writing_past_disk_mb_ends_the_run(batch: Batch) -> None:
    run = contained(batch, "diskhog")
    message = failed_for(run, "disk_mb")
    assert "disk quota exceeded: the workdir holds" in message and "> 20 MiB" in message, message
    used, _ = allocated(batch.project.workdir("diskhog"))
    assert 20 * MiB < used < 120 * MiB, f"the workdir holds {used / MiB:.0f} MiB: the writer was not stopped in time"
    assert run["ended"] - run["started"] < 20, "the agent writes for 5 s, then sleeps: the quota must end it first"


def test_more_files_than_disk_files_ends_the_run_and_refuses_the_next(batch: Batch) -> None:
    run = contained(batch, "filehog")
    message = failed_for(run, "disk_files")
    assert "more than 500 files and folders" in message, message
    workdir = batch.project.workdir("filehog")
    names = allocated(workdir)[1]
    assert 500 < names < 2500, f"the workdir holds {names} names: the agent was not stopped in time"
    [again] = run_batch(batch.project, ["filehog"]).values()
    message = failed_for(again, "disk_files")
    assert "the agent was not started" in message, message
    assert (workdir / "starts.txt").read_text().count("started") == 1, "the second run's code ran"


def test_the_scan_counts_allocated_blocks_once_and_follows_no_link(tmp_path: Path) -> None:
    """The tricks that would fool a naive ``du``: a sparse file, hard links, a symlink to
    something big outside, and more names than the limit (the walk stops one past it)."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(os.urandom(4 * MiB))
    workdir = tmp_path / "workdir"
    (workdir / "sub").mkdir(parents=True)
    with open(workdir / "sparse.bin", "wb") as f:
        f.truncate(512 * MiB)  # looks like 512 MiB, holds nothing
    (workdir / "real.bin").write_bytes(os.urandom(2 * MiB))
    for n in range(3):
        os.link(workdir / "real.bin", workdir / "sub" / f"link-{n}")
    (workdir / "big-elsewhere").symlink_to(outside)
    (workdir / "loop").symlink_to(workdir)
    usage = quota.measure(workdir)
    assert 2 * MiB <= usage.bytes < 3 * MiB, usage
    assert usage.files == 8 and usage.unreadable is None, usage
    assert quota.excess(usage, 2, None) is not None and quota.excess(usage, 3, 8) is None
    stopped = quota.measure(workdir, max_files=4)
    assert stopped.files == 5, stopped
    assert "more than 4 files and folders (limits.disk_files)" in (quota.excess(stopped, None, 4) or "")
    empty = quota.measure(tmp_path / "not-made-yet")
    assert (empty.bytes, empty.files, empty.unreadable) == (0, 0, None)


# --------------------------------------------------------------------------- the store


def test_a_state_value_over_state_value_kb_is_refused_and_ends_the_run(batch: Batch) -> None:
    run = contained(batch, "statehog")
    message = failed_for(run, "state_value_kb")
    assert "'big-0'" in message and "> 1024 KiB" in message, message
    steps = batch.project.cli_json("trace", run["id"])["steps"]
    assert [(s["kind"], s["name"], s["args"]["key"]) for s in steps] == [("state", "set", "small")]
    assert agent_state(batch.project, "statehog") == {"small": "kept"}


def test_a_journal_past_journal_mb_ends_the_run_with_every_step_resolved(batch: Batch) -> None:
    run = contained(batch, "journalhog")  # contained() checks seqs 1..n and no step left started
    message = failed_for(run, "journal_mb")
    steps = batch.project.cli_json("trace", run["id"])["steps"]
    assert 40 < len(steps) < 100, len(steps)
    # the refused state step took its write down with it, the tool outcome before it included:
    # that outcome was journaled on its own as the attempt ended, so the journal ends on it, done
    assert f"step {len(steps) + 1} (state 'set')" in message, message
    assert steps[-1]["kind"] == "tool" and steps[-1]["ok"], steps[-1]
    assert run["journal_bytes"] <= 2 * MiB + 256 * 2**10, run["journal_bytes"]
    assert all(s["status"] == "done" for s in steps)


def test_the_store_did_not_grow_past_what_the_limits_allow(batch: Batch) -> None:
    data = batch.project.home / "store" / "data.mdb"
    assert data.stat().st_blocks * 512 < 48 * MiB, f"data.mdb holds {data.stat().st_blocks * 512 / MiB:.0f} MiB"


# --------------------------------------------------------------------------- processes


def test_fork_bomb_is_capped_where_the_kernel_does_not_cap_it(batch: Batch) -> None:
    run = contained(batch, "forkbomb")
    if {"pids.max", "rlimit:processes"} & set(run["applied"]):  # the kernel refused the forks itself
        assert run["state"] == "succeeded" and run["result"]["refused"], run
        assert run["result"]["forked"] <= 16, run["result"]
        return
    message = failed_for(run, "processes")
    assert "process limit exceeded" in message and "> 16" in message, message
    count = int(message.split("exceeded: ")[1].split()[0])
    assert count < 100, f"{count} processes before the watchdog saw them"


def test_files_deleted_but_held_open_count_against_disk_mb(batch: Batch) -> None:
    run = contained(batch, "hiddenhog")
    message = failed_for(run, "disk_mb")
    assert "disk quota exceeded" in message, message


def test_unreaped_children_count_against_processes(batch: Batch) -> None:
    run = contained(batch, "zombies")
    if {"pids.max", "rlimit:processes"} & set(run["applied"]):
        pytest.skip("the kernel caps this run's processes itself")
    message = failed_for(run, "processes")
    assert "process limit exceeded" in message, message


# --------------------------------------------------------------------------- the foreground


@pytest.mark.parametrize(
    ("agent", "key"), [("forkbomb", "processes"), ("filehog", "disk_files"), ("statehog", "state_value_kb")]
)
def test_a_foreground_run_is_held_to_the_same_limits(tmp_path: Path, agent: str, key: str) -> None:
    """``corral run --wait`` with no daemon: the foreground engine's watchdog and journal do it."""
    project = Project(tmp_path)
    source, table = AGENTS[agent]
    project.agent(agent, source, **table)
    project.write()
    try:
        [run] = run_batch(project, [agent]).values()
        assert_no_processes(run, project.workdir(agent))
        assert_journal(project, run["id"])
        if key == "processes" and {"pids.max", "rlimit:processes"} & set(run["applied"]):
            assert run["result"]["forked"] <= 16, run  # the kernel refused the forks itself
        else:
            failed_for(run, key)
    finally:
        project.close()


# --------------------------------------------------------------------------- the daemon


def test_the_daemon_still_runs_other_agents(batch: Batch) -> None:
    assert batch.daemon.process.poll() is None, batch.project.daemon_stderr()
    [run] = run_batch(batch.project, ["innocent"]).values()
    assert run["state"] == "succeeded" and run["result"] == "unharmed", run
