"""The first code an agent's process runs: apply the policy, then become the agent.

Started as ``python -I -u -B -m corral.sandbox.launcher POLICY_JSON`` in a new session,
with cwd already set to the workdir and an environment holding only what was granted.
Everything here happens before any module of the agent's is imported, and is where
stronger confinement (Landlock, namespaces, Seatbelt) plugs in.
"""

from __future__ import annotations

import importlib
import os
import resource
import sys
import threading
import time

from corral.sandbox.policy import Policy

MiB = 2**20


def user_process_count(uid: int | None = None) -> int:
    """Processes of ``uid`` (default: our real uid): RLIMIT_NPROC counts them all, not just ours."""
    import psutil

    uid = os.getuid() if uid is None else uid
    return sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid)


def _rlimits(limits: dict[str, int | None], in_use: int | None = None) -> list[tuple[int, int, int, str]]:
    """(resource, soft, hard, label). Only CPU gets a higher hard limit: the kernel sends
    SIGXCPU at the soft limit and SIGKILL at the hard one, so SIGXCPU must come first.
    ``RLIMIT_RTPRIO`` and ``RLIMIT_NICE`` at 0: no real-time scheduling and no raised priority.
    ``in_use``: the uid's processes as the daemon counted them (in a PID namespace the
    launcher sees only its own)."""
    wanted: list[tuple[int, int, str]] = [(resource.RLIMIT_CORE, 0, "core=0")]
    if sys.platform.startswith("linux"):
        wanted += [(resource.RLIMIT_RTPRIO, 0, "rtprio=0"), (resource.RLIMIT_NICE, 0, "nice=0")]
    address_space, cpu, files = limits.get("address_space_mb"), limits.get("cpu_seconds"), limits.get("open_files")
    file_size, processes = limits.get("file_size_mb"), limits.get("processes")
    disk = limits.get("disk_mb")
    if disk and (not file_size or disk < file_size):
        file_size = disk  # one file can never hold more than the whole workdir may
    if address_space and sys.platform != "darwin":  # macOS rejects RLIMIT_AS
        wanted.append((resource.RLIMIT_AS, address_space * MiB, "address_space"))
    if cpu:
        wanted.append((resource.RLIMIT_CPU, cpu, "cpu_seconds"))
    if files:
        wanted.append((resource.RLIMIT_NOFILE, files, "open_files"))
    if file_size:
        wanted.append((resource.RLIMIT_FSIZE, file_size * MiB, "file_size"))
    if processes and os.getuid() != 0:  # root ignores RLIMIT_NPROC
        counted = user_process_count() if in_use is None else in_use
        wanted.append((resource.RLIMIT_NPROC, counted + processes, "processes"))
    return [
        (which, value, value + 1 if which == resource.RLIMIT_CPU else value, label) for which, value, label in wanted
    ]


def apply_rlimits(limits: dict[str, int | None], in_use: int | None = None) -> list[str]:
    """Lower soft and hard limits together so the agent cannot raise them back."""
    applied = []
    for which, soft, hard, label in _rlimits(limits, in_use):
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        try:
            resource.setrlimit(which, (soft, hard))
            applied.append(f"rlimit:{label}")
        except (ValueError, OSError):
            continue
    return applied


def _watch_parent(parent: int) -> None:
    """Where there is no parent-death signal (macOS), notice the daemon is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(70)


def apply(policy: Policy) -> list[str]:
    """Apply every protection this platform offers; return what was applied."""
    applied: list[str] = []
    if sys.platform.startswith("linux"):
        from corral.sandbox import linux

        if policy.cgroup and linux.join_cgroup(policy.cgroup):
            applied.append("cgroup")
        if linux.set_parent_death_signal(policy.parent_pid):
            applied.append("pdeathsig")
        if linux.become_subreaper():
            applied.append("subreaper")
    else:
        if os.getppid() != policy.parent_pid:
            os._exit(70)
        threading.Thread(target=_watch_parent, args=(policy.parent_pid,), daemon=True).start()
        applied.append("parent-watch")
    applied += apply_rlimits(policy.limits, policy.confine.get("processes_in_use"))
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()  # under bubblewrap the session is its init's: lead our own, as unwrapped
        except OSError:
            pass
    if os.getsid(0) == os.getpid():
        applied.append("session")
    return applied


def confine(policy: Policy, door_port: int | None = None) -> tuple[list[str], str | None]:
    """The sandbox backend's own confinement; (what applied, why the agent must not run or None).
    ``door_port``: the model door's port, which the agent's own process may connect to."""
    if not policy.confine_module:
        return [], None
    from corral.sandbox.backend import SandboxRefused

    spec = {
        **policy.confine,
        "parent_pid": policy.parent_pid,
        "processes": policy.limits.get("processes"),
        "memory_accounted": policy.memory_accounted,
        "door_port": door_port,
    }
    try:
        module = importlib.import_module(policy.confine_module)
        return list(module.confine(spec)), None
    except SandboxRefused as exc:
        return [], f"the sandbox could not be applied, so the agent was not run: {exc}"
    except Exception as exc:  # noqa: BLE001 - a broken backend must not let the agent run unconfined
        if not policy.confine.get("required"):
            return ["missing:sandbox"], None
        return [], f"the sandbox backend {policy.confine_module} failed ({type(exc).__name__}: {exc}); agent not run"


def refuse(policy: Policy, applied: list[str], message: str) -> None:
    """Say hello, then end the run as failed with kind ``sandbox`` before any agent code is loaded."""
    from corral.sandbox.runtime import _wait_for_close
    from corral.wire import VERSION, BlockingChannel

    channel = BlockingChannel(policy.wire_in, policy.wire_out, max_bytes=policy.max_frame)
    channel.send({"t": "hello", "v": VERSION, "pid": os.getpid(), "applied": applied})
    channel.recv()
    error = {"kind": "sandbox", "type": "SandboxRefused", "message": message}
    channel.send({"t": "finish", "ok": False, "error": error})
    _wait_for_close(policy.wire_in)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m corral.sandbox.launcher POLICY_JSON (started by corral only)\n")
        raise SystemExit(64)
    policy = Policy.from_json(args[0])
    applied = apply(policy)
    from corral.sandbox.door.server import listen

    # Every run serves the door: bound before confinement (Landlock denies an explicit bind), on
    # the port a backend that must name it in advance chose (``confine["door_port"]``), else any.
    listener = listen(int(policy.confine.get("door_port") or 0))
    confined, refusal = confine(policy, listener.getsockname()[1])
    applied += confined
    if refusal is not None:
        refuse(policy, applied, refusal)
    os.chdir(policy.workdir)  # where a wrapper could not enter it before the user was dropped
    if sys.platform.startswith("linux"):
        from corral.sandbox import linux

        # before the welcome brings tools' secrets, after the uid is final (a setuid resets it)
        if linux.keep_memory_private():
            applied.append("private-memory")
    from corral.sandbox.runtime import serve

    serve(policy, applied, listener)


if __name__ == "__main__":
    main()
