"""Containment against a hostile agent (issue 13): no way out through sockets, processes or shared resources.

Each test reads what one world's runs did (``conftest.py`` runs them: a prober trying every
escape at once, the victim it attacks, peers) and asserts the *effect* as the test saw it
from outside the sandbox: the socket's server never accepted, the file's metadata and the
other processes' limits and scheduling are unchanged, no key was added, the hostname is
the host's, no process outlived its run. The agent's own report of an error is never
enough on its own. Worlds: under ``corral up`` and in the foreground (``corral run
--wait``), with and without ``user`` where it matters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.support import kill_quietly, wait_until_dead
from tests.hostile.support import Findings, Site, leftovers, named, settle, wait_for

pytestmark = [pytest.mark.hostile, pytest.mark.skipif(sys.platform != "linux", reason="Linux containment")]


def escapes(record: dict[str, Any]) -> dict[str, Any]:
    """The probes of ``record`` (label -> attempt) that the kernel did not refuse."""
    return {label: r for label, r in record.items() if not r.get("denied", True)}


def daemon_only(world: Findings) -> None:
    if world.mode != "daemon":
        pytest.skip("a foreground run has no daemon and no control socket; the daemon worlds test it")


# --------------------------------------------------------------------------- Unix sockets


def test_no_run_reaches_the_control_socket(world: Findings) -> None:
    daemon_only(world)
    reached = world.result("prober")["unix sockets"]["control socket"]
    assert reached["denied"], f"the agent connected to the daemon's control socket and got {reached['got']}"


def test_an_agent_cannot_approve_its_own_call_or_act_on_another_agent(root_world: Findings) -> None:
    """The effects first (the daemon obeyed nothing: the second wall), then the first wall: no connection."""
    daemon_only(root_world)
    found = root_world.seen["self approval"]
    assert isinstance(found, dict), found
    attacker = root_world.result("attacker")
    assert found["approval"] in found["pending approvals"], f"the agent decided its own approval: {attacker}"
    assert found["held run"] == "on_hold" and not found["approved file"], found
    assert not found["bystander runs"], "the agent queued a run of another agent"
    assert found["bystander pause"] is None, f"the agent paused another agent: {found['bystander pause']}"
    assert not escapes(attacker), f"the agent reached the control socket (refused there): {escapes(attacker)}"


def test_no_run_reaches_supervisord_or_a_root_only_socket(world: Findings) -> None:
    """supervisord's socket where docs/supervisord.md puts it (the daemon world's ``corral up`` runs
    in supervisord's folder, as supervisor.conf's ``directory=%(here)s`` starts it), root's 0600
    sockets in /tmp and next to the home, an abstract one: never reached, nothing stopped."""
    reached = escapes({k: v for k, v in world.result("prober")["unix sockets"].items() if k != "control socket"})
    accepted = {label: n for label, n in world.seen["accepted"].items() if n}
    assert not accepted, f"root-only sockets accepted the agent's connections: {accepted}"
    intact = world.seen["supervisord intact"]
    assert intact is True, intact or f"supervisord or the program it runs was stopped; the agent reached {reached}"
    assert not reached, f"the agent connected to: {reached}"


# --------------------------------------------------------------------------- other processes


@pytest.mark.parametrize("target", ["supervisor", "victim"])
def test_no_run_changes_the_limits_or_scheduling_of_another_process(world: Findings, target: str) -> None:
    """prlimit, setpriority, sched_setaffinity, ioprio_set and SCHED_FIFO on the daemon (or the
    foreground ``corral run``) and on another agent's running run change nothing."""
    prober = world.result("prober")
    before, after = world.seen["scheduling before"][target], world.seen["scheduling after"][target]
    assert after != "gone", f"the {target} died under the agent's attack: {prober['processes'][target]}"
    changed = before.changes(after)
    assert not changed, f"the agent changed the {target}'s {changed}; it tried {escapes(prober['processes'][target])}"


def test_pids_outside_the_run_cannot_be_found(world: Findings) -> None:
    visible = world.result("prober")["visible"]
    assert visible["denied"] or "'targets seen': []" in visible["got"], f"getsid found them: {visible}"


def test_the_daemon_and_the_attacked_run_run_on(world: Findings) -> None:
    victim = world.result("victim")
    assert victim["unharmed"], f"the other agent's run broke: {victim['checks']}"
    if world.mode == "daemon":
        assert world.seen["daemon alive"] and world.seen["daemon answers"], "the daemon died or stopped answering"


def test_sched_fifo_for_itself_is_refused(world: Findings) -> None:
    world.result("prober")
    scheduling = world.seen["prober scheduling"]
    assert scheduling.policy == os.SCHED_OTHER, f"the agent runs under real-time policy {scheduling.policy}"


# --------------------------------------------------------------------------- privileges


def test_no_capability_in_the_hosts_user_namespace(world: Findings) -> None:
    world.result("prober")
    caps = world.seen["prober capabilities"]
    assert caps["CapEff"] == 0 or caps["own user namespace"], f"CapEff {caps['CapEff']:#x} in the host's namespace"


def test_no_metadata_change_outside_the_workdir(world: Findings) -> None:
    prober = world.result("prober")
    before, after = world.seen["metadata before"], world.seen["metadata after"]
    changed = {label: (before[label], after[label]) for label in before if before[label] != after[label]}
    assert not changed, f"chmod/chown/utime/setxattr changed files outside the workdir: {changed}"
    tried = {label: escapes(ops) for label, ops in prober["metadata"].items()}
    assert not any(tried.values()), f"the kernel allowed: {tried}"


def test_no_device_node(world: Findings) -> None:
    prober = world.result("prober")
    made = world.seen["devices"]
    assert not made, f"the agent made device nodes {made}: {prober['mknod']}"


def test_no_keyring_read_or_write(world: Findings) -> None:
    prober = world.result("prober")
    if world.seen["planted key"] is not True:
        pytest.skip(world.seen["planted key"])
    added = sorted(set(world.seen["keys added"] + world.seen["keys after the run"]))
    assert not added, f"the agent added keys {added} to root's keyrings"
    assert f"planted-secret-{world.token}" not in json.dumps(prober["keys"]), "the agent read root's user keyring"
    assert not escapes(prober["keys"]), f"keyctl worked: {escapes(prober['keys'])}"


def test_no_kernel_log(world: Findings) -> None:
    prober = world.result("prober")
    if world.seen["kmsg marker"] is not True:
        pytest.skip(world.seen["kmsg marker"])
    assert f"corral-hostile-kmsg-{world.token}" not in json.dumps(prober), "the agent read the kernel log"
    assert prober["syslog"]["denied"], "syslog(SYSLOG_ACTION_READ_ALL) worked"


def test_the_hosts_name_is_unchanged(world: Findings) -> None:
    world.result("prober")
    assert world.seen["hostname during"] == world.seen["hostname before"], "the agent renamed the host"


# --------------------------------------------------------------------------- raw sockets


def test_no_packet_raw_or_netlink_socket_without_network(world: Findings) -> None:
    made = escapes(world.result("prober")["sockets"])
    assert not made, f"with network 'none' the agent created: {made}"


def test_no_packet_raw_or_netlink_socket_with_a_network_list(root_world: Findings) -> None:
    sniffer = root_world.result("sniffer")
    assert root_world.seen["bearer"] not in json.dumps(sniffer), "the agent captured another process's bearer token"
    made = escapes(sniffer["created"])
    assert not made, f"with a network list the agent created: {made}"


# --------------------------------------------------------------------------- shared resources


@pytest.mark.parametrize("agent", ["memfd", "shmhog"])
def test_memory_outside_rss_counts(root_world: Findings, agent: str) -> None:
    """1 GiB in memfds or in detached SysV segments under memory_mb = 256: stopped, or refused."""
    if "no hogs" in root_world.seen:
        pytest.skip(root_world.seen["no hogs"])
    run = root_world.records[agent]
    if run["state"] == "failed":
        assert run["error"]["kind"] == "limit" and "limits.memory_mb" in run["error"]["message"], run["error"]
        return
    held = root_world.result(agent)
    assert held["held_mb"] <= 256 and held["refused"], f"{held['held_mb']} MiB held under memory_mb = 256"
    assert not root_world.seen["sysv on the host after the run"]["hogs"], "segments outlived the run"


def test_sysv_and_posix_ipc_stay_in_the_run(world: Findings) -> None:
    made = world.result("prober")["sysv"]
    peer = world.result("peer")
    assert world.token not in json.dumps(peer), f"another agent's run read the prober's SysV objects: {peer}"
    after = world.seen["sysv on the host after the run"]
    assert not (after["shm"] or after["msg"]), f"SysV objects outlived the run on the host: {after} ({made})"
    assert not world.seen["posix shm on the host"], "the agent's /dev/shm file is the host's"
    assert not world.seen["posix shm after the run"]


def test_inotify_sees_nothing_outside_the_grants(world: Findings) -> None:
    prober = world.result("prober")
    seen = [name for name in world.seen["private names"] if name in prober["inotify events"]]
    assert not seen, f"inotify showed the agent {seen}; watches: {prober['inotify watches']}"


# --------------------------------------------------------------------------- outliving the run


def test_every_run_leaves_a_clean_journal(world: Findings) -> None:
    """RELIABILITY.md's invariant after any run: sequences 1..n, every step resolved or marked unknown."""
    for agent, steps in world.seen["journals"].items():
        assert [seq for seq, _ in steps] == list(range(1, len(steps) + 1)), f"{agent}'s journal: {steps}"
        assert all(status in ("done", "unknown") for _, status in steps), f"{agent}'s journal: {steps}"


def test_no_process_outlives_its_run(world: Findings) -> None:
    world.result("prober")
    assert not world.seen["leftovers"], f"processes outlived their runs: {world.seen['leftovers']}"


def test_a_double_forked_grandchild_dies_with_a_killed_supervisor(
    escaper: tuple[Site, subprocess.Popen[str], str],
) -> None:
    """SIGKILL of ``corral up``, or of a foreground ``corral run --wait``, takes the setsid grandchild too.

    The grandchild's pid file holds its pid as the run sees it (another in a PID namespace), so
    the test finds it by the name it gave itself (PR_SET_NAME)."""
    site, started, name = escaper
    pid_file = site.workdir("escaper") / "grandchild.pid"
    wait_for(lambda: pid_file.exists() or started.poll() is not None, "the escaper never forked", 60)
    assert pid_file.exists(), f"the escaper run ended first: {started.communicate()[1][-2000:]}"
    grandchildren = wait_for(lambda: named(name), "the grandchild is not running", 10)
    os.kill(site.supervisor(started), signal.SIGKILL)
    survivors = wait_until_dead([p.pid for p in grandchildren], timeout=5)
    kill_quietly(survivors)
    assert not survivors, f"a setsid grandchild ({pid_file.read_text()} inside) outlived a SIGKILLed {site.mode}"
    home = site.project("escaper").home
    left = settle(lambda: leftovers([f"{home}/"], [name, f"{name}m"]), timeout=5)
    kill_quietly(int(entry.split()[0]) for entry in left)
    assert not left, f"processes of the run outlived a SIGKILLed {site.mode}: {left}"
